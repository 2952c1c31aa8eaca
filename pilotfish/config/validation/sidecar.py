"""Sidecar semantics, after Istio's ``ValidateSidecar``."""

from __future__ import annotations

from pilotfish.api.networking import Sidecar, SidecarPort
from pilotfish.config.validation.common import (
    Errors,
    check_selector,
    fqdn_error,
    ip_error,
    namespace_slash_host_error,
    port_error,
    port_name_error,
    protocol_error,
    protocol_of,
)
from pilotfish.config.validation.destinationrule import connection_pool
from pilotfish.config.validation.gateway import server_tls

#: Protocols an HTTP connection manager serves (Istio's names, upper case).
HTTP_PROTOCOLS = ("HTTP", "HTTP2", "GRPC", "GRPC-WEB")
#: Forwarded by a bound (captureMode NONE) egress listener to the service it imports.
BOUND_TCP_PROTOCOLS = ("TCP", "MONGO", "MYSQL", "REDIS")
#: Forwarded by a bound egress listener by SNI, still encrypted.
BOUND_TLS_PROTOCOLS = ("HTTPS", "TLS")

UNIX_PREFIX = "unix://"
#: What a Sidecar ingress listener's ``tls`` may do: terminate (Istio documents SIMPLE and
#: MUTUAL; its listener code builds OPTIONAL_MUTUAL the same way).
INGRESS_TLS_MODES = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")


def _unix_path_error(bind: str) -> str | None:
    sock = bind[len(UNIX_PREFIX) :]
    if sock.startswith("@"):
        return None
    if not sock.startswith("/") or sock.endswith("/"):
        return f"{sock} is not an absolute path to a file"
    return None


def validate_sidecar(sc: Sidecar, errs: Errors, namespace: str) -> None:
    spec = sc.spec
    if spec.workloadSelector is not None:
        check_selector(errs, "spec.workloadSelector.labels", spec.workloadSelector.labels)
        if not spec.workloadSelector.labels:
            errs.warn(
                "spec.workloadSelector",
                "sidecar: workload selector specified without labels, will be applied to all "
                "services in namespace",
            )
    if (
        not spec.egress
        and not spec.ingress
        and spec.outboundTrafficPolicy is None
        and spec.inboundConnectionPool is None
    ):
        errs.add("spec", "sidecar: empty configuration provided")
        return
    ports: set[int] = set()
    for i, ing in enumerate(spec.ingress):
        path = f"spec.ingress[{i}]"
        if ing.port.targetPort:
            errs.add(f"{path}.port.targetPort", "targetPort has no impact on Sidecars")
        _port(errs, f"{path}.port", ing.port)
        if ing.bind:
            errs.add(f"{path}.bind", ip_error(ing.bind))
        if ing.port.number in ports:
            errs.add(f"{path}.port.number", "sidecar: ports on IP bound listeners must be unique")
        ports.add(ing.port.number)
        if ing.defaultEndpoint:
            errs.add(f"{path}.defaultEndpoint", _default_endpoint_error(ing.defaultEndpoint))
        if (tls := ing.tls) is not None:
            if tls.subjectAltNames:
                errs.add(
                    f"{path}.tls.subjectAltNames",
                    "sidecar: subjectAltNames is not supported in ingress tls",
                )
            if tls.httpsRedirect:
                errs.add(f"{path}.tls.httpsRedirect", "sidecar: httpsRedirect is not supported")
            if tls.credentialName:
                errs.add(
                    f"{path}.tls.credentialName",
                    "sidecar: credentialName is not currently supported",
                )
            if tls.credentialNames:
                errs.add(
                    f"{path}.tls.credentialNames",
                    "sidecar: credentialNames is not currently supported",
                )
            if tls.tlsCertificates:
                errs.add(
                    f"{path}.tls.tlsCertificates",
                    "sidecar: tls_certificates is not currently supported",
                )
            if tls.mode in ("ISTIO_MUTUAL", "AUTO_PASSTHROUGH"):
                errs.add(
                    f"{path}.tls.mode",
                    f"configuration is invalid: cannot set mode to {tls.mode} in sidecar "
                    "ingress tls",
                )
            elif tls.mode not in INGRESS_TLS_MODES:
                errs.add(
                    f"{path}.tls.mode",
                    f"sidecar: ingress tls terminates TLS: mode must be one of "
                    f"{', '.join(INGRESS_TLS_MODES)}, not {tls.mode or 'PASSTHROUGH (unset)'}",
                )
            if protocol_of(ing.port.protocol) not in ("HTTPS", "TLS"):
                errs.add(
                    f"{path}.port.protocol",
                    "server cannot have TLS settings for non HTTPS/TLS ports",
                )
            server_tls(errs, f"{path}.tls", tls)
        connection_pool(errs, f"{path}.connectionPool", ing.connectionPool)
        pool = ing.connectionPool
        if (
            pool is not None
            and pool.http is not None
            and protocol_of(ing.port.protocol) not in (HTTP_PROTOCOLS)
        ):
            errs.warn(
                f"{path}.connectionPool.http",
                f"sidecar: HTTP connection pool settings are configured for port "
                f'{ing.port.number} ("{ing.port.name or ""}") but its protocol is not HTTP '
                f"({ing.port.protocol or ''}); only TCP settings will apply",
            )
    connection_pool(errs, "spec.inboundConnectionPool", spec.inboundConnectionPool)

    ports = set()
    sockets: set[str] = set()
    catch_all = False
    for i, eg in enumerate(spec.egress):
        path = f"spec.egress[{i}]"
        if eg.port is None:
            if catch_all:
                errs.add(path, "sidecar: egress can have only one listener with empty port")
                continue
            if i == len(spec.egress) - 1:
                catch_all = True
            else:
                errs.add(
                    path,
                    "sidecar: the egress listener with empty port should be the last listener "
                    "in the list",
                )
        else:
            if eg.port.targetPort:
                errs.add(f"{path}.port.targetPort", "targetPort has no impact on Sidecars")
            bind = eg.bind or ""
            if eg.port.number == 0:
                if eg.port.name:
                    errs.add(f"{path}.port.name", port_name_error(eg.port.name))
                errs.add(f"{path}.port.protocol", protocol_error(eg.port.protocol))
                if not bind.startswith(UNIX_PREFIX):
                    errs.add(
                        f"{path}.bind",
                        "sidecar: ports with 0 value must have a unix domain socket bind address",
                    )
                else:
                    errs.add(f"{path}.bind", _unix_path_error(bind))
                if eg.captureMode not in (None, "DEFAULT", "NONE"):
                    errs.add(
                        f"{path}.captureMode",
                        "sidecar: captureMode must be DEFAULT/NONE for unix domain socket "
                        "listeners",
                    )
                if bind in sockets:
                    errs.add(
                        f"{path}.bind",
                        "sidecar: unix domain socket values for listeners must be unique",
                    )
                sockets.add(bind)
            else:
                _port(errs, f"{path}.port", eg.port)
                if bind:
                    errs.add(f"{path}.bind", ip_error(bind))
                if eg.port.number in ports:
                    errs.add(
                        f"{path}.port.number",
                        "sidecar: ports on IP bound listeners must be unique",
                    )
                ports.add(eg.port.number)
        if not eg.hosts:
            errs.add(f"{path}.hosts", "sidecar: egress listener must contain at least one host")
        for j, host in enumerate(eg.hosts):
            for reason in namespace_slash_host_error(host, is_gateway=False):
                errs.add(f"{path}.hosts[{j}]", reason)

    otp = spec.outboundTrafficPolicy
    if otp is not None and otp.egressProxy is not None:
        path = "spec.outboundTrafficPolicy"
        if otp.mode != "ALLOW_ANY":
            errs.add(
                f"{path}.egressProxy",
                "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy "
                "mode",
            )
            return
        errs.add(f"{path}.egressProxy.host", fqdn_error(otp.egressProxy.host))
        if otp.egressProxy.port is None:
            errs.add(f"{path}.egressProxy.port", "sidecar: egress_proxy port must be non-nil")
        else:
            errs.add(f"{path}.egressProxy.port.number", port_error(otp.egressProxy.port.number))
    if not errs:
        sidecar_support(sc, errs)


def sidecar_support(sc: Sidecar, errs: Errors) -> None:
    """What Pilotfish does not enforce of a valid Sidecar: refused (``not supported yet``)
    where ignoring it would change what the workload accepts, warned about otherwise."""
    spec = sc.spec
    not_applied = "accepted but not applied by Pilotfish yet"
    pools = [("spec.inboundConnectionPool", spec.inboundConnectionPool)]
    pools += [(f"spec.ingress[{i}].connectionPool", i.connectionPool) for i in spec.ingress]
    for path, pool in pools:
        if pool is not None and pool.tcp is not None and pool.tcp.idleTimeout:
            errs.warn(
                f"{path}.tcp.idleTimeout",
                f"{not_applied}: inbound TCP proxies take no idle timeout from it (as Istio, "
                "which applies it to outbound TCP proxies through a DestinationRule)",
            )
    for i, ing in enumerate(spec.ingress):
        path = f"spec.ingress[{i}]"
        if (ing.defaultEndpoint or "").startswith(UNIX_PREFIX):
            errs.add(f"{path}.defaultEndpoint", "not supported yet: unix domain sockets")
        if ing.captureMode not in (None, "DEFAULT", "IPTABLES"):
            errs.warn(f"{path}.captureMode", f"{not_applied}: inbound traffic is captured")
    for i, eg in enumerate(spec.egress):
        path = f"spec.egress[{i}]"
        if (eg.bind or "").startswith(UNIX_PREFIX):
            errs.add(f"{path}.bind", "not supported yet: unix domain sockets")
            continue
        if eg.captureMode == "NONE":
            if eg.port is None:
                errs.add(f"{path}.captureMode", "captureMode NONE needs a port to bind")
            elif protocol_of(eg.port.protocol) not in (
                *HTTP_PROTOCOLS,
                *BOUND_TLS_PROTOCOLS,
                *BOUND_TCP_PROTOCOLS,
            ):
                errs.add(
                    f"{path}.port.protocol",
                    "not supported yet: a captureMode NONE egress listener serves HTTP, TLS "
                    "(HTTPS, TLS) and TCP (TCP, MONGO, MYSQL, REDIS) only",
                )
        elif eg.bind:
            errs.warn(
                f"{path}.bind",
                f"{not_applied}: with captured traffic, egress listeners match by port only; "
                "set captureMode: NONE to bind a listener on this address",
            )


def _port(errs: Errors, path: str, port: SidecarPort) -> None:
    if port.name:
        errs.add(f"{path}.name", port_name_error(port.name))
    errs.add(f"{path}.protocol", protocol_error(port.protocol))
    errs.add(f"{path}.number", port_error(port.number))


def _default_endpoint_error(endpoint: str) -> str | None:
    if endpoint.startswith(UNIX_PREFIX):
        return _unix_path_error(endpoint)
    host, sep, port = endpoint.rpartition(":")
    if not sep:
        return f"address {endpoint}: missing port in address"
    host = host.strip("[]")
    if host not in ("", "127.0.0.1", "0.0.0.0", "::1", "::"):
        return (
            "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,"
            "[::1]:port,[::]:port,unix://filepath or unset"
        )
    if not port.isdigit():
        return f"sidecar: defaultEndpoint port ({port}) is not a number"
    return port_error(int(port))
