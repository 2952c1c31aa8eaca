"""Gateway analyzers: the workload a Gateway selects, its ports, its credentials, and servers
that clash with another Gateway's.

- IST0101 ``selector``: the selector matches no workload (pods, Deployments, WorkloadEntries,
  or the built-in ingress gateway).
- IST0162: a server port that no Service in front of the selected workloads exposes (the
  local ingress gateway runs in the host network and binds every Gateway port, so it is not
  checked; built-in workloads may list their ports in the settings instead).
- IST0101 ``credentialName``: no Secret of that name in the namespace of the selected
  workloads (in the Gateway's own namespace when it selects none).
- IST0145: two Gateways for the same workloads declare the same port with overlapping hosts.
- IST0138: two Gateways for the same workloads serve TLS with the same certificate (the same
  ``credentialName``, or the same ``serverCertificate`` and ``privateKey``): HTTP/2 clients
  reuse a connection across their hosts and get 404s.
- IST0161: the Secret a ``credentialName`` names exists but holds no PEM certificate and key
  (``tls.crt``/``tls.key`` or ``cert``/``key``, base64 as Kubernetes stores them). Whether
  the key belongs to the certificate is checked by the control plane when it serves it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pilotfish.api.core import Service
from pilotfish.api.networking import Gateway
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import AnalysisContext, Entry, Workload
from pilotfish.config.analyze.messages import Message
from pilotfish.config.analyze.names import hosts_intersect, labels_match, selector_string

__all__ = [
    "analyze_conflicting_gateways",
    "analyze_duplicate_certificates",
    "analyze_gateway_credentials",
    "analyze_gateway_workloads",
    "analyze_invalid_credentials",
]

KIND = "Gateway"


def _selected(ctx: AnalysisContext, gw: Gateway) -> list[Workload]:
    """Istio matches a Gateway selector against workloads in every namespace."""
    return ctx.workloads_selected(gw.spec.selector, None)


def _service_ports(ctx: AnalysisContext, w: Workload) -> set[int]:
    if w.service_ports is not None:
        return set(w.service_ports)
    ports: set[int] = set()
    for svc_entry, svc in ctx.of_kind("Service", Service):
        if svc_entry.namespace != w.namespace or not svc.spec.selector:
            continue
        if labels_match(svc.spec.selector, w.labels):
            ports.update(p.port for p in svc.spec.ports if (p.protocol or "TCP") == "TCP")
    return ports


def analyze_gateway_workloads(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0101 ``selector`` and IST0162."""
    for e, gw in ctx.of_kind(KIND, Gateway):
        if not gw.spec.selector:
            continue
        selector = selector_string(gw.spec.selector)
        workloads = _selected(ctx, gw)
        if not workloads:
            yield e.message(
                m.REFERENCED_RESOURCE_NOT_FOUND, "selector", selector, path="spec.selector"
            )
            continue
        if any(w.every_port for w in workloads):
            continue
        ports: set[int] = set()
        for w in workloads:
            ports |= _service_ports(ctx, w)
        for i, server in enumerate(gw.spec.servers):
            if server.port.number and server.port.number not in ports:
                yield e.message(
                    m.GATEWAY_PORT_NOT_DEFINED_ON_SERVICE,
                    server.port.number,
                    selector,
                    path=f"spec.servers[{i}].port.number",
                )


def analyze_gateway_credentials(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0101 ``credentialName``."""
    for e, gw in ctx.of_kind(KIND, Gateway):
        namespaces = {w.namespace for w in _selected(ctx, gw)} if gw.spec.selector else set()
        namespaces = namespaces or {e.namespace}
        for i, server in enumerate(gw.spec.servers):
            tls = server.tls
            if tls is None:
                continue
            names = [(tls.credentialName, f"spec.servers[{i}].tls.credentialName")] + [
                (n, f"spec.servers[{i}].tls.credentialNames[{j}]")
                for j, n in enumerate(tls.credentialNames)
            ]
            for name, path in names:
                if not name:
                    continue
                ns, _, secret = name.rpartition("/")
                wanted = {ns} if ns else namespaces
                if not any((n, secret) in ctx.secrets for n in wanted):
                    yield e.message(
                        m.REFERENCED_RESOURCE_NOT_FOUND, "credentialName", name, path=path
                    )


def _same_workloads(ctx: AnalysisContext, a: Gateway, b: Gateway) -> bool:
    if selector_string(a.spec.selector) == selector_string(b.spec.selector):
        return True
    chosen = {(w.namespace, w.name, w.kind) for w in _selected(ctx, a)}
    return any((w.namespace, w.name, w.kind) in chosen for w in _selected(ctx, b))


def analyze_conflicting_gateways(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0145: same workloads, same port, overlapping hosts, different Gateways."""
    gateways = list(ctx.of_kind(KIND, Gateway))
    for e, gw in gateways:
        for i, server in enumerate(gw.spec.servers):
            port = server.port.number
            hosts = [h.rpartition("/")[2] for h in server.hosts]
            clashing: list[str] = []
            for other_e, other in gateways:
                if other_e.key == e.key or not _same_workloads(ctx, gw, other):
                    continue
                if any(
                    s.port.number == port
                    and any(
                        hosts_intersect(h, oh.rpartition("/")[2]) for h in hosts for oh in s.hosts
                    )
                    for s in other.spec.servers
                ):
                    clashing.append(_name(other_e))
            if clashing:
                yield e.message(
                    m.CONFLICTING_GATEWAYS,
                    ",".join(clashing),
                    selector_string(gw.spec.selector),
                    port,
                    ",".join(server.hosts),
                    path=f"spec.servers[{i}].port.number",
                )


def _name(e: Entry) -> str:
    return f"{e.namespace}/{e.name}"


_TERMINATING = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")


def _certificates(gw: Gateway) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for server in gw.spec.servers:
        tls = server.tls
        if tls is None or (tls.mode or "SIMPLE") not in _TERMINATING:
            continue
        for name in [tls.credentialName, *tls.credentialNames]:
            if name:
                out.add(("credential", name))
        if tls.serverCertificate and tls.privateKey:
            out.add(("files", tls.serverCertificate, tls.privateKey))
    return out


def analyze_duplicate_certificates(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0138: Gateways of the same workloads that serve the same certificate."""
    gateways = [(e, gw, _certificates(gw)) for e, gw in ctx.of_kind(KIND, Gateway)]
    for e, gw, certs in gateways:
        if not certs:
            continue
        dupes = [
            _name(oe)
            for oe, other, other_certs in gateways
            if oe.key != e.key and certs & other_certs and _same_workloads(ctx, gw, other)
        ]
        if dupes:
            names = "[" + " ".join([_name(e), *dupes]) + "]"
            yield e.message(m.GATEWAY_DUPLICATE_CERTIFICATE, names, path="spec.servers")


_PEM = re.compile(
    r"-----BEGIN ([A-Z ]+)-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END \1-----", re.MULTILINE
)


def _pem_blocks(text: str) -> list[str]:
    """The labels of the PEM blocks of ``text`` whose base64 body decodes."""
    labels = []
    for label, body in _PEM.findall(text):
        try:
            base64.b64decode("".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            continue
        labels.append(label)
    return labels


def _decoded(data: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            try:
                return base64.b64decode(value, validate=True).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                return ""
    return None


def credential_valid(body: Mapping[str, Any]) -> bool | None:
    """A Secret body holds a PEM certificate and a PEM private key (None: no data to judge,
    e.g. a listing that leaves the data out)."""
    data = body.get("data")
    string_data = body.get("stringData")
    if not isinstance(data, dict) and not isinstance(string_data, dict):
        return None
    data = data if isinstance(data, dict) else {}
    cert = _decoded(data, "tls.crt", "cert")
    key = _decoded(data, "tls.key", "key")
    if isinstance(string_data, dict):
        cert = cert if cert is not None else string_data.get("tls.crt") or string_data.get("cert")
        key = key if key is not None else string_data.get("tls.key") or string_data.get("key")
    if cert is None and key is None:
        return False
    cert_ok = "CERTIFICATE" in _pem_blocks(cert or "")
    key_ok = any(label.endswith("PRIVATE KEY") for label in _pem_blocks(key or ""))
    return cert_ok and key_ok


def analyze_invalid_credentials(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0161 for credentials whose Secret holds no usable certificate and key."""
    secrets = {(e.namespace, e.name): e for e in ctx.by_kind.get("Secret", [])}
    for e, gw in ctx.of_kind(KIND, Gateway):
        namespaces = {w.namespace for w in _selected(ctx, gw)} if gw.spec.selector else set()
        namespaces = namespaces or {e.namespace}
        bad = False
        for server in gw.spec.servers:
            tls = server.tls
            if tls is None:
                continue
            for name in [tls.credentialName, *tls.credentialNames]:
                if not name:
                    continue
                ns, _, secret = name.rpartition("/")
                for n in sorted({ns} if ns else namespaces):
                    entry = secrets.get((n, secret))
                    if entry is not None and credential_valid(entry.body) is False:
                        bad = True
        if bad:
            yield e.message(m.INVALID_GATEWAY_CREDENTIAL, e.name, e.namespace, path="spec.servers")
