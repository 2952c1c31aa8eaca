"""A view's outbound clusters in each new push context of a connection storm, in process.

Run from the repository root::

    .venv/bin/python bench/context_clusters.py                  # 1,000 services, 200 contexts
    PYTHONPATH=/tmp/before .venv/bin/python bench/context_clusters.py   # another checkout

A connection storm makes a push context per debounce (every proxy that connects is an
endpoint of a Service), and each view's outbound clusters are assembled again in each, taking
over from the previous context what did not change. No gRPC and no proxies: the control
plane's ``Mesh`` (memory store, the Services and DestinationRules of ``bench/push_scale.py``);
one simulated sidecar connects before each new context. Figure: CPU time
(``time.process_time``) of ``outbound_clusters`` for one namespace per new context.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import in_process_mesh, simulated_node

from pilotfish.translate.clusters import outbound_clusters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--contexts", type=int, default=200)
    args = parser.parse_args(argv)
    mesh = in_process_mesh(args.services, "pilotfish-bench-clusters-")
    nodes = [simulated_node(i, args.services) for i in range(args.contexts)]
    namespace = nodes[0].namespace
    outbound_clusters(mesh.source.current(), namespace)
    spent = 0.0
    clusters = 0
    for node in nodes:
        mesh._connected(node)
        mesh.source.invalidate(endpoints_only=True)
        push = mesh.source.current()
        t = time.process_time()
        clusters = len(outbound_clusters(push, namespace).clusters)
        spent += time.process_time() - t
    print(
        f"{args.services} services ({clusters} clusters), {args.contexts} contexts: "
        f"outbound clusters {spent / args.contexts * 1000:.1f} ms CPU per new context"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
