"""The endpoint pushes of a fresh connection storm, in process: one shared update per view
against one generation and update per proxy, side by side.

Run from the repository root::

    .venv/bin/python bench/storm_pushes.py                     # 1,000 proxies x 1,000 services
    .venv/bin/python bench/storm_pushes.py --proxies 200 --services 200

No gRPC and no proxies: the control plane's ``Mesh`` (memory store, the Services and
DestinationRules of ``bench/push_scale.py``) generates each simulated sidecar's first
configuration (``DiscoveryServer._build``), registers it (it is an endpoint of one Service),
and every ``--every`` connections plans an endpoint push to the connected proxies, as a storm
does: proxies connecting between two pushes share one push context. Each push is then done
twice from the same snapshots: through the server's shared update (``DiscoveryServer.
_build``: one generation and update per view and maps before) and with each proxy's own
generation and ``update_snapshot``. Figures: CPU seconds of each (``time.process_time``),
their ratio, and whether every proxy's snapshot came out the same both ways.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import in_process_mesh, simulated_node

from pilotfish.xds import PushRequest
from pilotfish.xds.resources import Snapshot, update_snapshot


def hashes(snapshot: Snapshot) -> dict[str, dict[str, str]]:
    return {t: snapshot.hashes(t) for t in snapshot.entries}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", type=int, default=1000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--every", type=int, default=130, help="connections between pushes")
    args = parser.parse_args(argv)
    mesh = in_process_mesh(args.services, "pilotfish-bench-storm-")
    mesh.endpoint_staleness = 3600.0  # a context per batch: rebuilt below at each push
    server = mesh.xds
    nodes = [simulated_node(i, args.services) for i in range(args.proxies)]
    shared: dict[str, Snapshot] = {}
    own: dict[str, Snapshot] = {}
    connected = []
    first = shared_s = own_s = 0.0
    pushes = updates = reached = 0
    mesh.prepare()
    mesh.plan(PushRequest.of("endpoint", full=False), [])
    for k, node in enumerate(nodes):
        t = time.process_time()
        shared[node.node_id] = own[node.node_id] = server._build(node)
        first += time.process_time() - t
        mesh._connected(node)
        mesh.source.invalidate(endpoints_only=True)
        connected.append(node)
        if (k + 1) % args.every and k != len(nodes) - 1:
            continue
        mesh.prepare()
        plans = mesh.plan(PushRequest.of("endpoint", full=False), connected)
        pushes += 1
        server._shared.clear()
        t = time.process_time()
        for n in connected:
            if (scope := plans.get(n.node_id)) is not None:
                shared[n.node_id] = server._build(n, shared[n.node_id], scope)
                reached += 1
        shared_s += time.process_time() - t
        updates += len(server._shared)
        t = time.process_time()
        for n in connected:
            if (scope := plans.get(n.node_id)) is not None:
                resources = mesh.generate_scope(n, scope)
                own[n.node_id] = update_snapshot(own[n.node_id], resources, scope, server.cache)
        own_s += time.process_time() - t
    same = all(hashes(shared[n.node_id]) == hashes(own[n.node_id]) for n in connected)
    print(
        f"{args.proxies} proxies x {args.services} services, a push every {args.every} "
        f"connections: {pushes} pushes reaching {reached} proxies in all, {updates} shared "
        f"updates; first configurations {first:.1f} s CPU"
    )
    print(
        f"endpoint pushes, generation and snapshot update: shared {shared_s:.2f} s, "
        f"per proxy {own_s:.2f} s CPU ({shared_s / own_s:.2f}x); same snapshots: {same}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
