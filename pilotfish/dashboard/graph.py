"""The service graph, computed from Istio's standard metrics the way Kiali computes it. Pure.

:func:`graph_queries` says what to ask Prometheus over the chosen window (instant queries:
request rates, TCP bytes, and the edges' response times, each grouped by both reporters and
the source/destination workload labels); :func:`build_graph` turns the answers into nodes and
edges:

- **nodes** by graph type: ``workload`` (namespace + workload), ``app`` (namespace + app),
  ``versionedApp`` (namespace + app + version) or ``service`` (namespace + service; a caller is
  the service of its canonical name). A caller without a sidecar is the ``unknown`` node; a
  call that left the mesh through the passthrough cluster (or whose destination is unknown)
  ends in the ``PassthroughCluster`` node; the ingress gateway is a root node (``isRoot``).
- **edges**: the figures of the client's sidecar (``reporter="source"``: it sees faults it
  injects and calls whose destination has no sidecar) when it reports, else the server's
  (``reporter="destination"``: a caller without a sidecar). The mutual-TLS share comes from
  the server's ``connection_security_policy`` (only the server knows it).
- **health**, with Kiali's default tolerances: 5xx (and requests that got no response) above
  0% degraded, at or above 10% failing; 4xx at or above 10% degraded, 20% failing. A node's
  health is the worst of the requests it received (a root node: the requests it sent).
- **response times** p50/p95/p99 per edge, from one of two sources:

  - *recorded*: Prometheus computes them with ``histogram_quantile`` in the recording rules of
    :func:`recording_rules` (the local mesh's Prometheus loads them), and the graph reads a
    few series per edge. Reading every duration bucket of every edge at each refresh is what
    makes a large graph slow (each bucket is a series: 14 to 20 per edge and reporter);
  - *computed*: from the request-duration bucket rates, interpolated here as Prometheus'
    ``histogram_quantile`` does, when the recorded series do not give every edge its three
    figures (a Prometheus without the rules, an edge newer than the rules' last evaluation,
    or one whose first evaluation Prometheus has stored p50 of but not yet p99).

  :func:`response_times_missing` tells which one a graph needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

GraphType = Literal["workload", "app", "versionedApp", "service"]
GRAPH_TYPES: tuple[str, ...] = ("workload", "app", "versionedApp", "service")
#: The time ranges the dashboard offers (the rate window of every query).
DURATIONS: dict[str, int] = {"1m": 60, "5m": 300, "1h": 3600}
QUANTILES = (0.5, 0.95, 0.99)

UNKNOWN = "unknown"
PASSTHROUGH = "PassthroughCluster"
BLACKHOLE = "BlackHoleCluster"
INGRESS_APPS = frozenset({"istio-ingressgateway"})

#: Kiali's default tolerances (percent): (degraded at, failing at).
TOLERANCE_5XX = (0.0, 10.0)
TOLERANCE_4XX = (10.0, 20.0)

EDGE_LABELS = (
    "reporter",
    "source_workload_namespace",
    "source_workload",
    "source_app",
    "source_version",
    "source_canonical_service",
    "destination_service_namespace",
    "destination_service_name",
    "destination_workload_namespace",
    "destination_workload",
    "destination_app",
    "destination_version",
)
REQUEST_LABELS = (
    *EDGE_LABELS,
    "request_protocol",
    "response_code",
    "response_flags",
    "connection_security_policy",
)

Sample = Mapping[str, Any]  # a Prometheus vector item: {"metric": {...}, "value": [t, "v"]}

Health = Literal["healthy", "degraded", "failure", "idle"]
_RANK: dict[str, int] = {"idle": 0, "healthy": 1, "degraded": 2, "failure": 3}


#: Where the recorded response times are: ``<name>{quantile="0.5", <EDGE_LABELS>}``, one name
#: per window (``edge:istio_request_duration_milliseconds:quantile_rate5m``), after Prometheus'
#: ``level:metric:operations`` naming.
RECORDED_QUANTILES = "edge:istio_request_duration_milliseconds:quantile_rate{window}"
#: How often Prometheus evaluates the rules of each window: a window's figures are at most
#: that old. The hour window changes slowly and costs the most to evaluate.
RULE_INTERVALS: dict[str, str] = {"1m": "15s", "5m": "30s", "1h": "1m"}
DURATION_BUCKETS_METRIC = "istio_request_duration_milliseconds_bucket"


@dataclass(frozen=True)
class GraphQueries:
    requests: str
    #: The request-duration bucket rates (response times computed here).
    durations: str
    tcp: str
    #: The recorded response times (see :func:`recording_rules`).
    quantiles: str


def graph_queries(duration: str) -> GraphQueries:
    """The PromQL the graph needs for the window ``duration`` (``1m``, ``5m``, ``1h``)."""
    if duration not in DURATIONS:
        raise ValueError(f"duration: must be one of {', '.join(DURATIONS)}, not {duration!r}")
    window = f"[{duration}]"
    by = ",".join(EDGE_LABELS)
    return GraphQueries(
        requests=f"sum(rate(istio_requests_total{window})) by ({','.join(REQUEST_LABELS)}) > 0",
        # Every bucket, zero ones too: histogram_quantile interpolates from the bucket below.
        durations=f"sum(rate({DURATION_BUCKETS_METRIC}{window})) by ({by},le)",
        tcp=f"sum(rate(istio_tcp_sent_bytes_total{window})) by ({by}) > 0",
        quantiles=RECORDED_QUANTILES.format(window=duration),
    )


def recording_rules(intervals: Mapping[str, str] = RULE_INTERVALS) -> dict[str, Any]:
    """The Prometheus recording rules behind the recorded response times (a rule file as a
    dict to dump as YAML). Pure.

    For each window and each of p50/p95/p99: ``histogram_quantile`` over the bucket rates
    summed by the edge labels (which drops per-pod, response-code and other labels), kept
    where defined (``>= 0`` drops an edge with no request in the window). The raw series stay
    as they are: queries and dashboards written for Istio keep working."""
    by = ", ".join(EDGE_LABELS)
    groups = []
    for duration, interval in intervals.items():
        rules = [
            {
                "record": RECORDED_QUANTILES.format(window=duration),
                "expr": (
                    f"histogram_quantile({q}, sum by (le, {by}) "
                    f"(rate({DURATION_BUCKETS_METRIC}[{duration}]))) >= 0"
                ),
                "labels": {"quantile": str(q)},
            }
            for q in QUANTILES
        ]
        groups.append(
            {"name": f"pilotfish-graph-response-times-{duration}", "interval": interval,
             "rules": rules}
        )  # fmt: skip
    return {"groups": groups}


def _edge_key(metric: Mapping[str, str]) -> tuple[str | None, ...]:
    return tuple(map(metric.get, EDGE_LABELS))


def response_times_missing(requests: Iterable[Sample], quantiles: Iterable[Sample]) -> bool:
    """Whether some edge and reporter with requests lacks one of its recorded p50/p95/p99
    (so the graph must compute them from the buckets).

    Every quantile counts, not just one: Prometheus stores each rule's result as soon as that
    rule is evaluated, so a query during a group's evaluation sees a new edge's p50 before its
    p99 (measured: 12% of queries during a group taking 0.2 s of each second)."""
    recorded: dict[tuple[str | None, ...], set[float]] = {}
    for s in quantiles:
        metric = s.get("metric") or {}
        q = _float_label(metric, "quantile")
        if q is not None and math.isfinite(_value(s)):
            recorded.setdefault(_edge_key(metric), set()).add(q)
    wanted = set(QUANTILES)
    return any(
        not wanted <= recorded.get(_edge_key(s.get("metric") or {}), set()) for s in requests
    )


# ---------------------------------------------------------------------------- node identity


def _v(metric: Mapping[str, str], key: str) -> str:
    value = metric.get(key, "")
    return value if value else UNKNOWN


@dataclass
class Node:
    id: str
    node_type: str  # workload | app | versionedApp | service | unknown | passthrough
    namespace: str
    label: str
    workload: str = ""
    app: str = ""
    version: str = ""
    service: str = ""
    is_root: bool = False
    is_ingress: bool = False
    health: Health = "idle"
    rate_in: float = 0.0
    rate_out: float = 0.0
    error_pct: float = 0.0
    workloads: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "nodeType": self.node_type,
            "namespace": self.namespace,
            "label": self.label,
            "workload": self.workload,
            "app": self.app,
            "version": self.version,
            "service": self.service,
            "workloads": sorted(self.workloads),
            "isRoot": self.is_root,
            "isIngress": self.is_ingress,
            "health": self.health,
            "rateIn": round(self.rate_in, 4),
            "rateOut": round(self.rate_out, 4),
            "errorPct": round(self.error_pct, 2),
        }


def _is_ingress(app: str, workload: str) -> bool:
    return app in INGRESS_APPS or workload in INGRESS_APPS


def source_node(metric: Mapping[str, str], graph_type: str) -> Node:
    ns, wl = _v(metric, "source_workload_namespace"), _v(metric, "source_workload")
    app, version = _v(metric, "source_app"), _v(metric, "source_version")
    if wl == UNKNOWN:
        return Node("unknown", "unknown", UNKNOWN, "unknown", is_root=True)
    if app == UNKNOWN:
        app = _v(metric, "source_canonical_service")
    ingress = _is_ingress(app, wl)
    if ingress:
        node = Node(f"workload:{ns}:{wl}", "workload", ns, wl, workload=wl, app=app)
        node.is_root = node.is_ingress = True
        node.workloads.add(wl)
        return node
    node = _typed_node(graph_type, ns, wl, app, version, service=app)
    node.workloads.add(wl)
    return node


def destination_node(metric: Mapping[str, str], graph_type: str) -> Node:
    svc_ns = _v(metric, "destination_service_namespace")
    svc = _v(metric, "destination_service_name")
    ns, wl = _v(metric, "destination_workload_namespace"), _v(metric, "destination_workload")
    app, version = _v(metric, "destination_app"), _v(metric, "destination_version")
    if svc in (PASSTHROUGH, BLACKHOLE) or (wl == UNKNOWN and svc == UNKNOWN):
        name = svc if svc in (PASSTHROUGH, BLACKHOLE) else PASSTHROUGH
        return Node(name, "passthrough", UNKNOWN, name)
    if graph_type == "service" or wl == UNKNOWN:
        # A service whose endpoints are not known workloads (a ServiceEntry, no sidecar).
        node = Node(f"service:{svc_ns}:{svc}", "service", svc_ns, svc, service=svc)
        if wl != UNKNOWN:
            node.workloads.add(wl)
        return node
    if _is_ingress(app, wl):
        node = Node(f"workload:{ns}:{wl}", "workload", ns, wl, workload=wl, app=app)
        node.is_ingress = True
        return node
    node = _typed_node(graph_type, ns, wl, app, version, service=svc)
    node.workloads.add(wl)
    return node


def _typed_node(graph_type: str, ns: str, wl: str, app: str, version: str, *, service: str) -> Node:
    if graph_type == "app" and app != UNKNOWN:
        return Node(f"app:{ns}:{app}", "app", ns, app, app=app)
    if graph_type == "versionedApp" and app != UNKNOWN:
        label = app if version == UNKNOWN else f"{app} {version}"
        return Node(f"vapp:{ns}:{app}:{version}", "versionedApp", ns, label, app=app,
                    version=version)  # fmt: skip
    if graph_type == "service":
        return Node(f"service:{ns}:{service}", "service", ns, service, service=service)
    return Node(
        f"workload:{ns}:{wl}", "workload", ns, wl, workload=wl, app=app, version=version,
        service=service,
    )  # fmt: skip


# ---------------------------------------------------------------------------- edges


@dataclass
class _Side:
    """One reporter's figures for one edge."""

    rate: float = 0.0
    codes: dict[str, float] = field(default_factory=dict)
    flags: dict[str, float] = field(default_factory=dict)
    mtls: float = 0.0
    security_known: float = 0.0
    protocol: str = "http"
    buckets: dict[float, float] = field(default_factory=dict)
    #: Recorded response times: quantile -> ms.
    quantiles: dict[float, float] = field(default_factory=dict)
    tcp: float = 0.0

    def response_time(self, q: float) -> float | None:
        if self.quantiles:
            return self.quantiles.get(q)
        return histogram_quantile(q, self.buckets)


@dataclass
class Edge:
    source: str
    target: str
    by_reporter: dict[str, _Side] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.source}->{self.target}"

    def side(self, reporter: str) -> _Side:
        return self.by_reporter.setdefault(reporter, _Side())

    def chosen(self) -> _Side:
        """The client's figures when it reports requests, else the server's."""
        src = self.by_reporter.get("source")
        if src is not None and (src.rate > 0 or src.tcp > 0):
            return src
        return self.by_reporter.get("destination") or src or _Side()


def _is_error_5xx(code: str) -> bool:
    return code.startswith("5") or code in ("0", "-", "", UNKNOWN)


def _health_of(pct5xx: float, pct4xx: float, rate: float) -> Health:
    if rate <= 0:
        return "idle"
    if pct5xx >= TOLERANCE_5XX[1] or pct4xx >= TOLERANCE_4XX[1]:
        return "failure"
    if pct5xx > TOLERANCE_5XX[0] or pct4xx >= TOLERANCE_4XX[0]:
        return "degraded"
    return "healthy"


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative bucket rates (``le`` -> rate)."""
    if not buckets:
        return None
    ordered = sorted(buckets.items())
    if ordered[-1][0] != math.inf:
        return None
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if le == math.inf:
                return prev_le  # Prometheus answers the highest finite bound
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return ordered[-2][0] if len(ordered) > 1 else None


def edge_json(edge: Edge) -> dict[str, Any]:
    side = edge.chosen()
    rate = side.rate
    err5 = sum(r for c, r in side.codes.items() if _is_error_5xx(c))
    err4 = sum(r for c, r in side.codes.items() if c.startswith("4"))
    pct5 = 100.0 * err5 / rate if rate else 0.0
    pct4 = 100.0 * err4 / rate if rate else 0.0
    dest = edge.by_reporter.get("destination")
    mtls: float | None = None
    if dest is not None and dest.security_known > 0:
        mtls = 100.0 * dest.mtls / dest.security_known
    is_tcp = rate <= 0 and side.tcp > 0
    out: dict[str, Any] = {
        "id": edge.id,
        "source": edge.source,
        "target": edge.target,
        "protocol": "tcp" if is_tcp else side.protocol,
        "reporter": next((r for r, s in edge.by_reporter.items() if s is side), "destination"),
        "rate": round(rate, 4),
        "errorPct": round(pct5 + pct4, 2),
        "pct5xx": round(pct5, 2),
        "pct4xx": round(pct4, 2),
        "responses": {c: round(r, 4) for c, r in sorted(side.codes.items())},
        "flags": {f: round(r, 4) for f, r in sorted(side.flags.items()) if f not in ("-", "")},
        "mtlsPct": None if mtls is None else round(mtls, 1),
        "bytesPerSec": round(side.tcp, 2),
        "health": "healthy" if is_tcp else _health_of(pct5, pct4, rate),
    }
    for q in QUANTILES:
        value = side.response_time(q)
        out[f"p{round(q * 100)}"] = None if value is None else round(value, 2)
    return out


# ---------------------------------------------------------------------------- the graph


def _value(sample: Sample) -> float:
    try:
        return float(sample["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0.0


def _float_label(metric: Mapping[str, str], name: str) -> float | None:
    try:
        value = float(metric.get(name, "nan"))
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _in_scope(node: Node, namespaces: frozenset[str] | None) -> bool:
    return namespaces is None or node.namespace in namespaces


def build_graph(
    requests: Iterable[Sample],
    durations: Iterable[Sample],
    tcp: Iterable[Sample],
    *,
    quantiles: Iterable[Sample] = (),
    graph_type: str = "workload",
    namespaces: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Nodes and edges from the answers to :func:`graph_queries`: ``durations`` (bucket rates)
    or ``quantiles`` (recorded response times) give the edges' response times; an edge's
    recorded ones win. An edge is kept when either end is in ``namespaces`` (all edges when
    ``None``)."""
    if graph_type not in GRAPH_TYPES:
        raise ValueError(f"graphType: must be one of {', '.join(GRAPH_TYPES)}, not {graph_type!r}")
    scope = frozenset(namespaces) if namespaces else None
    nodes: dict[str, Node] = {}
    edges: dict[tuple[str, str], Edge] = {}
    # Many samples share an edge (response codes, buckets): work out its nodes once.
    ends: dict[tuple[str | None, ...], tuple[str, str] | None] = {}

    def edge_for(metric: Mapping[str, str], *, create: bool = True) -> Edge | None:
        label_key = _edge_key(metric)
        if label_key in ends:
            key = ends[label_key]
            if key is None:
                return None
            edge = edges.get(key)
            if edge is None and create:
                edge = edges[key] = Edge(*key)
            return edge
        src, dst = source_node(metric, graph_type), destination_node(metric, graph_type)
        if not (_in_scope(src, scope) or _in_scope(dst, scope)):
            ends[label_key] = None
            return None
        if not create and (src.id, dst.id) not in edges:
            return None  # response times of an edge without requests: nothing to show
        ends[label_key] = (src.id, dst.id)
        for n in (src, dst):
            known = nodes.get(n.id)
            if known is None:
                nodes[n.id] = n
            else:
                known.workloads |= n.workloads
                known.is_root = known.is_root and n.is_root
        key = (src.id, dst.id)
        edge = edges.get(key)
        if edge is None:
            edge = edges[key] = Edge(src.id, dst.id)
        return edge

    for s in requests:
        metric = s.get("metric") or {}
        edge = edge_for(metric)
        if edge is None:
            continue
        side = edge.side(metric.get("reporter", "destination"))
        rate = _value(s)
        side.rate += rate
        code = metric.get("response_code", "") or UNKNOWN
        side.codes[code] = side.codes.get(code, 0.0) + rate
        flags = metric.get("response_flags", "-") or "-"
        side.flags[flags] = side.flags.get(flags, 0.0) + rate
        if metric.get("request_protocol") == "grpc":
            side.protocol = "grpc"
        policy = metric.get("connection_security_policy", "")
        if policy in ("mutual_tls", "none"):
            side.security_known += rate
            if policy == "mutual_tls":
                side.mtls += rate
    for s in durations:
        metric = s.get("metric") or {}
        le = _float_label(metric, "le")
        edge = None if le is None else edge_for(metric, create=False)
        if edge is None or le is None:
            continue
        side = edge.side(metric.get("reporter", "destination"))
        side.buckets[le] = side.buckets.get(le, 0.0) + _value(s)
    for s in quantiles:
        metric = s.get("metric") or {}
        q = _float_label(metric, "quantile")
        edge = None if q is None else edge_for(metric, create=False)
        if edge is None or q is None:
            continue
        value = _value(s)
        if math.isfinite(value):
            edge.side(metric.get("reporter", "destination")).quantiles[q] = value
    for s in tcp:
        metric = s.get("metric") or {}
        edge = edge_for(metric)
        if edge is None:
            continue
        edge.side(metric.get("reporter", "destination")).tcp += _value(s)

    out_edges = [edge_json(e) for e in edges.values()]
    out_edges.sort(key=lambda e: e["id"])
    # A node is a root when nothing calls it.
    targets = {e["target"] for e in out_edges}
    for node in nodes.values():
        node.is_root = node.is_root or node.id not in targets
    _node_health(nodes, out_edges)
    return {
        "graphType": graph_type,
        "nodes": [nodes[k].to_json() for k in sorted(nodes)],
        "edges": out_edges,
    }


def _node_health(nodes: Mapping[str, Node], edges: Sequence[Mapping[str, Any]]) -> None:
    inbound: dict[str, list[Mapping[str, Any]]] = {}
    outbound: dict[str, list[Mapping[str, Any]]] = {}
    for e in edges:
        inbound.setdefault(e["target"], []).append(e)
        outbound.setdefault(e["source"], []).append(e)
    for node in nodes.values():
        node.rate_in = sum(e["rate"] for e in inbound.get(node.id, []))
        node.rate_out = sum(e["rate"] for e in outbound.get(node.id, []))
        judged = inbound.get(node.id) or (outbound.get(node.id) if node.is_root else None) or []
        rate = sum(e["rate"] for e in judged)
        err5 = sum(e["rate"] * e["pct5xx"] / 100 for e in judged)
        err4 = sum(e["rate"] * e["pct4xx"] / 100 for e in judged)
        pct5 = 100 * err5 / rate if rate else 0.0
        pct4 = 100 * err4 / rate if rate else 0.0
        node.error_pct = pct5 + pct4
        health = _health_of(pct5, pct4, rate)
        if rate <= 0 and any(e["bytesPerSec"] > 0 for e in judged):
            health = "healthy"
        node.health = health


def worst(healths: Iterable[str]) -> str:
    return max(healths, key=lambda h: _RANK.get(h, 0), default="idle")
