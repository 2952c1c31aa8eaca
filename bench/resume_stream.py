"""A control-plane restart's resumed streams, in process: what answering a proxy that declares
the resources it holds costs the control plane, per proxy and per declared resource.

Run from the repository root::

    .venv/bin/python bench/resume_stream.py                  # 1,000 services, 200 proxies, VHDS
    .venv/bin/python bench/resume_stream.py --rds            # whole route configurations
    PYTHONPATH=/tmp/before .venv/bin/python bench/resume_stream.py   # another checkout

No gRPC and no proxies: the control plane's ``Mesh`` (memory store, the Services and
DestinationRules of ``bench/push_scale.py``, the mesh config's ``virtualHostDiscovery`` on,
or off with ``--rds``) with ``--proxies`` simulated sidecars connected; each one's
configuration is generated (``DiscoveryServer._build``, not timed), then its resumed stream
is answered as after a restart: one Delta request per type, encoded as on the wire, asking
again for what it subscribed to and declaring in ``initial_resource_versions`` every
resource of its configuration (what Envoy does when it holds exactly what the control plane
would send). Timed (``time.process_time``): decoding each request and
``ProxyConnection.handle_request``. Checked: nothing is sent again, and what the connection
records the proxy has is the snapshot's shared map (not a copy of the declared versions).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import in_process_mesh, simulated_node
from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.config.store.base import Put
from pilotfish.xds.connection import ProxyConnection
from pilotfish.xds.protocol import Have
from pilotfish.xds.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    VIRTUAL_HOST_TYPE,
    WILDCARD_TYPES,
    Snapshot,
    short_name,
)

#: The order Envoy (and ``AdsClient``) asks again on a new stream.
RESUME_ORDER = (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    VIRTUAL_HOST_TYPE,
    SECRET_TYPE,
)


def resume_requests(snapshot: Snapshot) -> list[bytes]:
    """The encoded requests of a proxy that holds exactly ``snapshot`` and resumes."""
    out = []
    for type_url in RESUME_ORDER:
        entries = snapshot.get(type_url)
        if not entries:
            continue
        names = [] if type_url in WILDCARD_TYPES else sorted(entries)
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=names,
            initial_resource_versions={n: e.hash for n, e in entries.items()},
        )
        out.append(request.SerializeToString())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--proxies", type=int, default=200)
    parser.add_argument("--rds", action="store_true", help="whole route configurations")
    args = parser.parse_args(argv)
    mesh = in_process_mesh(args.services, "pilotfish-bench-resume-")
    mesh.store.commit(
        [
            Put(
                {
                    "apiVersion": "install.istio.io/v1alpha1",
                    "kind": "IstioOperator",
                    "metadata": {"name": "vhds", "namespace": "istio-system"},
                    "spec": {"meshConfig": {"virtualHostDiscovery": not args.rds}},
                }
            )
        ]
    )
    nodes = [
        dataclasses.replace(simulated_node(i, args.services), delta_xds=True)
        for i in range(args.proxies)
    ]
    for node in nodes:
        mesh._connected(node)
    mesh.source.invalidate(endpoints_only=True)
    server = mesh.xds
    snapshots = [server._build(node) for node in nodes]
    requests = [resume_requests(s) for s in snapshots]
    declared = sum(len(s.get(t)) for s in snapshots for t in RESUME_ORDER)
    per_type = {t: 0.0 for t in RESUME_ORDER}
    resent = 0
    shared = copies = 0
    spent = 0.0
    for k, (node, snapshot, encoded) in enumerate(zip(nodes, snapshots, requests, strict=True)):
        conn = ProxyConnection(f"{k}", node, delta=True)
        conn.set_target(snapshot)
        for data in encoded:
            t = time.process_time()
            request = discovery_pb2.DeltaDiscoveryRequest.FromString(data)
            responses = conn.handle_request(request)
            took = time.process_time() - t
            spent += took
            per_type[request.type_url] += took
            resent += sum(len(getattr(r, "entries", ())) for r in responses)
        for type_url, state in conn.types.items():
            # ``_base``: a checkout from before ``Have.base`` (side-by-side runs).
            base = getattr(state.have, "base", getattr(state.have, "_base", None))
            if isinstance(state.have, Have) and base is snapshot.get(type_url):
                shared += 1
            else:
                copies += 1
    routes = "whole route configurations" if args.rds else "VHDS"
    print(
        f"{args.services} services, {routes}: {args.proxies} resumed proxies declaring "
        f"{declared / args.proxies:.0f} resources each: {spent / args.proxies * 1000:.2f} ms "
        f"CPU per proxy ({spent / declared * 1e6:.2f} us per declared resource)"
    )
    print(
        "  per type (ms per proxy): "
        + ", ".join(
            f"{short_name(t)} {v / args.proxies * 1000:.2f}" for t, v in per_type.items() if v
        )
    )
    print(
        f"  resources sent again: {resent}; types recorded as the shared map: {shared}, "
        f"as a copy: {copies}"
    )
    return 0 if resent == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
