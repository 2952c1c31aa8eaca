"""Gateway semantics, after Istio's ``ValidateGateway``, ``validateServer`` and TLS checks."""

from __future__ import annotations

from pilotfish.api.networking import Gateway, Port, Server, ServerTLSSettings
from pilotfish.config.validation.common import (
    HTTP_PROTOCOLS,
    NOT_APPLIED,
    TLS_PROTOCOLS,
    Errors,
    ip_error,
    namespace_slash_host_error,
    port_error,
    protocol_of,
)

UNIX_PREFIX = "unix://"
_PASSTHROUGH = ("PASSTHROUGH", "AUTO_PASSTHROUGH")


def validate_gateway(gw: Gateway, errs: Errors, namespace: str) -> None:
    spec = gw.spec
    if not spec.servers:
        errs.add("spec.servers", "gateway must have at least one server")
    names: set[str] = set()
    for i, server in enumerate(spec.servers):
        path = f"spec.servers[{i}]"
        _server(errs, path, server)
        if server.port.name in names:
            errs.add(
                f"{path}.port.name",
                f"port names in servers must be unique: duplicate name {server.port.name}",
            )
        names.add(server.port.name)
        proto = protocol_of(server.port.protocol)
        if proto == "HTTP_PROXY":
            errs.warn(
                f"{path}.port.protocol",
                "not supported yet: an HTTP_PROXY server gets no listener on the gateway",
            )
        if proto not in HTTP_PROTOCOLS and server.tls is not None and server.tls.httpsRedirect:
            errs.warn(
                f"{path}.tls.httpsRedirect",
                "tls.httpsRedirect should only be used with http servers",
            )


def _server(errs: Errors, path: str, server: Server) -> None:
    if not server.hosts:
        errs.add(f"{path}.hosts", "server config must contain at least one host")
    for j, host in enumerate(server.hosts):
        for reason in namespace_slash_host_error(host, is_gateway=True):
            errs.add(f"{path}.hosts[{j}]", reason)
    port_ok = _port(errs, f"{path}.port", server.port, server.bind or "")
    _bind(errs, path, server.port, server.bind or "")
    server_tls(errs, f"{path}.tls", server.tls)
    if server.bind:
        errs.warn(
            f"{path}.bind", f"{NOT_APPLIED}: the gateway listens on every address of its host"
        )
    if server.name:
        errs.warn(f"{path}.name", f"{NOT_APPLIED}: stats and listeners are not named after it")
    if server.defaultEndpoint:
        errs.warn(f"{path}.defaultEndpoint", NOT_APPLIED)
    if not port_ok:
        return
    proto = protocol_of(server.port.protocol)
    if proto in TLS_PROTOCOLS and server.tls is None:
        errs.add(f"{path}.tls", "server must have TLS settings for HTTPS/TLS protocols")
    elif proto not in TLS_PROTOCOLS and server.tls is not None:
        tls = server.tls
        if proto in HTTP_PROTOCOLS:
            passthrough = tls.mode is None or tls.mode in _PASSTHROUGH
            if (
                not passthrough
                or tls.caCertificates
                or tls.privateKey
                or tls.serverCertificate
                or tls.credentialName
            ):
                errs.add(f"{path}.tls", "server cannot have TLS settings for plain text HTTP ports")
        else:
            errs.add(f"{path}.tls", "server cannot have TLS settings for non HTTPS/TLS ports")


def _port(errs: Errors, path: str, port: Port, bind: str) -> bool:
    """Istio validateServerPort; False when the port has errors."""
    before = len(errs.items)
    if protocol_of(port.protocol) is None:
        errs.add(
            f"{path}.protocol",
            f'invalid protocol "{port.protocol}", supported protocols are HTTP, HTTP2, GRPC, '
            "GRPC-WEB, MONGO, REDIS, MYSQL, TCP",
        )
    if port.number > 0 or not bind.startswith(UNIX_PREFIX):
        errs.add(f"{path}.number", port_error(port.number))
    if port.targetPort:
        errs.add(f"{path}.targetPort", "targetPort has no impact on Gateways")
    if not port.name:
        errs.add(f"{path}.name", "port name must be set")
    return len(errs.items) == before


def _bind(errs: Errors, path: str, port: Port, bind: str) -> None:
    if bind.startswith(UNIX_PREFIX):
        sock = bind[len(UNIX_PREFIX) :]
        if not sock.startswith("@") and (not sock.startswith("/") or sock.endswith("/")):
            errs.add(f"{path}.bind", f"{sock} is not an absolute path to a file")
        if port.number != 0:
            errs.add(f"{path}.port.number", "port number must be 0 for unix domain socket")
    elif bind:
        errs.add(f"{path}.bind", ip_error(bind))


def server_tls(errs: Errors, path: str, tls: ServerTLSSettings | None) -> None:
    """Istio validateTLSOptions for ServerTLSSettings."""
    if tls is None:
        return
    if tls.minProtocolVersion in ("TLSV1_0", "TLSV1_1") and not tls.cipherSuites:
        errs.warn(
            f"{path}.minProtocolVersion",
            "TLS version below TLSV1_2 require setting compatible ciphers as by default they "
            "no longer include compatible ciphers.",
        )
    order = ("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3")
    lo, hi = tls.minProtocolVersion, tls.maxProtocolVersion
    if lo and hi and "TLS_AUTO" not in (lo, hi) and order.index(lo) > order.index(hi):
        errs.add(
            f"{path}.minProtocolVersion", "minProtocolVersion must not exceed maxProtocolVersion"
        )
    if tls.mode == "ISTIO_MUTUAL":
        for field, what in (
            ("serverCertificate", "server certificate"),
            ("privateKey", "private key"),
            ("caCertificates", "CA bundle"),
            ("credentialName", "credentialName"),
        ):
            if getattr(tls, field):
                errs.add(f"{path}.{field}", f"ISTIO_MUTUAL TLS cannot have associated {what}")
        return
    mode = tls.mode or "PASSTHROUGH"
    if mode in _PASSTHROUGH:
        if (
            tls.caCrl
            or tls.serverCertificate
            or tls.privateKey
            or tls.caCertificates
            or tls.credentialName
        ):
            errs.warn(path, f"{mode} mode does not use certificates, they will be ignored")
        return
    credential = tls.credentialName or tls.credentialNames or tls.tlsCertificates
    if mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL") and credential:
        if tls.caCrl and tls.credentialName:
            errs.add(
                f"{path}.caCrl",
                "CRL is not supported with credentialName. CRL has to be specified in the "
                "credential",
            )
        return
    label = "SIMPLE" if mode == "SIMPLE" else "MUTUAL"
    if not tls.serverCertificate:
        errs.add(f"{path}.serverCertificate", f"{label} TLS requires a server certificate")
    if not tls.privateKey:
        errs.add(f"{path}.privateKey", f"{label} TLS requires a private key")
    if label == "MUTUAL" and not tls.caCertificates:
        errs.add(f"{path}.caCertificates", "MUTUAL TLS requires a client CA bundle")
    if tls.caCrl and mode == "SIMPLE":
        errs.add(f"{path}.caCrl", "CRL is not supported with SIMPLE TLS")
