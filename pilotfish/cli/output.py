"""How the CLI prints resources: kubectl-like tables, or JSON/YAML documents.

Tables are plain columns separated by three spaces, headers in capitals, as kubectl prints
them, so `awk`/`grep` scripts written for kubectl work. Each kind has its own columns
(Istio's where istioctl/kubectl show them: VirtualService GATEWAYS/HOSTS, DestinationRule
HOST, PeerAuthentication MODE, ...); ``-o wide`` adds a few.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

Column = tuple[str, Callable[[dict[str, Any]], str]]


def _spec(o: dict[str, Any]) -> dict[str, Any]:
    return o.get("spec") or {}


def _meta(o: dict[str, Any]) -> dict[str, Any]:
    return o.get("metadata") or {}


def _join(values: Any) -> str:
    if not values:
        return ""
    return (
        json.dumps(list(values), separators=(",", ":")) if len(values) > 1 else f'["{values[0]}"]'
    )


def age(o: dict[str, Any], now: datetime | None = None) -> str:
    ts = _meta(o).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    try:
        created = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    secs = int(((now or datetime.now(UTC)) - created).total_seconds())
    return human_duration(max(secs, 0))


def human_duration(secs: int) -> str:
    if secs < 120:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m"
    if secs < 48 * 3600:
        h, m = divmod(secs // 60, 60)
        return f"{h}h{m}m" if h < 10 and m else f"{h}h"
    return f"{secs // 86400}d"


def _ports(o: dict[str, Any]) -> str:
    out = []
    for p in _spec(o).get("ports") or []:
        out.append(f"{p.get('port')}/{p.get('protocol') or 'TCP'}")
    return ",".join(out) or "<none>"


def _pod_ready(o: dict[str, Any]) -> str:
    st = o.get("status") or {}
    cs = st.get("containerStatuses") or []
    total = len(cs) or len(_spec(o).get("containers") or [])
    ready = sum(1 for c in cs if c.get("ready"))
    return f"{ready}/{total}"


def pod_display_status(pod: dict[str, Any]) -> str:
    """The STATUS column of ``get pods``, as kubectl computes it: the reason of the first
    waiting (or failed) container, else the pod's reason, else its phase. Pure."""
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    for c in status.get("containerStatuses") or []:
        state = c.get("state") or {}
        for key in ("waiting", "terminated"):
            reason = (state.get(key) or {}).get("reason")
            if reason and reason not in ("PodInitializing", "Completed"):
                return str(reason)
    reason = status.get("reason")
    if reason and reason != "ContainersNotReady":
        return str(reason)
    return phase


def _involved(o: dict[str, Any]) -> str:
    obj = o.get("involvedObject") or {}
    return f"{str(obj.get('kind') or '').lower()}/{obj.get('name') or ''}"


def event_lines(events: list[dict[str, Any]]) -> list[str]:
    """The ``Events:`` section of ``describe``, as kubectl prints it. Pure."""
    if not events:
        return ["Events:       <none>"]
    rows = [["Type", "Reason", "Count", "Last Seen", "Message"]]
    for e in sorted(events, key=lambda e: str(e.get("lastTimestamp") or "")):
        rows.append(
            [
                str(e.get("type") or "Normal"),
                str(e.get("reason") or ""),
                str(e.get("count") or 1),
                str(e.get("lastTimestamp") or ""),
                str(e.get("message") or ""),
            ]
        )
    return ["Events:", *("  " + line for line in table(rows).splitlines())]


def _deploy_ready(o: dict[str, Any]) -> str:
    st = o.get("status") or {}
    return f"{st.get('readyReplicas') or 0}/{_spec(o).get('replicas', 1)}"


def _labels(o: dict[str, Any]) -> str:
    labels = _meta(o).get("labels") or {}
    return ",".join(f"{k}={v}" for k, v in labels.items()) or "<none>"


def _status(o: dict[str, Any], field: str, default: str = "") -> str:
    value = (o.get("status") or {}).get(field)
    return default if value is None else str(value)


def _check(c: dict[str, Any]) -> str:
    if "value" in c:
        verdict = "ok" if c.get("ok") else "FAILED"
        return f"{c.get('name')}={c['value']:g} ({c.get('range')}) {verdict}"
    return f"{c.get('name')}: {c.get('error')}"


def canary_steps(o: dict[str, Any]) -> list[str]:
    """The ``Analysis:`` section of ``describe canary``: each interval of the current (or
    last) analysis with its weight and every check's measured value. Pure."""
    steps = (o.get("status") or {}).get("steps") or []
    if not steps:
        return ["Analysis:     <none>"]
    rows = [["Time", "Weight", "Iteration", "Outcome", "Checks"]]
    for st in steps:
        rows.append(
            [
                str(st.get("time") or ""),
                str(st.get("weight", "")),
                str(st.get("iteration") or ""),
                str(st.get("outcome") or ""),
                "; ".join(_check(c) for c in st.get("checks") or []) or "-",
            ]
        )
    return ["Analysis:", *("  " + line for line in table(rows).splitlines())]


COLUMNS: dict[str, list[Column]] = {
    "Canary": [
        ("STATUS", lambda o: _status(o, "phase", "Initializing")),
        ("WEIGHT", lambda o: _status(o, "canaryWeight", "0")),
        ("FAILEDCHECKS", lambda o: _status(o, "failedChecks", "0")),
        ("LASTTRANSITIONTIME", lambda o: _status(o, "lastTransitionTime")),
    ],
    "MetricTemplate": [
        ("PROVIDER", lambda o: str((_spec(o).get("provider") or {}).get("type") or "prometheus"))
    ],
    "VirtualService": [
        ("GATEWAYS", lambda o: _join(_spec(o).get("gateways"))),
        ("HOSTS", lambda o: _join(_spec(o).get("hosts"))),
    ],
    "DestinationRule": [("HOST", lambda o: str(_spec(o).get("host") or ""))],
    "ServiceEntry": [
        ("HOSTS", lambda o: _join(_spec(o).get("hosts"))),
        ("LOCATION", lambda o: str(_spec(o).get("location") or "")),
        ("RESOLUTION", lambda o: str(_spec(o).get("resolution") or "")),
    ],
    "WorkloadEntry": [("ADDRESS", lambda o: str(_spec(o).get("address") or ""))],
    "WorkloadGroup": [
        (
            "SERVICE-ACCOUNT",
            lambda o: str((_spec(o).get("template") or {}).get("serviceAccount") or ""),
        )
    ],
    "PeerAuthentication": [("MODE", lambda o: str((_spec(o).get("mtls") or {}).get("mode") or ""))],
    "AuthorizationPolicy": [("ACTION", lambda o: str(_spec(o).get("action") or "ALLOW"))],
    "Namespace": [("STATUS", lambda o: "Active")],
    "Service": [
        ("TYPE", lambda o: str(_spec(o).get("type") or "ClusterIP")),
        ("CLUSTER-IP", lambda o: str(_spec(o).get("clusterIP") or "<pending>")),
        ("PORT(S)", _ports),
    ],
    "Secret": [
        ("TYPE", lambda o: str(o.get("type") or "Opaque")),
        ("DATA", lambda o: str(len(o.get("data") or {}) + len(o.get("stringData") or {}))),
    ],
    "Deployment": [
        ("READY", _deploy_ready),
        ("UP-TO-DATE", lambda o: str((o.get("status") or {}).get("updatedReplicas") or 0)),
        ("AVAILABLE", lambda o: str((o.get("status") or {}).get("availableReplicas") or 0)),
    ],
    "Event": [
        ("TYPE", lambda o: str(o.get("type") or "Normal")),
        ("REASON", lambda o: str(o.get("reason") or "")),
        ("OBJECT", _involved),
        ("COUNT", lambda o: str(o.get("count") or 1)),
        ("MESSAGE", lambda o: str(o.get("message") or "")),
    ],
    "Pod": [
        ("READY", _pod_ready),
        ("STATUS", pod_display_status),
        (
            "RESTARTS",
            lambda o: str(
                sum(
                    int(c.get("restartCount") or 0)
                    for c in (o.get("status") or {}).get("containerStatuses") or []
                )
            ),
        ),
    ],
}

WIDE_COLUMNS: dict[str, list[Column]] = {
    "Pod": [
        ("IP", lambda o: str((o.get("status") or {}).get("podIP") or "<none>")),
        ("NODE", lambda o: str(_spec(o).get("nodeName") or "local")),
        ("LABELS", _labels),
    ],
    "Deployment": [
        (
            "CONTAINERS",
            lambda o: ",".join(
                c.get("name", "")
                for c in ((_spec(o).get("template") or {}).get("spec") or {}).get("containers")
                or []
            ),
        ),
        (
            "SELECTOR",
            lambda o: ",".join(
                f"{k}={v}"
                for k, v in ((_spec(o).get("selector") or {}).get("matchLabels") or {}).items()
            ),
        ),
    ],
    "Service": [
        (
            "SELECTOR",
            lambda o: (
                ",".join(f"{k}={v}" for k, v in (_spec(o).get("selector") or {}).items())
                or "<none>"
            ),
        )
    ],
}


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by three spaces, like kubectl."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def resource_table(kind: str, items: list[dict[str, Any]], all_namespaces: bool, wide: bool) -> str:
    cols: list[Column] = list(COLUMNS.get(kind, []))
    if wide:
        cols += WIDE_COLUMNS.get(kind, [])
    header = (["NAMESPACE"] if all_namespaces else []) + ["NAME"] + [c[0] for c in cols] + ["AGE"]
    rows: list[list[str]] = [header]
    for o in items:
        row = [str(_meta(o).get("namespace") or "")] if all_namespaces else []
        row.append(str(_meta(o).get("name")))
        row += [fn(o) for _, fn in cols]
        row.append(age(o))
        rows.append(row)
    return table(rows)


def dump(obj: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(obj, indent=2)
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).rstrip("\n")


def as_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A Kubernetes ``List`` of items, as ``kubectl get -o json`` prints for listings."""
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}
