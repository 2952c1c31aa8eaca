"""`pilotfish x describe pod POD`: the Istio config that applies to one pod, as `istioctl x
describe pod` prints it, with its warnings.

The pod is the stored Pod (pods of the local runtime) or, for a proxy started on its own, what
its agent announced (labels and service account, from `pilotfish proxy-status -o json`).
:func:`describe_pod` is pure: the pod and the stored config in, istioctl's lines out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click

from pilotfish.api import kinds
from pilotfish.api.hosts import MESH_GATEWAY, host_matches, normalize_gateway, resolve_host
from pilotfish.api.mesh import DEFAULT_DOMAIN_SUFFIX, export_to, service_fqdn, visible

SEPARATOR = "--------------------"
#: The kinds describe reads.
KINDS = (
    "Service",
    "VirtualService",
    "DestinationRule",
    "Gateway",
    "PeerAuthentication",
    "AuthorizationPolicy",
)


@dataclass(frozen=True)
class PodFacts:
    name: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    service_account: str = "default"
    #: (port, container or name) as the pod declares them.
    ports: tuple[tuple[int, str], ...] = ()
    #: False for a stored Pod without a sidecar (no Envoy connected).
    has_proxy: bool = True


def _meta(o: dict[str, Any]) -> dict[str, Any]:
    return o.get("metadata") or {}


def _spec(o: dict[str, Any]) -> dict[str, Any]:
    return o.get("spec") or {}


def _ns(o: dict[str, Any]) -> str:
    return str(_meta(o).get("namespace") or "default")


def _name(o: dict[str, Any]) -> str:
    return str(_meta(o).get("name") or "")


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A ``{key: value}`` selector (empty or missing: every workload)."""
    return all(labels.get(str(k)) == str(v) for k, v in (selector or {}).items())


def _workload_selector(o: dict[str, Any]) -> dict[str, Any] | None:
    return (_spec(o).get("selector") or {}).get("matchLabels")


def _services(pod: PodFacts, services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        s
        for s in services
        if _ns(s) == pod.namespace
        and _spec(s).get("selector")
        and _selects(_spec(s).get("selector"), pod.labels)
    ]


def _visible(o: dict[str, Any], namespace: str) -> bool:
    return visible(export_to(_spec(o).get("exportTo")), _ns(o), namespace)


def _destination_rules(
    fqdn: str, pod: PodFacts, drs: list[dict[str, Any]], root: str
) -> list[dict[str, Any]]:
    """The DestinationRule a client in the pod's namespace uses for ``fqdn``: Istio looks in
    the client's namespace, then the service's, then the root namespace; most specific host
    wins within one namespace."""
    for ns in (pod.namespace, fqdn.split(".")[1] if fqdn.count(".") > 1 else "", root):
        found = [
            d
            for d in drs
            if _ns(d) == ns
            and _visible(d, pod.namespace)
            and host_matches(resolve_host(str(_spec(d).get("host", "")), ns), fqdn)
        ]
        if found:
            found.sort(key=lambda d: str(_spec(d).get("host", "")).startswith("*"))
            return found[:1]
    return []


def _vs_hosts(vs: dict[str, Any]) -> list[str]:
    return [resolve_host(str(h), _ns(vs)) for h in _spec(vs).get("hosts") or []]


def _vs_gateways(vs: dict[str, Any]) -> list[str]:
    gws = [str(g) for g in _spec(vs).get("gateways") or []] or [MESH_GATEWAY]
    return [normalize_gateway(g, _ns(vs)) for g in gws]


def _route_destinations(vs: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for section in ("http", "tcp", "tls"):
        for route in _spec(vs).get(section) or []:
            for dest in route.get("route") or []:
                out.append(dest.get("destination") or {})
    return out


def _routes_to(vs: dict[str, Any], fqdn: str) -> list[dict[str, Any]]:
    return [
        d for d in _route_destinations(vs) if resolve_host(str(d.get("host", "")), _ns(vs)) == fqdn
    ]


def _route_summary(vs: dict[str, Any]) -> str:
    spec = _spec(vs)
    bits = [f"{len(spec.get(s) or [])} {s.upper()} route(s)" for s in ("http", "tcp", "tls")]
    return ", ".join(b for b in bits if not b.startswith("0 ")) or "no routes"


def _match_paths(vs: dict[str, Any]) -> list[str]:
    paths = []
    for route in _spec(vs).get("http") or []:
        for m in route.get("match") or []:
            uri = m.get("uri") or {}
            for kind, suffix in (("exact", ""), ("prefix", "*"), ("regex", " (regex)")):
                if kind in uri:
                    paths.append(f"{uri[kind]}{suffix}")
    return paths


def _peer_authentication(
    pod: PodFacts, pas: list[dict[str, Any]], root: str
) -> tuple[str, list[str], dict[str, str]]:
    """(workload mTLS mode, the PeerAuthentications applied, port-level modes): workload
    policy over namespace policy over mesh policy (root namespace), PERMISSIVE by default."""
    mesh = [p for p in pas if _ns(p) == root and not _workload_selector(p)]
    namespace = [p for p in pas if _ns(p) == pod.namespace and not _workload_selector(p)]
    workload = [
        p
        for p in pas
        if _ns(p) == pod.namespace
        and _workload_selector(p)
        and _selects(_workload_selector(p), pod.labels)
    ]
    mode, applied, ports = "PERMISSIVE", [], {}
    for layer in (mesh, namespace, workload):
        if not layer:
            continue
        p = sorted(layer, key=lambda o: str(_meta(o).get("creationTimestamp") or ""))[0]
        applied.append(f"{_name(p)}.{_ns(p)}")
        written = str((_spec(p).get("mtls") or {}).get("mode") or "UNSET")
        if written not in ("UNSET", ""):
            mode = written
        for port, setting in (_spec(p).get("portLevelMtls") or {}).items():
            ports[str(port)] = str((setting or {}).get("mode") or "UNSET")
    return mode, applied, ports


def _authorization(
    pod: PodFacts, aps: list[dict[str, Any]], root: str
) -> list[tuple[str, str, int]]:
    """(action, namespace/name, rules) of each AuthorizationPolicy that applies to the pod."""
    out = []
    for ap in aps:
        if _ns(ap) not in (pod.namespace, root):
            continue
        if not _selects(_workload_selector(ap), pod.labels):
            continue
        spec = _spec(ap)
        out.append((str(spec.get("action") or "ALLOW"), f"{_ns(ap)}/{_name(ap)}",
                    len(spec.get("rules") or [])))  # fmt: skip
    order = {"CUSTOM": 0, "DENY": 1, "ALLOW": 2, "AUDIT": 3}
    return sorted(out, key=lambda t: (order.get(t[0], 9), t[1]))


def describe_pod(
    pod: PodFacts, objects: dict[str, list[dict[str, Any]]], root: str = "istio-system"
) -> list[str]:
    """istioctl's `x describe pod` lines for ``pod`` given the stored config by kind."""
    lines = [f"Pod: {pod.name}"]
    lines.append("   Pod Revision: default" if pod.has_proxy else "   Pod is not part of the mesh")
    if pod.ports:
        lines.append("   Pod Ports: " + ", ".join(f"{p} ({n})" for p, n in pod.ports))
    if "app" not in pod.labels:
        lines.append("Suggestion: add 'app' label to pod for Istio telemetry.")
    if "version" not in pod.labels:
        lines.append("Suggestion: add 'version' label to pod for Istio telemetry.")
    if not pod.has_proxy:
        lines.append("WARNING: no Envoy sidecar: the pod is not in the mesh")
    services = _services(pod, objects.get("Service", []))
    if not services:
        lines.append(SEPARATOR)
        lines.append("WARNING: no Service selects this pod's labels")
    gateways_seen: list[tuple[dict[str, Any], str]] = []
    for svc in services:
        fqdn = service_fqdn(_name(svc), _ns(svc), DEFAULT_DOMAIN_SUFFIX)
        lines.append(SEPARATOR)
        lines.append(f"Service: {_name(svc)}")
        for port in _spec(svc).get("ports") or []:
            proto = str(port.get("appProtocol") or _protocol(str(port.get("name", ""))))
            target = port.get("targetPort") or port.get("port")
            lines.append(
                f"   Port: {port.get('name', '')} {port.get('port')}/{proto} "
                f"targets pod port {target}"
            )
        pod_subsets: list[str] = []
        for dr in _destination_rules(fqdn, pod, objects.get("DestinationRule", []), root):
            spec = _spec(dr)
            lines.append(f'DestinationRule: {_name(dr)}.{_ns(dr)} for "{spec.get("host")}"')
            subsets = spec.get("subsets") or []
            pod_subsets = [
                str(s.get("name")) for s in subsets if _selects(s.get("labels"), pod.labels)
            ]
            others = [str(s.get("name")) for s in subsets if str(s.get("name")) not in pod_subsets]
            if subsets:
                lines.append(f"   Matching subsets: {','.join(pod_subsets) or '(none)'}")
                if others:
                    lines.append(f"      (Non-matching subsets {','.join(others)})")
            policy = spec.get("trafficPolicy") or {}
            if policy:
                tls = (policy.get("tls") or {}).get("mode")
                if tls:
                    lines.append(f"   Traffic Policy TLS Mode: {tls}")
                other = sorted(k for k in policy if k != "tls")
                if other:
                    lines.append(f"   Policies: {', '.join(other)}")
            else:
                lines.append("   No Traffic Policy")
        for vs in objects.get("VirtualService", []):
            if not _visible(vs, pod.namespace) and _ns(vs) != pod.namespace:
                continue
            if not any(host_matches(h, fqdn) for h in _vs_hosts(vs)) and not _routes_to(vs, fqdn):
                continue
            gateways = _vs_gateways(vs)
            if MESH_GATEWAY in gateways and any(host_matches(h, fqdn) for h in _vs_hosts(vs)):
                lines.append(f"VirtualService: {_name(vs)}.{_ns(vs)}")
                lines.append(f"   {_route_summary(vs)}")
                to_this = _routes_to(vs, fqdn)
                wanted = {str(d["subset"]) for d in to_this if d.get("subset")}
                if wanted and pod_subsets and not wanted & set(pod_subsets):
                    lines.append(
                        f"   WARNING: No destinations match pod subsets "
                        f"(routes go to {','.join(sorted(wanted))})"
                    )
                for subset in sorted(wanted - set(pod_subsets)):
                    if pod_subsets:
                        lines.append(f"   Route to non-matching subset {subset}")
                if wanted and not pod_subsets:
                    lines.append(
                        "   WARNING: routes go to subsets "
                        f"{','.join(sorted(wanted))} but no DestinationRule subset matches the pod"
                    )
            for gw in gateways:
                if gw != MESH_GATEWAY and _routes_to(vs, fqdn):
                    gateways_seen.append((vs, gw))
        for vs, gw in gateways_seen:
            lines.append(SEPARATOR)
            lines.append(f"Exposed on Ingress Gateway {gw}")
            if not _gateway_exists(gw, objects.get("Gateway", [])):
                lines.append(f"   WARNING: Gateway {gw} does not exist")
            lines.append(f"VirtualService: {_name(vs)}.{_ns(vs)}")
            paths = _match_paths(vs)
            lines.append("   " + (", ".join(paths) if paths else "(every path)"))
        gateways_seen = []
    mode, applied, ports = _peer_authentication(pod, objects.get("PeerAuthentication", []), root)
    lines.append(SEPARATOR)
    lines.append("Effective PeerAuthentication:")
    lines.append(f"   Workload mTLS mode: {mode}")
    for port, port_mode in sorted(ports.items()):
        lines.append(f"   Port Level mTLS mode: {port}: {port_mode}")
    if applied:
        lines.append("Applied PeerAuthentication:")
        lines.append("   " + ", ".join(applied))
    if mode == "STRICT" and not pod.has_proxy:
        lines.append("   WARNING: STRICT mTLS but the pod has no sidecar: it cannot be reached")
    policies = _authorization(pod, objects.get("AuthorizationPolicy", []), root)
    lines.append(SEPARATOR)
    if policies:
        lines.append("AuthorizationPolicies:")
        for action, ref, rules in policies:
            if action == "ALLOW" and rules == 0:
                what = "no rules: denies every request"
            elif action == "DENY" and rules == 0:
                what = "no rules: matches nothing"
            else:
                what = f"{rules} rule(s)"
            lines.append(f"   {action} {ref} ({what})")
        if any(a == "ALLOW" for a, _, _ in policies):
            lines.append("   Requests no ALLOW policy matches are denied")
    else:
        lines.append("AuthorizationPolicies: none (every request is allowed)")
    return lines


def _gateway_exists(ref: str, gateways: list[dict[str, Any]]) -> bool:
    return any(f"{_ns(g)}/{_name(g)}" == ref for g in gateways)


def _protocol(port_name: str) -> str:
    """Istio's protocol from a port name (``http-web`` -> HTTP); unnamed: auto-detected."""
    prefix = port_name.split("-", 1)[0].lower()
    known = {"http": "HTTP", "http2": "HTTP2", "grpc": "GRPC", "grpc-web": "GRPC-Web",
             "https": "HTTPS", "tls": "TLS", "tcp": "TCP", "mongo": "Mongo", "mysql": "MySQL",
             "redis": "Redis"}  # fmt: skip
    return known.get(prefix, "auto")


def pod_facts(
    name: str, namespace: str, stored: dict[str, Any] | None, status: list[dict[str, Any]]
) -> PodFacts | None:
    """The pod from its stored body, else from the connected proxy of that name."""
    proxy = next(
        (p for p in status if p.get("namespace") == namespace and p.get("pod_name") == name),
        None,
    )
    if stored is not None:
        spec = _spec(stored)
        containers = spec.get("containers") or []
        ports = tuple(
            (int(p.get("containerPort")), str(c.get("name", "")))
            for c in containers
            for p in c.get("ports") or []
            if p.get("containerPort")
        )
        names = {str(c.get("name")) for c in containers}
        annotations = _meta(stored).get("annotations") or {}
        return PodFacts(
            name=name,
            namespace=namespace,
            labels={str(k): str(v) for k, v in (_meta(stored).get("labels") or {}).items()},
            service_account=str(spec.get("serviceAccountName") or "default"),
            ports=ports,
            has_proxy=proxy is not None
            or "istio-proxy" in names
            or annotations.get("sidecar.istio.io/status") is not None,
        )
    if proxy is not None:
        return PodFacts(
            name=name,
            namespace=namespace,
            labels=dict(proxy.get("labels") or {}),
            service_account=str(proxy.get("service_account") or "default"),
        )
    return None


@click.group("x", context_settings={"help_option_names": ["-h", "--help"]})
def x_group() -> None:
    """Experimental commands, as `istioctl x`: describe, explain, workload entry configure."""


def _register_explain() -> None:
    from pilotfish.cli.explain_cmd import explain_cmd
    from pilotfish.cli.workload_cmd import workload_group

    x_group.add_command(explain_cmd)
    x_group.add_command(workload_group)


@x_group.group("describe")
def describe_group() -> None:
    """Describe the Istio config that applies to a resource, as `istioctl x describe`."""


@describe_group.command("pod")
@click.argument("pod")
@click.option("-n", "--namespace", default=None, help="The pod's namespace (or POD.NAMESPACE).")
@click.pass_obj
def describe_pod_cmd(g: Any, pod: str, namespace: str | None) -> None:
    """The Istio config that applies to POD, as `istioctl x describe pod`.

    Prints the Services that select the pod and, for each, the DestinationRule clients use
    (matching subsets, TLS mode, policies), the VirtualServices that route to it (with
    warnings when no route reaches the pod's subsets), the ingress gateways that expose it,
    the effective PeerAuthentication (mTLS mode and the policies that decided it) and the
    AuthorizationPolicies that apply to it. The pod is a stored Pod or a connected proxy.

    \b
    Examples:
      pilotfish x describe pod productpage-v1-6b7f6c9d8-x2xkq
      pilotfish x describe pod reviews-v2-5c7d9b.default
      pilotfish x describe pod ratings-v1-xyz -n bookinfo
    """
    from pilotfish.cli.proxy_config import split_target
    from pilotfish.errors import ApiError

    ns, name = split_target(pod, namespace)
    with g.client() as client:
        try:
            stored: dict[str, Any] | None = client.get(kinds.by_kind("Pod"), ns, name)
        except ApiError as exc:
            if exc.status != 404:
                raise
            stored = None
        facts = pod_facts(name, ns, stored, client.proxy_status())
        if facts is None:
            raise click.ClickException(
                f'pod "{name}" not found in namespace {ns}: no stored Pod and no connected proxy '
                "of that name (see `pilotfish get pods -A` and `pilotfish proxy-status`)"
            )
        objects = {
            kind: list(client.list_objects(kinds.by_kind(kind), None).get("items") or [])
            for kind in KINDS
        }
        root = str((client.mesh_config() or {}).get("rootNamespace") or "istio-system")
    click.echo("\n".join(describe_pod(facts, objects, root)))


_register_explain()
