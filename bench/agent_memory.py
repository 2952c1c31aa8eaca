"""The sidecar agent's cost per pod: marginal memory (PSS), start to Envoy launched, pod ready.

Run as root from the repository root::

    .venv/bin/python bench/agent_memory.py [--pods 10] [--launches 5]

Side by side in one run, for the two ways the local runtime starts a sidecar agent:

- ``process``: a new Python process per sidecar (``pilotfish runtime --sidecar-processes``);
- ``zygote``: forked from the runtime's warm agent parent (the default; see
  ``pilotfish/platform/local/zygote.py``).

For each, it brings up a private mesh (own prefix, /24 and ports), then creates one-replica
Deployments in a namespace with injection, one at a time, and measures:

- pod created -> Ready (through the API, polling every 5 ms; median of ``--pods`` pods, each
  created while the earlier ones run);
- agent memory per pod with 1 and with ``--pods`` sidecar pods running: the sum of the PSS
  (``/proc/PID/smaps_rollup``; pages shared by k processes count 1/k each) of every agent
  process (the pods' agents, and the zygote itself in zygote mode), divided by the number of
  pods; and the marginal cost of a pod, what that sum grows by per pod from 1 to ``--pods``.
  Envoy is not counted (it is the same in both modes);
- the agent's start to Envoy launched: an agent with a workload identity started in a network
  namespace of its own (as a pod's), timed from the request until its Envoy process exists
  (median of ``--launches``; the CA is unreachable, so the certificate never arrives: Envoy
  does not wait for it).

Prints each figure with its target and the ratio figure/target (<= 1 meets it).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pod_startup import Api, private_mesh, time_pod

from pilotfish.platform.local.process import pod_command, pod_env, run_in_pod
from pilotfish.platform.local.runtime_mesh import mesh_down, mesh_up
from pilotfish.platform.local.zygote import SpawnRequest, Zygote

TARGET_PSS_MB = 30.0
TARGET_READY_S = 0.3
TARGET_LAUNCH_S = 0.15


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def is_agent(pid: int) -> bool:
    """A Python process running Pilotfish (not Envoy, whose bootstrap path names it too)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return "python" in Path(exe).name and "pilotfish" in cmdline(pid)


def agent_pids(prefix: str) -> list[int]:
    """Every agent process of the mesh with ``prefix``: the pods' agents (Python processes
    running ``pilotfish`` inside the mesh's pod namespaces) and the zygote."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    pids: set[int] = set()
    for line in out.splitlines():
        ns = line.split()[0] if line.split() else ""
        if not ns.startswith(prefix):
            continue
        found = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        for tok in found.stdout.split():
            if tok.isdigit() and is_agent(int(tok)):
                pids.add(int(tok))
    socket_dir = f"/run/pilotfish/{prefix}/zygote.sock"
    for entry in os.listdir("/proc"):
        if entry.isdigit() and socket_dir in cmdline(int(entry)) and is_agent(int(entry)):
            pids.add(int(entry))
    return sorted(pids)


def memory(prefix: str) -> tuple[float, float, int]:
    """(total PSS of the agent processes in MB, mean RSS per agent process in MB, count)."""
    pids = agent_pids(prefix)
    total_pss = sum(pss_kb(p) for p in pids)
    rss = [rss_kb(p) for p in pids]
    return total_pss / 1024, statistics.mean(rss) / 1024 if rss else 0.0, len(pids)


def run_mesh(mode: str, pods: int, root: Path) -> dict[str, object]:
    settings = replace(private_mesh(root / mode), sidecar_zygote=(mode == "zygote"))
    prefix = settings.network.prefix
    result: dict[str, object] = {}
    try:
        mesh_up(settings)
        api = Api(settings.api_url, (settings.data_dir / "admin-token").read_text().strip())
        api.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": "meshed", "labels": {"istio-injection": "enabled"}},
                }
            ]
        )
        times = [time_pod(api, "meshed", f"m{i}")[0] for i in range(1)]
        time.sleep(1.0)  # let start-up transients settle
        result["mem1"] = memory(prefix)
        times += [time_pod(api, "meshed", f"m{i}")[0] for i in range(1, pods)]
        time.sleep(1.0)
        result["memN"] = memory(prefix)
        result["ready"] = times
    finally:
        mesh_down(settings)
    return result


def self_signed_ca(directory: Path) -> Path:
    """A throwaway CA file for the agent's ``--ca-file`` (it only has to parse)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def envoy_child(pid: int) -> bool:
    """Whether the agent ``pid`` has an Envoy child process yet."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        return False
    for child in children:
        try:
            if os.readlink(f"/proc/{child}/exe").endswith("envoy"):
                return True
        except OSError:
            continue
    return False


def launch_times(mode: str, rounds: int, root: Path) -> list[float]:
    """Agent start -> Envoy launched, ``rounds`` times, in a namespace of its own."""
    netns = f"bla{os.getpid() % 100000}{mode[0]}"
    work = root / f"launch-{mode}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "token").write_text("not-a-token\n")
    ca = self_signed_ca(work)
    subprocess.run(["ip", "netns", "add", netns], check=True)
    zygote = Zygote(work / "zygote.sock") if mode == "zygote" else None
    times: list[float] = []
    try:
        run_in_pod(netns, ["ip", "link", "set", "lo", "up"])
        if zygote is not None and not zygote.start():
            raise SystemExit("the zygote did not start")
        for i in range(rounds):
            options = [
                "--discovery-address", "127.0.0.1:9", "--ca-file", str(ca),
                "--token-file", str(work / "token"), "--pod-name", f"launch{i}",
                "--work-dir", str(work / f"agent{i}"), "--log-level", "error",
            ]  # fmt: skip
            log_path = work / f"agent{i}.log"
            t0 = time.perf_counter()
            if zygote is not None:
                request = SpawnRequest(tuple(options), netns, str(log_path), os.getgid(),
                                       pod_env(), str(root))  # fmt: skip
                proc = zygote.client().spawn(request)
                pid = proc.pid
            else:
                argv = [sys.executable, "-P", "-m", "pilotfish.cli.main", "proxy", *options]
                with open(log_path, "ab") as out:
                    popen = subprocess.Popen(
                        pod_command(netns, argv), env=pod_env(), stdout=out, stderr=out,
                        start_new_session=True,
                    )  # fmt: skip
                pid = popen.pid
            while not envoy_child(pid):
                if time.perf_counter() - t0 > 30:
                    raise SystemExit(f"{mode}: no Envoy after 30 s (see {log_path})")
                time.sleep(0.001)
            times.append(time.perf_counter() - t0)
            if zygote is not None:
                proc.stop(10)
            else:
                popen.terminate()
                popen.wait(10)
    finally:
        if zygote is not None:
            zygote.stop()
        subprocess.run(["ip", "netns", "del", netns], check=False)
    return times


def line(label: str, value: float, unit: str, target: float) -> str:
    ratio = value / target
    return f"  {label:<46} {value:8.3f} {unit:<3} target <= {target:g} {unit:<3} ratio {ratio:5.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--launches", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("this benchmark starts pods: run it as root", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="pilotfish-agentmem-"))
    results = {}
    for mode in ("process", "zygote"):
        launches = launch_times(mode, args.launches, root)
        results[mode] = {**run_mesh(mode, args.pods, root), "launch": launches}
    print("Sidecar agent per pod (2-core shared machine; same run, both modes)")
    for mode, r in results.items():
        mem1, memn = r["mem1"], r["memN"]
        ready, launch = r["ready"], r["launch"]
        assert isinstance(mem1, tuple) and isinstance(memn, tuple)
        assert isinstance(ready, list) and isinstance(launch, list)
        print(f"{mode}:")
        n = args.pods
        print(line("agent PSS per pod, 1 pod (sum / 1)", mem1[0], "MB", TARGET_PSS_MB))
        print(line(f"agent PSS per pod, {n} pods (sum / {n})", memn[0] / n, "MB", TARGET_PSS_MB))
        marginal = (memn[0] - mem1[0]) / (n - 1) if n > 1 else float("nan")
        print(line(f"marginal agent PSS per pod, 1 -> {n} pods", marginal, "MB", TARGET_PSS_MB))
        print(f"  {'(agent processes; mean RSS each)':<46} {memn[2]:8d}     {memn[1]:.1f} MB")
        print(line(f"pod created -> ready, median of {len(ready)}", statistics.median(ready), "s",
                   TARGET_READY_S))  # fmt: skip
        print(f"  {'(min / max)':<46} {min(ready):.3f} / {max(ready):.3f} s")
        print(line(f"agent start -> Envoy launched, median of {len(launch)}",
                   statistics.median(launch), "s", TARGET_LAUNCH_S))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
