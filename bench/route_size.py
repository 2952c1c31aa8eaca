"""Bytes of a sidecar's outbound route configuration, per virtual host and per part.

Run from the repository root::

    .venv/bin/python bench/route_size.py                 # 1,000 services
    .venv/bin/python bench/route_size.py --services 200

No server, Envoy or network: the mesh of ``bench/translation.py`` (one HTTP port per
Service) goes through ``PushContext.build`` and ``generate``, once with a VirtualService per
Service (a header match with retries, then a weighted split: two routes per virtual host) and
once without (Istio's ``default`` route only). For the route configuration a sidecar
receives on the port, it prints the serialized bytes per virtual host and what each part of
a virtual host costs: its domains, the headers it adds (the peer header), the retry policies
of its routes and everything else. What a change pushes to each sidecar is this route
configuration whole (RDS sends a route configuration as one resource).

"before" is the same route configuration with the peer header written as it was until
2026-12-06, one ``%ENVIRONMENT(...)%`` formatter per field, "after" as generated now (one
variable holding the packed value).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from pilotfish.api.peer import FIELD_SEPARATOR, PEER_ENV, PEER_FIELDS
from pilotfish.model.push_context import PushContext
from pilotfish.registry.registry import Registry
from pilotfish.translate import generate

ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
#: The peer header's value before it was read from one packed variable: one formatter per
#: field (the comparison's "before").
UNPACKED_PEER_VALUE = FIELD_SEPARATOR.join(f"%ENVIRONMENT({PEER_ENV[k]})%" for k in PEER_FIELDS)


def unpacked(config: route_pb2.RouteConfiguration) -> route_pb2.RouteConfiguration:
    """``config`` with the peer header written one formatter per field."""
    out = route_pb2.RouteConfiguration()
    out.CopyFrom(config)
    for vhost in out.virtual_hosts:
        for h in vhost.request_headers_to_add:
            if h.header.value.startswith("%ENVIRONMENT("):
                h.header.value = UNPACKED_PEER_VALUE
    return out


def _translation() -> Any:
    path = Path(__file__).with_name("translation.py")
    spec = importlib.util.spec_from_file_location("bench_translation", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def parts(vhost: rc.VirtualHost) -> dict[str, int]:
    """Serialized bytes of one virtual host and of its parts (each part: the bytes the
    virtual host loses without it)."""
    total = vhost.ByteSize()
    no_domains = rc.VirtualHost()
    no_domains.CopyFrom(vhost)
    no_domains.ClearField("domains")
    no_headers = rc.VirtualHost()
    no_headers.CopyFrom(vhost)
    no_headers.ClearField("request_headers_to_add")
    no_retries = rc.VirtualHost()
    no_retries.CopyFrom(vhost)
    for route in no_retries.routes:
        if route.HasField("route"):
            route.route.ClearField("retry_policy")
    out = {
        "total": total,
        "domains": total - no_domains.ByteSize(),
        "headers": total - no_headers.ByteSize(),
        "retries": total - no_retries.ByteSize(),
    }
    out["rest"] = total - out["domains"] - out["headers"] - out["retries"]
    return out


def measure(services: int, with_virtual_services: bool) -> dict[str, float]:
    tr = _translation()
    docs = [
        d for d in tr.objects(services) if with_virtual_services or d["kind"] != "VirtualService"
    ]
    objs = tr.store(docs)
    push = PushContext.build(objs, Registry().snapshot(objs))
    res = generate(tr.sidecar(1), push)
    configs: list[route_pb2.RouteConfiguration] = list(res[ROUTE_TYPE].values())
    config = max(configs, key=lambda c: len(c.virtual_hosts))
    vhosts = [v for v in config.virtual_hosts if v.name not in ("allow_any", "block_all")]
    sums = {k: 0 for k in ("total", "domains", "headers", "retries", "rest")}
    for v in vhosts:
        for k, n in parts(v).items():
            sums[k] += n
    out: dict[str, float] = {k: n / len(vhosts) for k, n in sums.items()}
    out["config_bytes"] = config.ByteSize()
    before = unpacked(config)
    out["before_bytes"] = before.ByteSize()
    out["before_per_vhost"] = sum(
        v.ByteSize() for v in before.virtual_hosts if v.name not in ("allow_any", "block_all")
    ) / len(vhosts)
    out["vhosts"] = len(vhosts)
    out["routes_per_vhost"] = sum(len(v.routes) for v in vhosts) / len(vhosts)
    return out


def report(rows: dict[str, dict[str, float]]) -> str:
    lines = [
        "| mesh | vhosts | route config (bytes) | per vhost | domains | peer header |"
        " retry policies | rest |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in rows.items():
        t = m["total"]
        lines.append(
            f"| {name} | {int(m['vhosts'])} | {int(m['config_bytes']):,} | {t:.0f} | "
            + " | ".join(
                f"{m[k]:.0f} ({m[k] / t:.0%})" for k in ("domains", "headers", "retries", "rest")
            )
            + " |"
        )
    lines += [
        "",
        "| mesh | before: bytes per vhost | after | after / before | route config before | after |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in rows.items():
        lines.append(
            f"| {name} | {m['before_per_vhost']:.0f} | {m['total']:.0f} | "
            f"{m['total'] / m['before_per_vhost']:.2f}x | {int(m['before_bytes']):,} | "
            f"{int(m['config_bytes']):,} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--services", type=int, default=1000)
    args = p.parse_args(argv)
    rows = {
        "default routes (no VirtualService)": measure(args.services, False),
        "a VirtualService per service (2 routes)": measure(args.services, True),
    }
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
