"""A series of VirtualService and DestinationRule changes, for fault tests and benchmarks.

:func:`churn` yields ``count`` objects to apply one after the other to a service that already
has a VirtualService bound to a gateway (``host``, ``gateways``) and routing to ``service``.
The series is what a user changing traffic rules under load does, each change valid on its
own (a subset is defined before a route uses it and dropped only after no route does), in a
cycle of five changes:

1. the DestinationRule gains a subset ``c<n>`` and switches its load balancer;
2. the VirtualService gains a route (``x-churn: <n>`` header match) to ``c<n>`` before its
   default route, whose weights between the subsets ``a`` and ``b`` flip;
3. the default route's weights flip again and give a share to ``c<n>``;
4. the route to ``c<n>`` and its share go;
5. the DestinationRule drops ``c<n>`` and changes its connection pool.

Every VirtualService sets the response header ``x-churn: <change number>``, so a client sees
which change answered. Subsets ``a``, ``b`` and ``c<n>`` all select ``labels``: every change
keeps every request routable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

#: The response header naming the change a response was routed by.
HEADER = "x-churn"


def destination_rule(
    name: str, namespace: str, service: str, labels: dict[str, str], extra: list[int], n: int
) -> dict[str, Any]:
    subsets = [{"name": s, "labels": dict(labels)} for s in ("a", "b")]
    subsets += [{"name": f"c{i}", "labels": dict(labels)} for i in extra]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "host": service,
            "trafficPolicy": {
                "loadBalancer": {"simple": ("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM")[n % 3]},
                "connectionPool": {"http": {"maxRequestsPerConnection": 50 + n % 7}},
            },
            "subsets": subsets,
        },
    }


def virtual_service(
    name: str,
    namespace: str,
    host: str,
    gateways: list[str],
    service: str,
    port: int,
    weights: dict[str, int],
    extra: int | None,
    n: int,
) -> dict[str, Any]:
    def dest(subset: str, weight: int) -> dict[str, Any]:
        return {
            "destination": {"host": service, "subset": subset, "port": {"number": port}},
            "weight": weight,
        }

    http: list[dict[str, Any]] = []
    if extra is not None:
        http.append(
            {
                "name": f"c{extra}",
                "match": [{"headers": {HEADER: {"exact": str(extra)}}}],
                "route": [dest(f"c{extra}", 100)],
            }
        )
    http.append(
        {
            "name": "default",
            "route": [dest(s, w) for s, w in weights.items() if w],
            "headers": {"response": {"set": {HEADER: str(n)}}},
        }
    )
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hosts": [host], "gateways": gateways, "http": http},
    }


def churn(
    count: int,
    *,
    name: str,
    namespace: str,
    host: str,
    gateways: list[str],
    service: str,
    port: int,
    labels: dict[str, str],
) -> Iterator[dict[str, Any]]:
    """``count`` changes (numbered from 1), each one object to apply."""
    for n in range(1, count + 1):
        cycle, step = divmod(n - 1, 5)
        share = (cycle * 37) % 101
        if step == 0:
            yield destination_rule(name, namespace, service, labels, [cycle], n)
        elif step == 1:
            yield virtual_service(name, namespace, host, gateways, service, port,
                                  {"a": share, "b": 100 - share}, cycle, n)  # fmt: skip
        elif step == 2:
            third = 100 - share
            yield virtual_service(name, namespace, host, gateways, service, port,
                                  {"a": third // 2, "b": third - third // 2, f"c{cycle}": share},
                                  cycle, n)  # fmt: skip
        elif step == 3:
            yield virtual_service(name, namespace, host, gateways, service, port,
                                  {"a": 100 - share, "b": share}, None, n)  # fmt: skip
        else:
            yield destination_rule(name, namespace, service, labels, [], n)


__all__ = ["HEADER", "churn", "destination_rule", "virtual_service"]
