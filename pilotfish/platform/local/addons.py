"""Istio's addon names inside the local mesh: ``prometheus.istio-system:9090`` and
``tracing.istio-system`` (port 80, Jaeger's query API), as Istio's tutorials and tools use them.

On the host, Prometheus and the trace query API listen on loopback only (as Istio's addons sit
behind a port-forward). Pods cannot reach the host's loopback, so the mesh runs one more Envoy
in the host network namespace, ``addons``, that listens on the pod bridge's address (which
only this host and its pods reach) and forwards each addon port to its loopback listener
(``tcp_proxy``: no Python on the path). Services ``istio-system/prometheus`` and
``istio-system/tracing`` (labelled as managed by Pilotfish, like ``zipkin``) give the names;
they select a WorkloadEntry at the bridge address.

Pure: the bootstrap and the Services; :mod:`.runtime_mesh` starts the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pilotfish.config.addons import MANAGED_BY

__all__ = ["PROMETHEUS_PORT", "TRACING_QUERY_PORT", "Forward", "addon_services", "addons_bootstrap"]

#: Istio's addon ports: Prometheus, and the tracing service's query port 80 -> Jaeger's 16686.
PROMETHEUS_PORT = 9090
TRACING_QUERY_PORT = 16686
TRACING_SERVICE_PORT = 80

TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


@dataclass(frozen=True)
class Forward:
    """``listen`` on the bridge address forwards to ``127.0.0.1:target`` (``name``'s)."""

    name: str
    listen: int
    target: int


def addons_bootstrap(address: str, forwards: Sequence[Forward]) -> dict[str, Any]:
    """The forwarding Envoy's bootstrap: one TCP listener per forward on ``address``. Pure."""
    listeners = []
    clusters = []
    for f in forwards:
        listeners.append(
            {
                "name": f"{f.name}_{f.listen}",
                "address": {"socket_address": {"address": address, "port_value": f.listen}},
                "filter_chains": [
                    {
                        "filters": [
                            {
                                "name": "envoy.filters.network.tcp_proxy",
                                "typed_config": {
                                    "@type": TCP_PROXY,
                                    "stat_prefix": f.name,
                                    "cluster": f.name,
                                },
                            }
                        ]
                    }
                ],
            }
        )
        clusters.append(
            {
                "name": f.name,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": f.name,
                    "endpoints": [
                        {
                            "lb_endpoints": [
                                {
                                    "endpoint": {
                                        "address": {
                                            "socket_address": {
                                                "address": "127.0.0.1",
                                                "port_value": f.target,
                                            }
                                        }
                                    }
                                }
                            ]
                        }
                    ],
                },
            }
        )
    return {
        "node": {"id": "addons", "cluster": "pilotfish-addons"},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


#: The WorkloadEntry that stands for the forwarder (the addon Services select it).
ADDONS_WORKLOAD = "pilotfish-addons"


def _service(name: str, port: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "istio-system", "labels": dict(MANAGED_BY)},
        "spec": {"selector": {"app": ADDONS_WORKLOAD}, "ports": [port]},
    }


def addon_services(address: str, prometheus: bool) -> list[dict[str, Any]]:
    """Services ``tracing`` (80 -> the query API's 16686) and, when it runs, ``prometheus``
    (9090) in ``istio-system``, selecting a WorkloadEntry at ``address`` (the forwarder).

    Services rather than ServiceEntries, as in an Istio cluster: they get a cluster IP that
    the runtime writes into every pod's hosts file, so apps resolve the names. Pure."""
    workload = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {
            "name": ADDONS_WORKLOAD, "namespace": "istio-system", "labels": dict(MANAGED_BY),
        },
        "spec": {"address": address, "labels": {"app": ADDONS_WORKLOAD}},
    }  # fmt: skip
    out = [
        workload,
        _service(
            "tracing",
            {"name": "http-query", "port": TRACING_SERVICE_PORT, "targetPort": TRACING_QUERY_PORT},
        ),
    ]
    if prometheus:
        out.append(
            _service(
                "prometheus",
                {"name": "http", "port": PROMETHEUS_PORT, "targetPort": PROMETHEUS_PORT},
            )
        )
    return out
