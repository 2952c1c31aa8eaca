"""Translation time per proxy: a sidecar's clusters, endpoints, listeners and routes, in process.

Run from the repository root::

    .venv/bin/python bench/translation.py                      # 500 services, 11 repetitions
    .venv/bin/python bench/translation.py --json after.json    # also save the figures
    .venv/bin/python bench/translation.py --baseline before.json   # print both and the ratio
    .venv/bin/python bench/translation.py --quick              # 20 services, 2 repetitions

No server, Envoy or network: the stored objects of ``--services`` Services (one HTTP port,
one pod each) with a DestinationRule each (connection pool, outlier detection, load balancer,
subsets v1 and v2, v2 with a consistent hash) and a VirtualService each (a header match to
v2 with a timeout and retries, then a 90/10 split with a timeout) go through
``PushContext.build`` and ``generate`` as the xDS server calls them. Figures are CPU time of
the benchmark's process, each the median of ``--repeat`` runs:

- ``context build``: a PushContext from every stored object (every object parsed);
- ``context rebuild``: the same after one VirtualService changed (the others reused);
- ``first proxy``: ``generate`` for one sidecar on a fresh context (nothing memoized yet):
  the whole translation of what a proxy gets;
- ``next proxy``: ``generate`` for another sidecar of the same namespace on that context
  (what proxies share comes from the context's memo).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from pilotfish.api.node import NodeInfo
from pilotfish.config.store.base import StoredObject, key_of
from pilotfish.model.push_context import PushContext
from pilotfish.registry.registry import Registry
from pilotfish.translate import generate

NAMESPACE = "default"
MESH_LABELS = {"security.istio.io/tlsMode": "istio"}


def _body(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    api = "v1" if kind in ("Service", "Pod") else "networking.istio.io/v1"
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": NAMESPACE, **meta},
        "spec": spec,
    }


def virtual_service(name: str, v1_weight: int = 90) -> dict[str, Any]:
    return _body(
        "VirtualService",
        name,
        {
            "hosts": [name],
            "http": [
                {
                    "name": "canary-users",
                    "match": [
                        {"headers": {"end-user": {"exact": "jason"}}, "uri": {"prefix": "/"}}
                    ],
                    "route": [{"destination": {"host": name, "subset": "v2"}}],
                    "timeout": "5s",
                    "retries": {"attempts": 3, "perTryTimeout": "1.5s", "retryOn": "5xx,503"},
                },
                {
                    "route": [
                        {"destination": {"host": name, "subset": "v1"}, "weight": v1_weight},
                        {"destination": {"host": name, "subset": "v2"}, "weight": 100 - v1_weight},
                    ],
                    "timeout": "10s",
                },
            ],
        },
    )


def objects(services: int) -> list[dict[str, Any]]:
    """Services, their pods, DestinationRules and VirtualServices."""
    docs: list[dict[str, Any]] = []
    for i in range(services):
        name = f"svc-{i}"
        docs.append(
            _body(
                "Service",
                name,
                {"selector": {"app": name}, "ports": [{"name": "http", "port": 9080}]},
            )
        )
        labels = {"app": name, "version": "v1" if i % 2 else "v2", **MESH_LABELS}
        pod = _body("Pod", f"{name}-a", {"serviceAccountName": name}, labels=labels)
        pod["status"] = {"podIP": f"10.{i // 250}.{i % 250}.10", "phase": "Running"}
        docs.append(pod)
        docs.append(
            _body(
                "DestinationRule",
                name,
                {
                    "host": name,
                    "trafficPolicy": {
                        "loadBalancer": {"simple": "LEAST_REQUEST"},
                        "connectionPool": {
                            "tcp": {"maxConnections": 100, "connectTimeout": "2s"},
                            "http": {"http1MaxPendingRequests": 50, "idleTimeout": "30s"},
                        },
                        "outlierDetection": {
                            "consecutive5xxErrors": 5,
                            "interval": "10s",
                            "baseEjectionTime": "30s",
                        },
                    },
                    "subsets": [
                        {"name": "v1", "labels": {"version": "v1"}},
                        {
                            "name": "v2",
                            "labels": {"version": "v2"},
                            "trafficPolicy": {
                                "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}
                            },
                        },
                    ],
                },
            )
        )
        docs.append(virtual_service(name))
    return docs


def store(docs: list[dict[str, Any]], first_revision: int = 1) -> list[StoredObject]:
    return [StoredObject(key_of(d), d, first_revision + i) for i, d in enumerate(docs)]


def sidecar(i: int) -> NodeInfo:
    return NodeInfo(
        proxy_type="sidecar",
        ip=f"10.{i // 250}.{i % 250}.10",
        pod_name=f"svc-{i}-a",
        namespace=NAMESPACE,
        labels={"app": f"svc-{i}", "version": "v1", **MESH_LABELS},
        service_account=f"svc-{i}",
    )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """CPU seconds of ``fn()`` in this process (steadier than wall time on a shared machine)."""
    gc.collect()
    t0 = time.process_time()
    value = fn()
    return time.process_time() - t0, value


def measure(services: int, repeat: int) -> dict[str, float]:
    """Median milliseconds of each figure (see the module docstring)."""
    docs = objects(services)
    objs = store(docs)
    registry = Registry().snapshot(objs)
    changed = list(objs)
    vs_index = next(i for i, o in enumerate(objs) if o.kind == "VirtualService")
    top = max(o.revision for o in objs)
    changed[vs_index] = StoredObject(objs[vs_index].key, virtual_service("svc-0", 50), top + 1)
    samples: dict[str, list[float]] = {k: [] for k in ("build", "rebuild", "first", "next")}
    counts: dict[str, int] = {}
    for _ in range(repeat):
        t, push = timed(partial(PushContext.build, objs, registry))
        samples["build"].append(t)
        t, res = timed(partial(generate, sidecar(1), push))
        samples["first"].append(t)
        t, _ = timed(partial(generate, sidecar(3), push))
        samples["next"].append(t)
        t, _ = timed(partial(PushContext.build, changed, registry, previous=push))
        samples["rebuild"].append(t)
        counts = {url.rsplit(".", 1)[-1]: len(v) for url, v in res.items()}
    out = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    out["services"] = services
    out.update({f"resources_{k}": n for k, n in counts.items()})
    return out


LABELS = {
    "build": "context build, every object parsed (ms)",
    "rebuild": "context rebuild after one change (ms)",
    "first": "translation, first proxy on a fresh context (ms)",
    "next": "translation, next proxy of the namespace (ms)",
}


def report(after: dict[str, float], before: dict[str, float] | None) -> str:
    rows = []
    for key, label in LABELS.items():
        if before is None:
            rows.append(f"| {label} | {after[key]:.1f} |")
        else:
            r = after[key] / before[key] if before[key] else float("nan")
            rows.append(f"| {label} | {before[key]:.1f} | {after[key]:.1f} | {r:.2f}x |")
    head = (
        "| figure | ms |\n| --- | --- |"
        if before is None
        else ("| figure | before | after | after / before |\n| --- | --- | --- | --- |")
    )
    resources = ", ".join(
        f"{int(v)} {k[len('resources_') :]}" for k, v in after.items() if k.startswith("resources_")
    )
    return f"{int(after['services'])} services; a sidecar gets {resources}\n\n{head}\n" + "\n".join(
        rows
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--services", type=int, default=500)
    p.add_argument("--repeat", type=int, default=11)
    p.add_argument("--quick", action="store_true", help="20 services, 2 repetitions")
    p.add_argument("--json", type=Path, help="save the figures here")
    p.add_argument("--baseline", type=Path, help="figures saved by an earlier --json run")
    args = p.parse_args(argv)
    if args.quick:
        args.services, args.repeat = 20, 2
    figures = measure(args.services, args.repeat)
    before = json.loads(args.baseline.read_text()) if args.baseline else None
    print(report(figures, before))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
