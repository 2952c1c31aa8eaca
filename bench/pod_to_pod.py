"""Pod to pod through the mesh: what each part of the path costs, and what telemetry adds.

Run as root from the repository root::

    .venv/bin/python bench/pod_to_pod.py              # 5 rounds, 8 s runs, c=1 and c=8
    .venv/bin/python bench/pod_to_pod.py --quick      # 1 round, 2 s, c=1

It brings up a private local mesh (own prefix, /24 and ports, in a temporary directory) with
two namespaces, each holding a ``backend`` (an Envoy answering every request itself, 200 with
2 bytes, ``--concurrency 1``) and a ``client`` pod (``sleep``):

- ``plain``: no injection; ``wrk`` in the client pod calls the backend pod's address directly
  (the reference: the pods' network alone);
- ``meshed``: injected; ``wrk`` in the client pod calls the ``backend`` Service, so the request
  is captured by iptables into the client's sidecar and reaches the server's sidecar, which
  hands it to the app. Three configurations, applied in turn to the same pods:

  - ``mtls``: automatic mutual TLS, telemetry off (a mesh-wide ``Telemetry`` disabling the
    metrics, no access log);
  - ``plaintext``: telemetry off and mTLS off (``PeerAuthentication`` ``DISABLE`` and a
    ``DestinationRule`` with ``tls.mode: DISABLE``): what TLS costs;
  - ``telemetry``: mutual TLS with Istio's standard metrics and the ``envoy`` access log on
    (a mesh-wide ``Telemetry`` naming the ``envoy`` provider), as Istio's demo profile runs.

Rounds are interleaved (each round runs every configuration once per connection count; the
mesh's config is switched between runs and each run waits until the change shows in the
client sidecar's config). For each run it reads the CPU time of both sidecar Envoys (``utime
+ stime``) and divides by the requests served. Tables show medians over rounds and the ratios
the observability issue sets targets for: telemetry adds at most 5% to the pod-to-pod p50 and
at most 1.3x to the sidecars' CPU per request. No exit code depends on the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dataplane import Result, parse_wrk
from pod_startup import REPO, Api, deployment, private_mesh, ready

from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.platform.local.runtime_mesh import MeshSettings, mesh_down, mesh_up

P50_TARGET = 1.05
CPU_TARGET = 1.30
PORT = 8080
CONFIGS = ("mtls", "plaintext", "telemetry")

BACKEND_YAML = f"""
static_resources:
  listeners:
  - address: {{socket_address: {{address: 0.0.0.0, port_value: {PORT}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": "type.googleapis.com/envoy.extensions.filters.network.\\
            http_connection_manager.v3.HttpConnectionManager"
          stat_prefix: backend
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: ok}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""


def service(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "backend", "namespace": namespace},
        "spec": {
            "selector": {"app": "backend"},
            "ports": [{"name": "http", "port": PORT, "targetPort": PORT}],
        },
    }


def telemetry(on: bool) -> dict[str, Any]:
    spec: dict[str, Any] = (
        {"accessLogging": [{"providers": [{"name": "envoy"}]}]}
        if on
        else {"metrics": [{"overrides": [{"disabled": True}]}]}
    )
    return {
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "mesh-default", "namespace": "istio-system"},
        "spec": spec,
    }


def tls(mode: str) -> list[dict[str, Any]]:
    """PeerAuthentication and DestinationRule for ``mode`` (``ISTIO_MUTUAL`` or ``DISABLE``)."""
    peer = "STRICT" if mode == "ISTIO_MUTUAL" else "DISABLE"
    return [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": "meshed"},
            "spec": {"mtls": {"mode": peer}},
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "backend", "namespace": "meshed"},
            "spec": {"host": "backend", "trafficPolicy": {"tls": {"mode": mode}}},
        },
    ]


CONFIG_OF = {
    "mtls": [telemetry(False), *tls("ISTIO_MUTUAL")],
    "plaintext": [telemetry(False), *tls("DISABLE")],
    "telemetry": [telemetry(True), *tls("ISTIO_MUTUAL")],
}


class Mesh:
    def __init__(self, settings: MeshSettings) -> None:
        self.settings = settings
        self.api = Api(settings.api_url, (settings.data_dir / "admin-token").read_text().strip())
        self.cli = [
            sys.executable, "-P", "-m", "pilotfish.cli.main",
        ]  # fmt: skip
        self.env = {**os.environ, **dict(settings.env)}
        self.dirs = [
            "--data-dir", str(settings.data_dir), "--state-dir", str(settings.state_dir),
        ]  # fmt: skip

    def pod(self, namespace: str, app: str) -> dict[str, Any]:
        for p in self.api.pods(namespace):
            if p["metadata"]["name"].startswith(app + "-"):
                return p
        raise KeyError(f"{namespace}/{app}")

    def exec(
        self, namespace: str, pod: str, cmd: list[str], timeout: float, root: bool = False
    ) -> str:
        as_root = ["--root"] if root else []
        out = subprocess.run(
            [*self.cli, "exec", "-n", namespace, *self.dirs, *as_root, pod, "--", *cmd],
            capture_output=True, text=True, timeout=timeout, cwd=REPO, env=self.env,
        )  # fmt: skip
        if out.returncode != 0:
            raise SystemExit(f"exec in {namespace}/{pod} failed: {out.stderr or out.stdout}")
        return out.stdout

    def config_dump(self, namespace: str, pod: str) -> dict[str, Any]:
        """The pod's sidecar config, from its Envoy admin inside the pod's network namespace."""
        read = (
            "import urllib.request as u; "
            "print(u.urlopen('http://127.0.0.1:15000/config_dump').read().decode())"
        )
        out = self.exec(namespace, pod, ["python3", "-c", read], 30, root=True)
        return dict(json.loads(out))


def envoy_pids(pod_names: list[str]) -> list[int]:
    """The sidecar Envoys of these pods (their command line names the pod's state)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not cmd or not cmd[0].endswith(b"envoy"):
            continue
        text = b" ".join(cmd).decode(errors="replace")
        if "backend.yaml" in text or "--config-yaml" in text:
            continue
        if any(name in text for name in pod_names):
            pids.append(int(proc.name))
    return pids


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def applied(mesh: Mesh, client: str) -> str:
    """Which configuration the client sidecar runs, from its live Envoy config."""
    dump = mesh.config_dump("meshed", client)
    logs = any(
        "envoy.access_loggers.file" in json.dumps(config.get("dynamic_listeners", []))
        for config in dump["configs"]
    )
    cluster = f"outbound|{PORT}||backend.meshed.svc.cluster.local"
    tls = any(
        c.get("cluster", {}).get("name") == cluster and "UpstreamTlsContext" in json.dumps(c)
        for config in dump["configs"]
        for c in config.get("dynamic_active_clusters", [])
    )
    return "telemetry" if logs else ("mtls" if tls else "plaintext")


def wait_applied(mesh: Mesh, client: str, config: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (seen := applied(mesh, client)) != config:
        if time.monotonic() > deadline:
            raise SystemExit(f"the client sidecar runs {seen!r}, not {config!r}, after {timeout}s")
        time.sleep(0.3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--connections", default="1,8")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.connections = 1, 2.0, "1"
    conns = [int(c) for c in args.connections.split(",")]
    if os.geteuid() != 0:
        print("this benchmark starts pods: run it as root", file=sys.stderr)
        return 1
    # A stopped run still brings its mesh down (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="pilotfish-bench-p2p-"))
    os.chmod(root, 0o755)
    (root / "backend.yaml").write_text(BACKEND_YAML)
    os.chmod(root / "backend.yaml", 0o644)
    settings = private_mesh(root)
    envoy = str(envoy_binary())
    backend_cmd = [
        envoy, "-c", str(root / "backend.yaml"), "--concurrency", "1",
        "--disable-hot-restart", "--log-level", "error",
    ]  # fmt: skip
    print(f"pod to pod on {os.cpu_count()} CPUs, work dir {root}", flush=True)
    results: dict[tuple[str, int], list[tuple[Result, float]]] = {}
    try:
        mesh_up(settings)
        mesh = Mesh(settings)
        mesh.api.apply(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plain"}},
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": "meshed", "labels": {"istio-injection": "enabled"}},
                },
            ]
        )
        for ns in ("plain", "meshed"):
            mesh.api.apply(
                [
                    service(ns),
                    deployment("backend", ns, backend_cmd, PORT),
                    deployment("client", ns, ["sleep", "infinity"], None),
                    *(CONFIG_OF["mtls"] if ns == "meshed" else []),
                ]
            )
        deadline = time.monotonic() + 120
        while not all(
            len(mesh.api.pods(ns)) == 2 and all(ready(p) for p in mesh.api.pods(ns))
            for ns in ("plain", "meshed")
        ):
            if time.monotonic() > deadline:
                raise SystemExit("pods not ready after 120 s")
            time.sleep(0.2)
        direct_ip = mesh.pod("plain", "backend")["status"]["podIP"]
        plain_client = mesh.pod("plain", "client")["metadata"]["name"]
        client = mesh.pod("meshed", "client")["metadata"]["name"]
        backend = mesh.pod("meshed", "backend")["metadata"]["name"]
        wait_applied(mesh, client, "mtls")
        vip = mesh.api.http.get("/api/v1/namespaces/meshed/services/backend").json()["spec"][
            "clusterIP"
        ]
        pids = envoy_pids([client, backend])
        if len(pids) != 2:
            raise SystemExit(f"expected the two sidecar Envoys, found pids {pids}")
        host = f"backend.meshed.svc.cluster.local:{PORT}"

        def run(ns: str, pod: str, url: str, c: int, seconds: float) -> tuple[Result, float]:
            before = sum(cpu_seconds(p) for p in pids)
            wrk = ["wrk", "-t1", f"-c{c}", f"-d{max(1, round(seconds))}s", "--latency"]
            out = mesh.exec(ns, pod, [*wrk, "-H", f"Host: {host}", url], seconds + 60)
            cpu = sum(cpu_seconds(p) for p in pids) - before
            return parse_wrk(out), cpu

        current = "mtls"
        for r in range(args.rounds):
            for c in conns:
                res = run("plain", plain_client, f"http://{direct_ip}:{PORT}/", c, args.duration)
                results.setdefault(("direct", c), []).append(res)
                for config in CONFIGS:
                    if config != current:
                        mesh.api.apply(CONFIG_OF[config])
                        wait_applied(mesh, client, config)
                        current = config
                    run("meshed", client, f"http://{vip}:{PORT}/", c, 1)  # warm up
                    results.setdefault((config, c), []).append(
                        run("meshed", client, f"http://{vip}:{PORT}/", c, args.duration)
                    )
            print(f"  round {r + 1}/{args.rounds} done", flush=True)
    finally:
        mesh_down(settings)
    print_tables(results, conns)
    return 0


def verdict(value: float, target: float) -> str:
    return f" (target {target}x: {'met' if value <= target else 'missed'})"


def print_tables(
    results: dict[tuple[str, int], list[tuple[Result, float]]], conns: list[int]
) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    print()
    print("| path | conns | rps | p50 | p99 | sidecar Envoy CPU s / 1k req | p50 / direct | "
          "p50 / mtls | CPU per request / mtls |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in conns:
        direct_p50 = med([r.p50_ms for r, _ in results[("direct", c)]])
        base_p50 = med([r.p50_ms for r, _ in results[("mtls", c)]])
        base_cpu = med([cpu / max(1, r.requests) * 1000 for r, cpu in results[("mtls", c)]])
        for path in ("direct", *CONFIGS):
            runs = results[(path, c)]
            rps = med([r.rps for r, _ in runs])
            p50 = med([r.p50_ms for r, _ in runs])
            p99 = med([r.p99_ms for r, _ in runs])
            cpu = med([cpu / max(1, r.requests) * 1000 for r, cpu in runs])
            cpu_text = "" if path == "direct" else f"{cpu:.3f}"
            vs_direct = f"{p50 / direct_p50:.2f}x" if path != "direct" else ""
            vs_mtls = f"{p50 / base_p50:.2f}x" if path in ("plaintext", "telemetry") else ""
            cpu_ratio = f"{cpu / base_cpu:.2f}x" if path in ("plaintext", "telemetry") else ""
            if path == "telemetry":
                vs_mtls += verdict(p50 / base_p50, P50_TARGET)
                cpu_ratio += verdict(cpu / base_cpu, CPU_TARGET)
            print(f"| {path} | {c} | {rps:,.0f} | {p50:.3f} ms | {p99:.3f} ms | {cpu_text} | "
                  f"{vs_direct} | {vs_mtls} | {cpu_ratio} |")  # fmt: skip
    # The machine may be shared: the spread of the side-by-side ratios, round by round.
    print()
    for c in conns:
        pairs = list(zip(results[("mtls", c)], results[("telemetry", c)], strict=True))
        p50s = [t.p50_ms / m.p50_ms for (m, _), (t, _) in pairs]
        cpus = [
            (tc / max(1, t.requests)) / (mc / max(1, m.requests))
            for (m, mc), (t, tc) in pairs
            if mc > 0
        ]
        print(f"telemetry / mtls per round, c={c}: p50 "
              + ", ".join(f"{v:.2f}x" for v in p50s) + "; CPU per request "
              + ", ".join(f"{v:.2f}x" for v in cpus))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
