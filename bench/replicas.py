"""Losing a control-plane replica under load, timed (R3 of issue 13's table of faults).

Run from the repository root (PostgreSQL's server binaries installed; under root the cluster
runs as ``postgres``)::

    .venv/bin/python bench/replicas.py [--rounds 5] [--pause 0.02]

It starts a throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl`` in a temp directory, as the
tests do: ``tests/postgres.py``), two ``pilotfish server`` replicas on one database sharing a
CA directory, and, as ``tests/integration/replicas/test_failover.py`` does, a backend sidecar
(``reviews``, a WorkloadEntry) and a client sidecar, both with mutual TLS and both knowing
both replicas. The client sends a request through both Envoys every ``--pause`` seconds
(plus the request's own time). Each round:

- the replica the client's Envoy is connected to (from each replica's proxystatus API) is
  killed with SIGKILL;
- measured from the kill: until the client's Envoy, then both Envoys, are connected to the
  survivor and synced at its revision (the survivor's proxystatus API, polled every 10 ms;
  target <= 5 s); requests sent and failed meanwhile (target: 0 failed);
- the killed replica is started again (same data directory and ports), and after
  ``--settle`` seconds the next round kills the replica the client's Envoy is on then: the
  survivor of this round, so the two replicas take turns. Each round also prints how many
  replicas each Envoy's outlier detection had set aside at the kill (a replica that refused
  a connection while it was down): a short ``--settle`` kills the survivor soon after the
  other came back, the case where a replica still set aside slows the reconnection.

The integration test asserts zero failed requests; this measures the times, which no test
asserts.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pilotfish.api.kinds import PROXY_STATUS_PATH
from tests.conftest import _free_port
from tests.integration.harness import ControlPlane, Mesh, Sidecar, eventually, start_replica
from tests.integration.replicas.test_failover import CONFIG, Load, header_route, workload_entry
from tests.postgres import server_binaries, throwaway_cluster

CLIENT, BACKEND = "productpage", "reviews-v1"
TARGET_RECONNECT = 5.0


def proxies(cp: ControlPlane) -> dict[str, dict[str, Any]]:
    """The proxies connected to ``cp`` by pod name ({} when it does not answer)."""
    try:
        r = httpx.get(
            f"{cp.url}{PROXY_STATUS_PATH}",
            headers={"Authorization": f"Bearer {cp.token}"},
            timeout=1,
        )
        items = r.json()["items"] if r.status_code == 200 else []
    except (httpx.HTTPError, ValueError, KeyError):
        return {}
    return {p.get("pod_name") or "": p for p in items}


def synced_on(cp: ControlPlane, names: tuple[str, ...]) -> set[str]:
    """Which of ``names`` are connected to ``cp`` and synced at its current revision."""
    try:
        revision = cp.revision()
    except (httpx.HTTPError, ValueError, KeyError):
        return set()
    connected = proxies(cp)
    return {
        n
        for n in names
        if (p := connected.get(n))
        and p.get("synced")
        and int(p.get("config_revision") or 0) >= revision
    }


def set_aside(sidecar: Sidecar) -> int:
    """How many replicas the sidecar's Envoy has set aside now (outlier detection on its
    ``xds-grpc`` cluster ejects a replica that refused a connection)."""
    stat = "cluster.xds-grpc.outlier_detection.ejections_active"
    try:
        r = httpx.get(
            f"http://127.0.0.1:{sidecar.admin_port}/stats",
            params={"filter": f"^{stat}$"},
            timeout=1,
        )
    except httpx.HTTPError:
        return -1
    for line in r.text.splitlines():
        if line.startswith(f"{stat}:"):
            return int(line.split(":", 1)[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.02, help="Seconds between requests")
    parser.add_argument(
        "--settle",
        type=float,
        default=8.0,
        help="Seconds between the killed replica's restart and the next round",
    )
    args = parser.parse_args()
    bin_dir = server_binaries()
    if bin_dir is None:
        print("PostgreSQL's initdb and pg_ctl are not installed", file=sys.stderr)
        return 1
    # (kill -> client synced on survivor, kill -> both synced, requests, failed, victim)
    rounds: list[tuple[float, float, int, int, str]] = []
    failures: list[str] = []
    with throwaway_cluster(bin_dir, _free_port) as cluster:
        url = cluster.new_database()
        root = Path(tempfile.mkdtemp(prefix="pilotfish-bench-replicas-"))
        ports = {name: (_free_port(), _free_port()) for name in ("a", "b")}
        cps: dict[str, ControlPlane] = {}
        mesh: Mesh | None = None
        try:
            for name in ("a", "b"):
                cps[name] = start_replica(root, name, url, *ports[name])
            mesh = Mesh(cps["a"], root, _free_port, replicas=[cps["b"]])
            mesh.apply(CONFIG)
            backend = mesh.add(
                BACKEND, {"app": "reviews", "version": "v1"},
                service_account="bookinfo-reviews", mtls=True,
            )  # fmt: skip
            mesh.apply(workload_entry(backend))
            mesh.apply(header_route("bench"))
            client = mesh.add(
                CLIENT, {"app": "productpage"}, app_port=None,
                service_account="bookinfo-productpage", mtls=True,
            )  # fmt: skip
            eventually(
                lambda: client.request("reviews:9080", "/r").status_code == 200,
                30,
                "reviews through the client's sidecar",
            )
            with Load(client, args.pause) as load:
                eventually(lambda: load.ok >= 20, 20, "requests flowing")
                for n in range(args.rounds):
                    eventually(
                        lambda: any(CLIENT in proxies(cp) for cp in cps.values()),
                        30,
                        "the client's Envoy on a replica",
                    )
                    victim = next(k for k, cp in cps.items() if CLIENT in proxies(cp))
                    survivor = cps["b" if victim == "a" else "a"]
                    before = load.ok + len(load.failures)
                    failed_before = len(load.failures)
                    aside = (set_aside(client), set_aside(backend))
                    t0 = time.monotonic()
                    cps[victim].proc.send_signal(signal.SIGKILL)
                    first: dict[str, float] = {}
                    deadline = t0 + 60
                    while len(first) < 2 and time.monotonic() < deadline:
                        for name in synced_on(survivor, (CLIENT, BACKEND)):
                            first.setdefault(name, time.monotonic() - t0)
                        time.sleep(0.01)
                    if len(first) < 2:
                        raise SystemExit(f"round {n + 1}: not synced on the survivor in 60 s")
                    # The requests of the outage: from the kill until both are synced again.
                    sent = load.ok + len(load.failures) - before
                    failed = len(load.failures) - failed_before
                    rounds.append((first[CLIENT], max(first.values()), sent, failed, victim))
                    print(
                        f"round {n + 1}: killed {victim}; client synced on the survivor after "
                        f"{first[CLIENT]:.2f} s, both after {max(first.values()):.2f} s; "
                        f"{sent} requests, {failed} failed; replicas set aside at the kill by "
                        f"the client's / backend's Envoy: {aside[0]} / {aside[1]}",
                        flush=True,
                    )
                    cps[victim].proc.wait(10)
                    cps[victim] = start_replica(root, victim, url, *ports[victim])
                    mesh.cp, mesh.replicas = cps["a"], (cps["b"],)
                    time.sleep(args.settle)
                failures = list(load.failures)
            total = load.ok + len(load.failures)
        finally:
            if mesh is not None:
                mesh.stop()
            for cp in cps.values():
                cp.kill(signal.SIGKILL)
            shutil.rmtree(root, ignore_errors=True)
    for line in failures[:10]:
        print("failed:", line[:300])
    print_figures(rounds, total, len(failures))
    return 0


def print_figures(
    rounds: list[tuple[float, float, int, int, str]], total: int, failed: int
) -> None:
    def s(v: float) -> str:
        return f"{v:.2f} s"

    med = statistics.median
    client, both = [r[0] for r in rounds], [r[1] for r in rounds]
    print("R3: two replicas on PostgreSQL, kill -9 of the one the client's Envoy uses "
          f"({len(rounds)} rounds; 2-core shared machine, times are indicative)")  # fmt: skip
    print(f"R3 kill -9 -> client Envoy synced on survivor   median {s(med(client))}, max "
          f"{s(max(client))}  ({', '.join(s(v) for v in client)})")  # fmt: skip
    print(f"R3 kill -9 -> both Envoys synced on survivor    median {s(med(both))}, max "
          f"{s(max(both))}  ({', '.join(s(v) for v in both)})")  # fmt: skip
    print(f"R3 reconnected, target <= {TARGET_RECONNECT:.0f} s: max {s(max(both))}, ratio "
          f"{max(both) / TARGET_RECONNECT:.2f} of the target (median "
          f"{med(both) / TARGET_RECONNECT:.2f})")  # fmt: skip
    print(f"R3 requests from kill to both synced: {sum(r[2] for r in rounds)}, failed "
          f"{sum(r[3] for r in rounds)} (target 0)")  # fmt: skip
    print(f"R3 requests over the whole run (kills, restarts, settling): {total}, failed "
          f"{failed} (target 0)")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
