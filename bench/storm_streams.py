"""A fresh connection storm's stream work in process: each simulated sidecar's first requests
and ACKs, then the endpoint pushes to the proxies connected before, through
``ProxyConnection`` (no gRPC).

Run from the repository root::

    .venv/bin/python bench/storm_streams.py                     # 1,000 proxies x 1,000 services
    .venv/bin/python bench/storm_streams.py --proxies 200 --services 200

The control plane's ``Mesh`` (memory store, the Services and DestinationRules of
``bench/push_scale.py``) generates each sidecar's first configuration; a Delta
``ProxyConnection`` is answered the requests Envoy makes at start (CDS, EDS of every cluster,
LDS, RDS, VHDS when the route configurations use it), and every response is serialized and
ACKed as Envoy would. Every ``--every`` connections an endpoint push is planned and delivered
to each connected proxy the plan reaches (proxies connecting between two pushes share one push
context, as in a storm). Figures: CPU seconds (``time.process_time``) of the first requests and
ACKs, and of the endpoint pushes (``begin_push``, serialization, ACKs); generation is left out
(``bench/storm_pushes.py`` measures it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import in_process_mesh, simulated_node
from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.xds import PushRequest
from pilotfish.xds.connection import ProxyConnection, Response
from pilotfish.xds.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    VIRTUAL_HOST_TYPE,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", type=int, default=1000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--every", type=int, default=130, help="connections between pushes")
    args = parser.parse_args(argv)
    mesh = in_process_mesh(args.services, "pilotfish-bench-streams-")
    mesh.endpoint_staleness = 3600.0  # a context per batch: rebuilt below at each push
    server = mesh.xds
    first_s = push_s = 0.0
    sent_bytes = pushed = 0

    def ack_all(conn: ProxyConnection, responses: list[Response]) -> None:
        nonlocal sent_bytes
        queue = list(responses)
        while queue:
            response = queue.pop(0)
            sent_bytes += len(response.SerializeToString())
            ack = discovery_pb2.DeltaDiscoveryRequest(
                type_url=response.type_url, response_nonce=response.nonce
            )
            queue += conn.handle_request(ack)

    def ask(conn: ProxyConnection, type_url: str, names: list[str] | None = None) -> None:
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url, resource_names_subscribe=names or []
        )
        ack_all(conn, conn.handle_request(request))

    connected: list[ProxyConnection] = []
    mesh.prepare()
    mesh.plan(PushRequest.of("endpoint", full=False), [])
    for k in range(args.proxies):
        node = simulated_node(k, args.services)
        snapshot = server._build(node)
        t = time.process_time()
        conn = ProxyConnection(str(k), node, delta=True)
        conn.set_target(snapshot)
        ask(conn, CLUSTER_TYPE)
        ask(conn, ENDPOINT_TYPE, sorted(set(snapshot.eds_of_cluster.values())))
        ask(conn, LISTENER_TYPE)
        ask(conn, ROUTE_TYPE, sorted(snapshot.get(ROUTE_TYPE)))
        if snapshot.get(VIRTUAL_HOST_TYPE):
            ask(conn, VIRTUAL_HOST_TYPE)
        first_s += time.process_time() - t
        connected.append(conn)
        mesh._connected(node)
        mesh.source.invalidate(endpoints_only=True)
        if (k + 1) % args.every and k != args.proxies - 1:
            continue
        mesh.prepare()
        request = PushRequest.of("endpoint", full=False)
        plans = mesh.plan(request, [c.node for c in connected])
        server._shared.clear()
        for c in connected:
            scope = plans.get(c.node_id)
            if scope is None:
                continue
            snapshot = server._build(c.node, c.target, scope)
            t = time.process_time()
            responses = c.begin_push(snapshot, request.scoped(scope))
            pushed += sum(len(getattr(r, "entries", ())) for r in responses)
            ack_all(c, responses)
            push_s += time.process_time() - t
    print(
        f"{args.proxies} proxies x {args.services} services, a push every {args.every} "
        f"connections: first requests and ACKs {first_s:.2f} s CPU; endpoint pushes "
        f"{push_s:.2f} s CPU ({pushed} resources); {sent_bytes / 1e6:.0f} MB serialized"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
