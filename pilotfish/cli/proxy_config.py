"""`pilotfish proxy-config`: what one proxy is configured with, as `istioctl proxy-config`.

The control plane renders the config it generates for a connected proxy; this module turns
it into istioctl-like tables (pure functions over the JSON) or prints it whole.
"""

from __future__ import annotations

from typing import Any

import click

from pilotfish.api.kinds import proxy_config_path
from pilotfish.cli import output

KINDS = ("cluster", "listener", "route", "endpoint", "all")


def cluster_rows(clusters: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE"]]
    for c in clusters:
        name = str(c.get("name", ""))
        parts = name.split("|")
        kind = str(c.get("type") or ("EDS" if c.get("eds_cluster_config") else "STATIC"))
        if len(parts) == 4:
            direction, port, subset, fqdn = parts
            rows.append([fqdn or "", port, subset or "-", direction, kind])
        else:
            rows.append([name, "-", "-", "-", kind])
    return rows


def listener_rows(listeners: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["NAME", "ADDRESS", "PORT", "MATCH", "DESTINATION"]]
    for lst in listeners:
        sa = (lst.get("address") or {}).get("socket_address") or {}
        chains = lst.get("filter_chains") or []
        if not chains and lst.get("default_filter_chain"):
            chains = [lst["default_filter_chain"]]
        for chain in chains or [{}]:
            rows.append(
                [
                    str(lst.get("name", "")),
                    str(sa.get("address", "")),
                    str(sa.get("port_value", "")),
                    _chain_match(chain.get("filter_chain_match") or {}),
                    _chain_destination(chain),
                ]
            )
    return rows


def _chain_match(m: dict[str, Any]) -> str:
    bits = []
    if "destination_port" in m:
        bits.append(f"port {m['destination_port']}")
    for r in m.get("prefix_ranges") or []:
        bits.append(f"{r.get('address_prefix')}/{r.get('prefix_len', 32)}")
    if m.get("transport_protocol"):
        bits.append(str(m["transport_protocol"]))
    if m.get("server_names"):
        bits.append("SNI " + ",".join(m["server_names"]))
    return "; ".join(bits) or "ALL"


def _chain_destination(chain: dict[str, Any]) -> str:
    for f in chain.get("filters") or []:
        cfg = f.get("typed_config") or {}
        if "rds" in cfg:
            return f"Route: {cfg['rds'].get('route_config_name', '')}"
        if "route_config" in cfg:
            return f"Inline Route: {cfg['route_config'].get('name', '')}"
        if "cluster" in cfg:
            return f"Cluster: {cfg['cluster']}"
        if "weighted_clusters" in cfg:
            return "Clusters: " + ",".join(
                c.get("name", "") for c in cfg["weighted_clusters"].get("clusters") or []
            )
    return "-"


def route_rows(routes: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["NAME", "VHOST NAME", "DOMAINS", "MATCH", "DESTINATION"]]
    for rc in routes:
        for vh in rc.get("virtual_hosts") or []:
            domains = vh.get("domains") or []
            shown = ", ".join(domains[:2]) + (
                f" + {len(domains) - 2} more" if len(domains) > 2 else ""
            )
            for r in vh.get("routes") or [{}]:
                rows.append(
                    [
                        str(rc.get("name", "")),
                        str(vh.get("name", "")),
                        shown,
                        _route_match(r),
                        _route_destination(r),
                    ]
                )
    return rows


def _route_match(r: dict[str, Any]) -> str:
    m = r.get("match") or {}
    for key in ("path", "prefix", "path_separated_prefix"):
        if key in m:
            text = m[key]
            break
    else:
        text = (m.get("safe_regex") or {}).get("regex", "/*")
    if m.get("headers"):
        text += " (+headers)"
    return str(text)


def _route_destination(r: dict[str, Any]) -> str:
    action = r.get("route") or {}
    if "cluster" in action:
        return str(action["cluster"])
    if "weighted_clusters" in action:
        return ", ".join(
            f"{c.get('name')} {c.get('weight', '')}%".strip()
            for c in action["weighted_clusters"].get("clusters") or []
        )
    if "redirect" in r:
        return "redirect"
    if "direct_response" in r:
        return f"direct {r['direct_response'].get('status')}"
    return "-"


def endpoint_rows(cla: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["ENDPOINT", "STATUS", "CLUSTER"]]
    for c in cla:
        for loc in c.get("endpoints") or []:
            for ep in loc.get("lb_endpoints") or []:
                sa = ((ep.get("endpoint") or {}).get("address") or {}).get("socket_address") or {}
                rows.append(
                    [
                        f"{sa.get('address')}:{sa.get('port_value')}",
                        str(ep.get("health_status") or "HEALTHY"),
                        str(c.get("cluster_name", "")),
                    ]
                )
    return rows


TABLES = {
    "cluster": ("clusters", cluster_rows),
    "listener": ("listeners", listener_rows),
    "route": ("routes", route_rows),
    "endpoint": ("endpoints", endpoint_rows),
}


def render(kind: str, config: dict[str, Any], fmt: str | None) -> str:
    kinds = list(TABLES) if kind == "all" else [kind]
    if fmt in ("json", "yaml"):
        doc = {TABLES[k][0]: config.get(TABLES[k][0]) or [] for k in kinds}
        return output.dump(doc if kind == "all" else doc[TABLES[kind][0]], fmt)
    parts = []
    for k in kinds:
        key, rows = TABLES[k]
        parts.append(output.table(rows(config.get(key) or [])))
    return "\n\n".join(parts)


def split_target(target: str, namespace: str | None) -> tuple[str, str]:
    """``name.namespace`` or ``name`` (with ``-n``, default ``default``), as istioctl."""
    if namespace is None and "." in target:
        name, _, ns = target.rpartition(".")
        return ns, name
    return namespace or "default", target


@click.command("proxy-config")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("target")
@click.option("-n", "--namespace", default=None, help="The proxy's namespace (or POD.NAMESPACE).")
@click.option("-o", "--output", "fmt", type=click.Choice(["json", "yaml"]), help="Output format.")
@click.pass_obj
def proxy_config(g: Any, kind: str, target: str, namespace: str | None, fmt: str | None) -> None:
    """Show the clusters, listeners, routes or endpoints of one proxy, as `istioctl proxy-config`.

    TARGET is a proxy name as `pilotfish proxy-status` lists it (POD.NAMESPACE), or POD with -n.
    The tables summarize; -o json|yaml prints the Envoy resources in full.

    \b
    Examples:
      pilotfish proxy-config cluster productpage-v1-6b7f6c9d8-x2xkq.default
      pilotfish proxy-config route reviews-v1-5c7d9b.default -o json
      pilotfish proxy-config all istio-ingressgateway.istio-system
    """
    ns, name = split_target(target, namespace)
    with g.client() as client:
        config = client.request("GET", proxy_config_path(ns, name))
    click.echo(render(kind, config, fmt))
