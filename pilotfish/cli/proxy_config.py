"""`pilotfish proxy-config`: what one proxy is configured with, as `istioctl proxy-config`.

Like istioctl, it reads the live Envoy: its config dump for clusters, listeners, routes,
secrets and the bootstrap, ``/clusters`` for endpoints and their health, ``/stats`` and
``/logging`` (see ``envoy_admin.py`` for how the CLI reaches a proxy's admin). With
``--source control-plane`` it shows what the control plane generates for the proxy instead
(what `pilotfish proxy-status POD` compares with the Envoy's). ``--file`` reads a saved config
dump (`pilotfish proxy-config dump POD > dump.json`).

The tables are pure functions over the JSON, with istioctl's columns and filters.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from pilotfish.api.kinds import proxy_config_path
from pilotfish.cli import output

TABLE_KINDS = ("cluster", "listener", "route", "endpoint", "secret")
KINDS = (*TABLE_KINDS, "bootstrap", "log", "all", "dump", "stats")

Rows = list[list[str]]
Resources = dict[str, list[dict[str, Any]]]

# -- the config dump --------------------------------------------------------------------------

_DUMP_TYPES = {
    "ClustersConfigDump": "clusters",
    "ListenersConfigDump": "listeners",
    "RoutesConfigDump": "routes",
    "SecretsConfigDump": "secrets",
    "BootstrapConfigDump": "bootstrap",
    "EndpointsConfigDump": "endpoints",
}


def dump_sections(dump: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The config dump's sections by short name (``clusters``, ``listeners``, ...)."""
    out: dict[str, dict[str, Any]] = {}
    for section in dump.get("configs") or []:
        kind = str(section.get("@type", "")).rsplit(".", 1)[-1]
        if kind in _DUMP_TYPES:
            out[_DUMP_TYPES[kind]] = section
    return out


def resources_from_dump(dump: dict[str, Any]) -> Resources:
    """The resources an Envoy runs, from its config dump: ``clusters``, ``listeners``,
    ``routes`` (static ones first, then those from the control plane), ``secrets`` (each
    ``{name, status, secret}``, private keys removed) and ``endpoints`` (with
    ``include_eds``)."""
    s = dump_sections(dump)
    c, ls, r = s.get("clusters", {}), s.get("listeners", {}), s.get("routes", {})
    out: Resources = {
        "clusters": [x["cluster"] for x in c.get("static_clusters") or [] if "cluster" in x]
        + [x["cluster"] for x in c.get("dynamic_active_clusters") or [] if "cluster" in x],
        "listeners": [x["listener"] for x in ls.get("static_listeners") or [] if "listener" in x]
        + [
            x["active_state"]["listener"]
            for x in ls.get("dynamic_listeners") or []
            if "listener" in (x.get("active_state") or {})
        ],
        "routes": [
            x["route_config"] for x in r.get("static_route_configs") or [] if "route_config" in x
        ]
        + [x["route_config"] for x in r.get("dynamic_route_configs") or [] if "route_config" in x],
        "secrets": _secrets(s.get("secrets", {})),
    }
    e = s.get("endpoints", {})
    out["endpoints"] = [
        x["endpoint_config"]
        for key in ("static_endpoint_configs", "dynamic_endpoint_configs")
        for x in e.get(key) or []
        if "endpoint_config" in x
    ]
    return out


def _secrets(section: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for status, key in (
        ("ACTIVE", "static_secrets"),
        ("ACTIVE", "dynamic_active_secrets"),
        ("WARMING", "dynamic_warming_secrets"),
    ):
        for entry in section.get(key) or []:
            secret = _without_keys(entry.get("secret") or {})
            out.append({"name": entry.get("name") or secret.get("name", ""), "status": status,
                        "secret": secret})  # fmt: skip
    return out


def _without_keys(secret: dict[str, Any]) -> dict[str, Any]:
    """The secret with every private key left out (Envoy redacts them; we drop them)."""
    tls = secret.get("tls_certificate")
    if not isinstance(tls, dict):
        return secret
    return {**secret, "tls_certificate": {k: v for k, v in tls.items() if k != "private_key"}}


# -- clusters ---------------------------------------------------------------------------------


def _cluster_parts(c: dict[str, Any]) -> tuple[str, str, str, str]:
    """(fqdn, port, subset, direction) of an Istio-named cluster; (name, -, -, -) otherwise."""
    name = str(c.get("name", ""))
    parts = name.split("|")
    if len(parts) == 4:
        direction, port, subset, fqdn = parts
        return fqdn, port, subset or "-", direction
    return name, "-", "-", "-"


def _config_ref(resource: dict[str, Any]) -> str:
    """Istio's ``istio.config`` metadata (the Istio resource behind it) as ``name.namespace``."""
    ref = (((resource.get("metadata") or {}).get("filter_metadata") or {}).get("istio") or {}).get(
        "config"
    )
    if not ref:
        return "-"
    bits = str(ref).strip("/").split("/")
    return f"{bits[-1]}.{bits[-3]}" if len(bits) >= 4 else str(ref)


def cluster_rows(
    clusters: list[dict[str, Any]],
    fqdn: str | None = None,
    port: int | None = None,
    subset: str | None = None,
    direction: str | None = None,
) -> Rows:
    rows = [["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"]]
    for c in clusters:
        host, p, sub, dire = _cluster_parts(c)
        if fqdn is not None and not (host == fqdn or host.startswith(fqdn + ".")):
            continue
        if port is not None and p != str(port):
            continue
        if subset is not None and sub != subset:
            continue
        if direction is not None and dire != direction:
            continue
        kind = str(c.get("type") or ("EDS" if c.get("eds_cluster_config") else "STATIC"))
        rows.append([host, p, sub, dire, kind, _config_ref(c)])
    return rows


# -- listeners --------------------------------------------------------------------------------


def _listener_address(lst: dict[str, Any]) -> tuple[str, str]:
    sa = (lst.get("address") or {}).get("socket_address") or {}
    addresses = [str(sa.get("address", ""))]
    for extra in lst.get("additional_addresses") or []:
        more = ((extra.get("address") or {}).get("socket_address") or {}).get("address")
        if more:
            addresses.append(str(more))
    return ",".join(addresses), str(sa.get("port_value", ""))


def listener_rows(
    listeners: list[dict[str, Any]], address: str | None = None, port: int | None = None
) -> Rows:
    rows = [["ADDRESSES", "PORT", "MATCH", "DESTINATION"]]
    for lst in listeners:
        addr, p = _listener_address(lst)
        if address is not None and address not in addr.split(","):
            continue
        if port is not None and p != str(port):
            continue
        chains = list(lst.get("filter_chains") or [])
        if lst.get("default_filter_chain"):
            chains.append(lst["default_filter_chain"])
        for chain in chains or [{}]:
            rows.append(
                [addr, p, _chain_match(chain.get("filter_chain_match") or {}), _chain_dest(chain)]
            )
    return rows


def _chain_match(m: dict[str, Any]) -> str:
    bits = []
    if "destination_port" in m:
        bits.append(f"port {m['destination_port']}")
    for r in m.get("prefix_ranges") or []:
        bits.append(f"Addr: {r.get('address_prefix')}/{r.get('prefix_len', 32)}")
    if m.get("transport_protocol"):
        bits.append(f"Trans: {m['transport_protocol']}")
    if m.get("application_protocols"):
        bits.append("App: " + ",".join(m["application_protocols"]))
    if m.get("server_names"):
        bits.append("SNI: " + ",".join(m["server_names"]))
    return "; ".join(bits) or "ALL"


def _chain_dest(chain: dict[str, Any]) -> str:
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


# -- routes -----------------------------------------------------------------------------------


def route_rows(routes: list[dict[str, Any]], name: str | None = None) -> Rows:
    rows = [["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE", "DESTINATION"]]
    for rc in routes:
        if name is not None and str(rc.get("name", "")) != name:
            continue
        # Over VHDS a virtual host is named "<route config>/<host:port>" (its resource name);
        # the table shows it as over RDS.
        prefix = f"{rc.get('name', '')}/" if "vhds" in rc else None
        for vh in rc.get("virtual_hosts") or []:
            vh_name = str(vh.get("name", ""))
            if prefix is not None:
                vh_name = vh_name.removeprefix(prefix)
            domains = vh.get("domains") or []
            shown = ", ".join(domains[:2]) + (
                f" + {len(domains) - 2} more" if len(domains) > 2 else ""
            )
            for r in vh.get("routes") or [{}]:
                rows.append(
                    [
                        str(rc.get("name", "")),
                        vh_name,
                        shown,
                        _route_match(r),
                        _config_ref(r),
                        _route_destination(r),
                    ]
                )
    return rows


def _route_match(r: dict[str, Any]) -> str:
    m = r.get("match") or {}
    for key in ("path", "prefix", "path_separated_prefix"):
        if key in m:
            text = m[key] + ("*" if key != "path" and not str(m[key]).endswith("*") else "")
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


# -- endpoints --------------------------------------------------------------------------------


def endpoints_from_clusters(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Admin ``/clusters?format=json`` as ``{cluster, address, port, status, outlier}`` rows."""
    out = []
    for cs in doc.get("cluster_statuses") or []:
        for h in cs.get("host_statuses") or []:
            sa = (h.get("address") or {}).get("socket_address") or {}
            pipe = ((h.get("address") or {}).get("pipe") or {}).get("path")
            hs = h.get("health_status") or {}
            healthy = hs.get("eds_health_status", "HEALTHY") in ("HEALTHY", "UNKNOWN") and not (
                hs.get("failed_active_health_check")
            )
            out.append(
                {
                    "cluster": str(cs.get("name", "")),
                    "address": str(pipe or sa.get("address", "")),
                    "port": str(sa.get("port_value", "")),
                    "status": "HEALTHY" if healthy else "UNHEALTHY",
                    "outlier": "FAILED" if hs.get("failed_outlier_check") else "OK",
                }
            )
    return out


def endpoints_from_assignments(cla: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ClusterLoadAssignments (what the control plane sends) in the same row shape."""
    out = []
    for c in cla:
        for loc in c.get("endpoints") or []:
            for ep in loc.get("lb_endpoints") or []:
                sa = ((ep.get("endpoint") or {}).get("address") or {}).get("socket_address") or {}
                out.append(
                    {
                        "cluster": str(c.get("cluster_name", "")),
                        "address": str(sa.get("address", "")),
                        "port": str(sa.get("port_value", "")),
                        "status": str(ep.get("health_status") or "HEALTHY"),
                        "outlier": "OK",
                    }
                )
    return out


def endpoint_rows(
    endpoints: list[dict[str, Any]],
    address: str | None = None,
    port: int | None = None,
    cluster: str | None = None,
    status: str | None = None,
) -> Rows:
    rows = [["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]]
    for e in endpoints:
        if address is not None and e["address"] != address:
            continue
        if port is not None and e["port"] != str(port):
            continue
        if cluster is not None and e["cluster"] != cluster:
            continue
        if status is not None and e["status"] != status.upper():
            continue
        where = f"{e['address']}:{e['port']}" if e["port"] else e["address"]
        rows.append([where, e["status"], e["outlier"], e["cluster"]])
    return rows


# -- secrets ----------------------------------------------------------------------------------


def _pem_bytes(source: dict[str, Any]) -> bytes:
    if "inline_bytes" in source:
        return base64.b64decode(source["inline_bytes"])
    return str(source.get("inline_string", "")).encode()


def certificate_facts(pem: bytes, now: datetime | None = None) -> dict[str, Any] | None:
    """Identity (URI and DNS SANs), serial, validity of the first certificate in ``pem``."""
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        return None
    if not certs:
        return None
    cert = certs[0]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*san.get_values_for_type(x509.UniformResourceIdentifier)]
        names += san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [cert.subject.rfc4514_string()]
    at = now or datetime.now(UTC)
    before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
    return {
        "identity": names,
        "serial_number": format(cert.serial_number, "x"),
        "not_before": before.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "valid": before <= at <= after,
        "certificates": len(certs),
    }


def secret_items(
    secrets: list[dict[str, Any]], now: datetime | None = None
) -> list[dict[str, Any]]:
    """Each secret as ``{name, type, status, identity, serial_number, not_before, not_after,
    valid}``: a certificate chain (``Cert Chain``) or trusted roots (``CA``); never a key."""
    out = []
    for entry in secrets:
        secret = entry.get("secret") or {}
        tls, ca = secret.get("tls_certificate"), secret.get("validation_context")
        if tls:
            kind, pem = "Cert Chain", _pem_bytes(tls.get("certificate_chain") or {})
        elif ca:
            kind, pem = "CA", _pem_bytes(ca.get("trusted_ca") or {})
        else:
            kind, pem = "-", b""
        facts = certificate_facts(pem, now) or {}
        out.append(
            {
                "name": entry.get("name", ""),
                "type": kind,
                "status": entry.get("status", "ACTIVE"),
                "identity": facts.get("identity", []),
                "valid": facts.get("valid", False),
                "serial_number": facts.get("serial_number", ""),
                "not_after": facts.get("not_after", ""),
                "not_before": facts.get("not_before", ""),
            }
        )
    return out


def secret_rows(items: list[dict[str, Any]]) -> Rows:
    rows = [
        ["RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER",
         "NOT BEFORE", "IDENTITY"],
    ]  # fmt: skip
    for s in items:
        rows.append(
            [
                str(s["name"]),
                s["type"],
                s["status"],
                "true" if s["valid"] else "false",
                s["serial_number"] or "-",
                s["not_after"] or "-",
                s["not_before"] or "-",
                ",".join(s["identity"][:1]) + (" +more" if len(s["identity"]) > 1 else "") or "-",
            ]
        )
    return rows


# -- logging ----------------------------------------------------------------------------------

LEVELS = ("trace", "debug", "info", "warning", "error", "critical", "off")


def parse_loggers(text: str) -> dict[str, str]:
    """Envoy's ``/logging`` answer (``active loggers:`` then ``  name: level``) as a dict."""
    out = {}
    for line in text.splitlines():
        name, sep, level = line.strip().partition(": ")
        if sep and level in LEVELS:
            out[name] = level
    return out


def logging_queries(level: str) -> list[str]:
    """Admin ``/logging`` queries for istioctl's ``--level``: ``LEVEL`` (every logger),
    ``LOGGER:LEVEL,...``, or both (``warning,http:debug``: all first, then each named)."""
    every, paths = [], []
    for part in (p.strip() for p in level.split(",") if p.strip()):
        name, sep, lvl = part.rpartition(":")
        lvl = "warning" if lvl == "warn" else lvl
        if lvl not in LEVELS:
            raise click.BadParameter(f"{part!r}: the level must be one of {', '.join(LEVELS)}")
        if sep:
            paths.append(f"{name}:{lvl}")
        else:
            every.append(lvl)
    if len(every) > 1:
        raise click.BadParameter("give one level for every logger (then LOGGER:LEVEL pairs)")
    queries = [f"level={every[0]}"] if every else []
    if paths:
        queries.append("paths=" + ",".join(paths))
    return queries


# -- the command ------------------------------------------------------------------------------


def split_target(target: str, namespace: str | None) -> tuple[str, str]:
    """``name.namespace`` or ``name`` (with ``-n``, default ``default``), as istioctl."""
    if namespace is None and "." in target:
        name, _, ns = target.rpartition(".")
        return ns, name
    return namespace or "default", target


def render(kind: str, config: dict[str, Any], fmt: str | None) -> str:
    """The control plane's view (``clusters``, ``listeners``, ``routes``, ``endpoints`` as the
    API returns them) as tables or documents; kept for callers of the old shape."""
    kinds = ["cluster", "listener", "route", "endpoint"] if kind == "all" else [kind]
    keys = {"cluster": "clusters", "listener": "listeners", "route": "routes",
            "endpoint": "endpoints"}  # fmt: skip
    if fmt in ("json", "yaml"):
        doc = {keys[k]: config.get(keys[k]) or [] for k in kinds}
        return output.dump(doc if kind == "all" else doc[keys[kind]], fmt)
    tables = {
        "cluster": lambda: cluster_rows(config.get("clusters") or []),
        "listener": lambda: listener_rows(config.get("listeners") or []),
        "route": lambda: route_rows(config.get("routes") or []),
        "endpoint": lambda: endpoint_rows(
            endpoints_from_assignments(config.get("endpoints") or [])
        ),
    }
    return "\n\n".join(output.table(tables[k]()) for k in kinds)


class _View:
    """One proxy's config, read lazily from its Envoy, a saved dump, or the control plane."""

    def __init__(self, g: Any, namespace: str, name: str, source: str, file: str | None) -> None:
        self.g, self.namespace, self.name, self.source, self.file = g, namespace, name, source, file
        self._dump: dict[str, Any] | None = None
        self._admin: Any = None

    @property
    def proxy(self) -> str:
        return f"{self.name}.{self.namespace}"

    def admin(self) -> Any:
        if self._admin is None:
            from pilotfish.cli.envoy_admin import find_admin

            with self.g.client() as client:
                status = client.proxy_status()
            self._admin = find_admin(self.namespace, self.name, status)
        return self._admin

    def dump(self, include_eds: bool = False) -> dict[str, Any]:
        if self.file is not None:
            with click.open_file(self.file) as f:
                loaded: dict[str, Any] = json.load(f)
            return loaded
        if self._dump is None or include_eds:
            path = "/config_dump" + ("?include_eds" if include_eds else "")
            doc: dict[str, Any] = json.loads(self.admin().request("GET", path))
            if include_eds:
                return doc
            self._dump = doc
        return self._dump

    def resources(self) -> Resources:
        if self.source == "control-plane":
            with self.g.client() as client:
                cp: Resources = client.request("GET", proxy_config_path(self.namespace, self.name))
            return cp
        return resources_from_dump(self.dump())

    def endpoints(self) -> tuple[Any, list[dict[str, Any]]]:
        """(the document -o json prints, the rows)."""
        if self.source == "control-plane":
            cla = self.resources().get("endpoints") or []
            return cla, endpoints_from_assignments(cla)
        if self.file is not None:
            cla = resources_from_dump(self.dump()).get("endpoints") or []
            return cla, endpoints_from_assignments(cla)
        doc = json.loads(self.admin().request("GET", "/clusters?format=json"))
        return doc, endpoints_from_clusters(doc)


def _emit(doc: Any, rows: Rows, fmt: str | None) -> None:
    click.echo(output.dump(doc, fmt) if fmt in ("json", "yaml") else output.table(rows))


@click.command("proxy-config")
@click.argument("kind", type=click.Choice(KINDS), metavar="KIND")
@click.argument("target")
@click.option("-n", "--namespace", default=None, help="The proxy's namespace (or POD.NAMESPACE).")
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["json", "yaml", "short", "prom"]),
    help="json|yaml: the resources in full; prom: stats in Prometheus format.",
)
@click.option("--fqdn", help="cluster: only this service FQDN (or its short-name prefix).")
@click.option("--port", type=int, help="cluster, listener, endpoint: only this port.")
@click.option("--subset", help="cluster: only this subset.")
@click.option("--direction", type=click.Choice(["inbound", "outbound"]), help="cluster: direction.")
@click.option("--name", "route_name", help="route: only the route configuration of this name.")
@click.option("--address", help="listener, endpoint: only this address.")
@click.option("--cluster", "cluster_name", help="endpoint: only this cluster.")
@click.option("--status", "ep_status", help="endpoint: only HEALTHY or UNHEALTHY endpoints.")
@click.option("--level", help="log: set levels: LEVEL, LOGGER:LEVEL[,...] or both.")
@click.option("--filter", "stats_filter", help="stats: only stats matching this regex.")
@click.option("--include-eds", is_flag=True, help="dump: include the endpoints (EDS).")
@click.option("--source", type=click.Choice(["envoy", "control-plane"]), default="envoy",
              show_default=True,
              help="cluster, listener, route, endpoint, all: the live Envoy's config or what the "
              "control plane generates for it.")  # fmt: skip
@click.option("-f", "--file", "file", help="Read a saved config dump instead of the Envoy.")
@click.pass_obj
def proxy_config(
    g: Any,
    kind: str,
    target: str,
    namespace: str | None,
    fmt: str | None,
    fqdn: str | None,
    port: int | None,
    subset: str | None,
    direction: str | None,
    route_name: str | None,
    address: str | None,
    cluster_name: str | None,
    ep_status: str | None,
    level: str | None,
    stats_filter: str | None,
    include_eds: bool,
    source: str,
    file: str | None,
) -> None:
    """Show one proxy's Envoy config, as `istioctl proxy-config`.

    KIND is one of cluster, listener, route, endpoint, secret, bootstrap, log, all, dump,
    stats. TARGET is a proxy as `pilotfish proxy-status` lists it (POD.NAMESPACE), or POD
    with -n. The tables read the live Envoy (its config dump, /clusters, /stats, /logging;
    for pods of the local runtime the CLI enters the pod's network namespace, as root) and
    summarize; -o json|yaml prints the resources in full. Certificates show their identity
    (SAN), serial and validity, never a key.

    \b
    Examples:
      pilotfish proxy-config cluster productpage-v1-6b7f6c9d8-x2xkq.default --fqdn reviews
      pilotfish proxy-config cluster productpage-v1-6b7f6c9d8-x2xkq --port 9080 --subset v1
      pilotfish proxy-config listener reviews-v1-5c7d9b.default --port 15006
      pilotfish proxy-config route productpage-v1-6b7f6c9d8-x2xkq.default --name 9080 -o json
      pilotfish proxy-config endpoint productpage-v1-6b7f6c9d8-x2xkq.default --cluster \\
          'outbound|9080|v1|reviews.default.svc.cluster.local'
      pilotfish proxy-config secret productpage-v1-6b7f6c9d8-x2xkq.default
      pilotfish proxy-config log productpage-v1-6b7f6c9d8-x2xkq.default --level rbac:debug
      pilotfish proxy-config stats istio-ingressgateway.istio-system --filter '^http\\.'
      pilotfish proxy-config dump productpage-v1-6b7f6c9d8-x2xkq.default > dump.json
      pilotfish proxy-config cluster productpage-v1-6b7f6c9d8-x2xkq -f dump.json
      pilotfish proxy-config all istio-ingressgateway.istio-system --source control-plane
    """
    ns, name = split_target(target, namespace)
    view = _View(g, ns, name, source, file)
    if kind in ("log", "stats") and file is not None:
        raise click.UsageError(f"{kind} reads the live Envoy; --file does not apply")
    if kind in ("secret", "bootstrap", "dump", "log", "stats") and source != "envoy":
        raise click.UsageError(f"{kind} is read from the Envoy only (--source envoy)")
    handlers: dict[str, Callable[[], None]] = {
        "cluster": lambda: _clusters(view, fmt, fqdn, port, subset, direction),
        "listener": lambda: _listeners(view, fmt, address, port),
        "route": lambda: _routes(view, fmt, route_name),
        "endpoint": lambda: _endpoints(view, fmt, address, port, cluster_name, ep_status),
        "secret": lambda: _secrets_cmd(view, fmt),
        "bootstrap": lambda: click.echo(
            output.dump(
                dump_sections(view.dump()).get("bootstrap", {}).get("bootstrap", {}),
                fmt if fmt == "yaml" else "json",
            )
        ),
        "log": lambda: _log(view, fmt, level),
        "dump": lambda: click.echo(
            output.dump(view.dump(include_eds), fmt if fmt == "yaml" else "json")
        ),
        "stats": lambda: _stats(view, fmt, stats_filter),
        "all": lambda: _all(view, fmt),
    }
    handlers[kind]()


def _clusters(view: _View, fmt: str | None, *filters: Any) -> None:
    clusters = [
        c for c in view.resources().get("clusters") or [] if len(cluster_rows([c], *filters)) > 1
    ]
    _emit(clusters, cluster_rows(clusters), fmt)


def _listeners(view: _View, fmt: str | None, address: str | None, port: int | None) -> None:
    listeners = [
        lst
        for lst in view.resources().get("listeners") or []
        if len(listener_rows([lst], address, port)) > 1
    ]
    _emit(listeners, listener_rows(listeners), fmt)


def _routes(view: _View, fmt: str | None, name: str | None) -> None:
    routes = [r for r in view.resources().get("routes") or [] if name in (None, r.get("name"))]
    _emit(routes, route_rows(routes), fmt)


def _endpoints(view: _View, fmt: str | None, *filters: Any) -> None:
    doc, items = view.endpoints()
    rows = endpoint_rows(items, *filters)
    if fmt in ("json", "yaml") and any(f is not None for f in filters):
        clusters = {r[3] for r in rows[1:]}
        doc = (
            {
                "cluster_statuses": [
                    c for c in doc.get("cluster_statuses") or [] if c.get("name") in clusters
                ]
            }
            if isinstance(doc, dict)
            else [c for c in doc if c.get("cluster_name") in clusters]
        )
    _emit(doc, rows, fmt)


def _secrets_cmd(view: _View, fmt: str | None) -> None:
    items = secret_items(resources_from_dump(view.dump())["secrets"])
    _emit(items, secret_rows(items), fmt)


def _log(view: _View, fmt: str | None, level: str | None) -> None:
    admin = view.admin()
    text = admin.request("POST", "/logging")
    for query in logging_queries(level) if level else []:
        text = admin.request("POST", f"/logging?{query}")
    loggers = parse_loggers(text)
    if fmt in ("json", "yaml"):
        click.echo(output.dump(loggers, fmt))
        return
    click.echo(f"{view.proxy}:\nactive loggers:")
    for logger, lvl in sorted(loggers.items()):
        click.echo(f"  {logger}: {lvl}")


def _stats(view: _View, fmt: str | None, regex: str | None) -> None:
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise click.BadParameter(f"{regex!r}: {exc}", param_hint="--filter") from None
    from urllib.parse import urlencode

    query = {"filter": regex} if regex else {}
    if fmt == "prom":
        path = "/stats/prometheus"
    else:
        path = "/stats"
        if fmt in ("json", "yaml"):
            query["format"] = "json"
    text = view.admin().request("GET", path + (f"?{urlencode(query)}" if query else ""))
    if fmt == "yaml":
        text = output.dump(json.loads(text), "yaml")
    click.echo(text.rstrip("\n"))


def _all(view: _View, fmt: str | None) -> None:
    res = view.resources()
    kinds = ["cluster", "listener", "route", "endpoint"]
    if view.source == "envoy":
        kinds.append("secret")
    if fmt in ("json", "yaml"):
        doc: dict[str, Any] = {
            "clusters": res.get("clusters") or [],
            "listeners": res.get("listeners") or [],
            "routes": res.get("routes") or [],
            "endpoints": view.endpoints()[0],
        }
        if view.source == "envoy":
            doc["secrets"] = secret_items(res.get("secrets") or [])
        click.echo(output.dump(doc, fmt))
        return
    tables = {
        "cluster": lambda: cluster_rows(res.get("clusters") or []),
        "listener": lambda: listener_rows(res.get("listeners") or []),
        "route": lambda: route_rows(res.get("routes") or []),
        "endpoint": lambda: endpoint_rows(view.endpoints()[1]),
        "secret": lambda: secret_rows(secret_items(res.get("secrets") or [])),
    }
    click.echo("\n\n".join(output.table(tables[k]()) for k in kinds))


# -- proxy-status POD: the control plane's config against the Envoy's ------------------------

#: What `proxy-status POD` compares, as istioctl: (title, key in the control plane's view).
SYNC_TYPES = (("Clusters", "clusters"), ("Listeners", "listeners"), ("Routes", "routes"))


def dynamic_from_dump(dump: dict[str, Any]) -> Resources:
    """What the control plane sent an Envoy, from its config dump (static resources, which
    come from the bootstrap, left out)."""
    s = dump_sections(dump)
    return {
        "clusters": [
            x["cluster"]
            for x in s.get("clusters", {}).get("dynamic_active_clusters") or []
            if "cluster" in x
        ],
        "listeners": [
            x["active_state"]["listener"]
            for x in s.get("listeners", {}).get("dynamic_listeners") or []
            if "listener" in (x.get("active_state") or {})
        ],
        "routes": [
            x["route_config"]
            for x in s.get("routes", {}).get("dynamic_route_configs") or []
            if "route_config" in x
        ],
    }


def _routes_loaded(dump: dict[str, Any]) -> str:
    times = [
        str(x.get("last_updated"))
        for x in dump_sections(dump).get("routes", {}).get("dynamic_route_configs") or []
        if x.get("last_updated")
    ]
    return max(times) if times else ""


def _same_numbers(value: Any) -> Any:
    """``value`` with whole floats as ints: protobuf's JSON writes a double 100 as ``100.0``
    on one side and Envoy's dump as ``100`` on the other, which is no difference."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _same_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_same_numbers(v) for v in value]
    return value


def _lines(resources: list[dict[str, Any]]) -> list[str]:
    # The dump wraps each resource in an Any (its top-level "@type"); the API does not.
    bare = [_same_numbers({k: v for k, v in r.items() if k != "@type"}) for r in resources]
    ordered = sorted(bare, key=lambda r: str(r.get("name", "")))
    return json.dumps(ordered, indent=2, sort_keys=True).splitlines(keepends=True)


def sync_diff(control_plane: Resources, dump: dict[str, Any]) -> tuple[str, bool]:
    """istioctl's `proxy-status POD`: per type, a unified diff from what the control plane
    would send to what the Envoy runs, or ``<Type> Match``. Returns (text, everything matches).
    """
    import difflib

    envoy = dynamic_from_dump(dump)
    parts, same = [], True
    for title, key in SYNC_TYPES:
        want, have = _lines(control_plane.get(key) or []), _lines(envoy[key])
        if want == have:
            note = ""
            if key == "routes" and _routes_loaded(dump):
                note = f" (RDS last loaded at {_routes_loaded(dump)})"
            parts.append(f"{title} Match{note}\n")
            continue
        same = False
        parts.append(
            "".join(
                difflib.unified_diff(
                    want, have, fromfile=f"Control Plane {title}", tofile=f"Envoy {title}"
                )
            )
        )
    return "".join(parts), same
