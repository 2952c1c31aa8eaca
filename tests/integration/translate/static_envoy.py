"""Turns generated xDS resources into a static Envoy bootstrap and validates it with the real
Envoy binary (``envoy --mode validate``).

RDS route configs are inlined into the HCMs that name them and EDS clusters become STATIC
clusters carrying their ClusterLoadAssignment, so the file needs no control plane.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import json_format

from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.translate import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, Resources


def _inline_chain(chain: lc.FilterChain, routes: Resources) -> None:
    for f in chain.filters:
        if f.name != "envoy.filters.network.http_connection_manager":
            continue
        hcm = hcm_pb2.HttpConnectionManager()
        f.typed_config.Unpack(hcm)
        if hcm.HasField("rds"):
            name = hcm.rds.route_config_name
            if name not in routes[ROUTE_TYPE]:
                raise AssertionError(
                    f"route config {name!r} is named by a listener but not generated"
                )
            hcm.route_config.CopyFrom(routes[ROUTE_TYPE][name])
        f.typed_config.Pack(hcm)


def static_bootstrap(resources: Resources) -> bootstrap_pb2.Bootstrap:
    boot = bootstrap_pb2.Bootstrap()
    boot.node.id = "sidecar~127.0.0.1~validate.default~default.svc.cluster.local"
    boot.node.cluster = "validate.default"
    for listener in resources[LISTENER_TYPE].values():
        copy = boot.static_resources.listeners.add()
        copy.CopyFrom(listener)
        for chain in copy.filter_chains:
            _inline_chain(chain, resources)
        if copy.HasField("default_filter_chain"):
            _inline_chain(copy.default_filter_chain, resources)
    for cluster in resources[CLUSTER_TYPE].values():
        copy = boot.static_resources.clusters.add()
        copy.CopyFrom(cluster)
        if copy.type == cluster_pb2.Cluster.EDS:
            name = copy.eds_cluster_config.service_name or copy.name
            if name not in resources[ENDPOINT_TYPE]:
                raise AssertionError(f"EDS cluster {name!r} has no load assignment")
            copy.ClearField("eds_cluster_config")
            copy.type = cluster_pb2.Cluster.STATIC
            copy.load_assignment.CopyFrom(resources[ENDPOINT_TYPE][name])
    return boot


def validate(resources: Resources, tmp_path: Path, name: str = "config") -> None:
    """Write the static config and run ``envoy --mode validate``; AssertionError with Envoy's
    output when Envoy rejects it."""
    path = tmp_path / f"{name}.json"
    doc = json_format.MessageToDict(static_bootstrap(resources))
    path.write_text(json.dumps(doc, indent=1))
    proc = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise AssertionError(f"envoy rejected {path}:\n{proc.stdout}\n{proc.stderr}")
