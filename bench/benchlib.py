"""Shared parts of the xDS and data-plane benchmarks: processes, the control plane, sidecars,
config generators, /proc readings and table printing.

Every process a benchmark starts goes through :class:`Processes`, which kills each one's
process group when the benchmark ends (normally, on an exception, on Ctrl-C or SIGTERM).
Everything listens on loopback: ports come from the kernel, workload addresses are random
127.x.y.z addresses. The control plane and agents are the real ``pilotfish server`` and
``pilotfish proxy`` commands, run with this interpreter. As by default, the control plane
serves xDS over TLS and agents (and simulated proxies) verify it with its mesh roots;
``start_control_plane(..., plaintext=True)`` measures the plaintext option instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import httpx

from pilotfish.agent.launch import agent_argv
from pilotfish.agent.settings import AgentSettings, HostPort, IdentitySettings, XdsTls
from pilotfish.api.kinds import APPLY_PATH, PROXY_STATUS_PATH
from pilotfish.api.node import NodeInfo
from pilotfish.testing.ads_client import AdsClient

if TYPE_CHECKING:
    from pilotfish.server import Mesh

T = TypeVar("T")

CLI = [sys.executable, "-m", "pilotfish.cli.main"]


# ------------------------------------------------------------------------------- addresses


_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before by this process: the kernel may give the
    same ephemeral port to two quick calls, and a hundred Envoys (each binding with
    SO_REUSEPORT) would then share a listener without an error."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def free_loopback_ip(port: int) -> str:
    """A random 127.x.y.z on which ``port`` is free (other runs may share the host)."""
    rng = random.SystemRandom()
    for _ in range(200):
        ip = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        with socket.socket() as s:
            try:
                s.bind((ip, port))
            except OSError:
                continue
        return ip
    raise RuntimeError("no free loopback address")


# ------------------------------------------------------------------------------- processes


class Processes:
    """Starts processes in their own sessions and stops all of them on exit.

    Use as a context manager; SIGTERM and SIGINT inside it raise SystemExit so that the exit
    path (and the cleanup) runs.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[subprocess.Popen[bytes]] = []
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Processes:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
        for sig, old in self._old.items():
            signal.signal(sig, old)

    @staticmethod
    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    def start(
        self,
        cmd: Sequence[str],
        log_name: str,
        env: dict[str, str] | None = None,
        cpus: set[int] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` (output to ``log_name`` in the work directory), on ``cpus`` if given.

        Pinning uses ``taskset``, which execs the command: every thread and child the process
        starts later runs on the same CPUs, and the pid is the command's own."""
        log = self.workdir / log_name
        if cpus and shutil.which("taskset"):
            cmd = ["taskset", "-c", ",".join(str(c) for c in sorted(cpus)), *cmd]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                list(cmd),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        self.started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        # The group may hold children (Envoy under an agent) even after the leader exited.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def stop_all(self) -> None:
        live = [p for p in self.started if p.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.started.clear()


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def pin(pid: int, cpus: set[int] | None) -> None:
    """Restrict a process (and threads it starts later) to ``cpus``; None leaves it alone."""
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, cpus)


def cpu_split(enabled: bool) -> tuple[set[int] | None, set[int] | None]:
    """(CPUs for the system under test, CPUs for the load/clients), or (None, None)."""
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled or len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


# ------------------------------------------------------------------------------- /proc


def rss_mb(pid: int) -> float:
    """Resident set size of one process (VmRSS) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first), from ``/proc/PID/task/*/children``."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop(0)
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = [int(x) for x in (task / "children").read_text().split()]
                out += kids
                todo += kids
    return out


def envoy_pid(pid: int) -> int:
    """The Envoy process under an agent (``pid``): its descendant whose program is Envoy."""
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            argv0 = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0]
            if Path(argv0.decode()).name.startswith("envoy"):
                return child
    raise RuntimeError(f"no Envoy under pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads) in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the command: state is field 3; utime and stime are fields 14 and 15.
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------- control plane


@dataclass
class ControlPlane:
    url: str
    xds_port: int
    data_dir: Path
    config: Path
    proc: subprocess.Popen[bytes]
    #: xDS over TLS (the default); False with ``--xds-plaintext``.
    tls: bool = True

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def roots(self) -> Path:
        """The mesh roots agents verify the xDS port with."""
        return self.data_dir / "ca" / "mesh-roots.pem"

    def credentials(self) -> grpc.ChannelCredentials | None:
        """gRPC channel credentials for in-process xDS clients (None: plaintext)."""
        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(root_certificates=self.roots.read_bytes())

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PILOTFISH_CONFIG": str(self.config)}

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def api(self) -> Api:
        return Api(self.url, self.token)


def start_control_plane(
    procs: Processes,
    name: str = "server",
    cpus: set[int] | None = None,
    plaintext: bool = False,
    extra_args: tuple[str, ...] = (),
    ports: tuple[int, int] | None = None,
) -> ControlPlane:
    """``pilotfish server`` with a SQLite store in the work directory, on free ports; xDS over
    TLS unless ``plaintext``."""
    data_dir = procs.workdir / f"{name}-data"
    config = procs.workdir / f"{name}-cli-config"
    # ``ports`` (api, xds) given: started again with the same name, the same control plane
    # restarts on its store.
    api_port, xds_port = ports or (free_port(), free_port())
    env = {**os.environ, "PILOTFISH_CONFIG": str(config)}
    cmd = [
        *CLI,
        "server",
        "--data-dir",
        str(data_dir),
        "--listen",
        f"127.0.0.1:{api_port}",
        "--xds-listen",
        f"127.0.0.1:{xds_port}",
        "--log-level",
        "warning",
        "--no-trace-collector",
        *(["--xds-plaintext"] if plaintext else []),
        *extra_args,
    ]
    proc = procs.start(cmd, f"{name}.log", env, cpus)
    url = f"http://127.0.0.1:{api_port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"control plane exited; see {procs.workdir / (name + '.log')}")
        healthy = httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        return healthy and (data_dir / "admin-token").exists()

    wait_until(ready, 60, "the control plane")
    return ControlPlane(url, xds_port, data_dir, config, proc, tls=not plaintext)


class Api:
    """The few control-plane HTTP API calls the benchmarks make."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx.Client(base_url=url, headers=self.headers, timeout=60)

    def apply(self, items: list[dict[str, Any]]) -> None:
        resp = self.http.post(
            APPLY_PATH, json={"items": items, "namespace": "default", "dryRun": False}
        )
        if resp.status_code >= 300:
            raise SystemExit(f"apply failed ({resp.status_code}): {resp.text[:2000]}")

    def proxy_status(self) -> list[dict[str, Any]]:
        resp = self.http.get(PROXY_STATUS_PATH)
        resp.raise_for_status()
        return list(resp.json()["items"])


def iso_to_epoch(text: str | None) -> float | None:
    return None if not text else datetime.fromisoformat(text).timestamp()


def all_synced(statuses: list[dict[str, Any]], count: int) -> bool:
    """``count`` proxies connected and none has anything in flight."""
    return len(statuses) >= count and all(s["synced"] for s in statuses)


# ------------------------------------------------------------------------------- sidecars


@dataclass
class Sidecar:
    name: str
    ip: str
    outbound_port: int
    readiness_port: int
    admin_port: int
    proc: subprocess.Popen[bytes]
    #: The agent's port: ``/stats/prometheus`` (Envoy's stats with Istio's names merged).
    agent_port: int = 0

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(f"sidecar {self.name} exited (see its log in the work directory)")
        url = f"http://127.0.0.1:{self.readiness_port}/healthz/ready"
        return httpx.get(url, timeout=2).status_code == 200


def start_sidecar(
    procs: Processes,
    cp: ControlPlane,
    name: str,
    labels: dict[str, str],
    *,
    ip: str | None = None,
    inbound: tuple[int, int] | None = None,
    concurrency: int = 1,
    cpus: set[int] | None = None,
    token_file: Path | None = None,
    service_account: str = "default",
) -> Sidecar:
    """``pilotfish proxy`` in explicit mode (``--interception-mode NONE``), not waited for.

    ``inbound`` is (app port, sidecar port): the sidecar then receives the app's traffic on
    ``ip:sidecar port`` and forwards it to ``ip:app port``, where something else listens.
    With ``token_file`` (:func:`workload_token`) the agent gets a mesh certificate for
    ``service_account`` over SDS and the workload takes part in mutual TLS, as an injected pod.
    """
    ip = ip or free_loopback_ip(inbound[0] if inbound else 9080)
    outbound, readiness, admin, agent = (free_port() for _ in range(4))
    node = NodeInfo(
        proxy_type="sidecar",
        ip=ip,
        pod_name=name,
        namespace="default",
        labels=dict(labels),
        service_account=service_account,
        interception_mode="NONE",
        outbound_port=outbound,
        inbound_ports=dict([inbound]) if inbound is not None else {},
    )
    settings = AgentSettings(
        node=node,
        work_dir=procs.workdir / f"proxy-{name}",
        discovery_address=HostPort("127.0.0.1", cp.xds_port),
        xds_tls=XdsTls(cp.roots) if cp.tls else None,
        identity=IdentitySettings(token_file=token_file) if token_file is not None else None,
        admin_port=admin,
        readiness_port=readiness,
        agent_port=agent,
        concurrency=concurrency,
        drain_seconds=0.0,
    )
    cmd = [*CLI, "proxy", *agent_argv(settings)]
    proc = procs.start(cmd, f"proxy-{name}.log", cp.env, cpus)
    return Sidecar(name, ip, outbound, readiness, admin, proc, agent)


def start_bare_envoy(
    procs: Processes,
    cp: ControlPlane,
    name: str,
    labels: dict[str, str],
    *,
    ip: str | None = None,
    inbound: tuple[int, int] | None = None,
    cpus: set[int] | None = None,
) -> Sidecar:
    """Envoy alone (no agent), with the bootstrap the agent would write for the same sidecar
    as :func:`start_sidecar` (explicit mode, no workload certificate); readiness is Envoy's
    admin ``/ready`` behind the readiness port. For benchmarks of many Envoys where the agent's
    memory would not fit; not waited for."""
    from pilotfish.agent.bootstrap import render_bootstrap, write_bootstrap
    from pilotfish.agent.envoy_binary import envoy_binary

    ip = ip or free_loopback_ip(inbound[0] if inbound else 9080)
    outbound, readiness, admin = (free_port() for _ in range(3))
    node = NodeInfo(
        proxy_type="sidecar",
        ip=ip,
        pod_name=name,
        namespace="default",
        labels=dict(labels),
        interception_mode="NONE",
        outbound_port=outbound,
        inbound_ports=dict([inbound]) if inbound is not None else {},
    )
    work = procs.workdir / f"envoy-{name}"
    work.mkdir(parents=True, exist_ok=True)
    settings = AgentSettings(
        node=node,
        work_dir=work,
        discovery_address=HostPort("127.0.0.1", cp.xds_port),
        xds_tls=XdsTls(cp.roots) if cp.tls else None,
        admin_port=admin,
        readiness_port=readiness,
        agent_port=None,
        concurrency=1,
        drain_seconds=0.0,
    )
    bootstrap = write_bootstrap(render_bootstrap(settings), work / "envoy.json")
    cmd = [
        str(envoy_binary()),
        "-c",
        str(bootstrap),
        "--concurrency",
        "1",
        "--disable-hot-restart",
        "--log-level",
        "warning",
        "--component-log-level",
        "misc:error",
    ]
    proc = procs.start(cmd, f"envoy-{name}.log", cp.env, cpus)
    return Sidecar(name, ip, outbound, readiness, admin, proc)


def workload_token(cp: ControlPlane, service_account: str, namespace: str = "default") -> Path:
    """A workload token file (``pilotfish token create``) for ``namespace/service_account``."""
    res = subprocess.run(
        [*CLI, "token", "create", "-n", namespace, "--service-account", service_account],
        capture_output=True,
        text=True,
        env=cp.env,
        timeout=60,
    )
    if res.returncode != 0:
        raise SystemExit(f"pilotfish token create failed: {res.stderr}")
    path = cp.data_dir.parent / f"token-{cp.data_dir.name}-{namespace}-{service_account}"
    path.write_text(res.stdout.strip() + "\n")
    return path


# ------------------------------------------------------------------------------- simulated


class LoopThread:
    """An asyncio loop in a thread, so that a benchmark's blocking calls do not stall clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def simulated_node(i: int, services: int) -> NodeInfo:
    """Sidecar ``sim-i`` (REDIRECT mode, address 10.200.x.y, never dialled): an endpoint of
    ``svc-(i mod services)``, version v1 or v2."""
    return NodeInfo(
        proxy_type="sidecar",
        ip=f"10.{200 + i // 65536}.{i // 256 % 256}.{i % 256}",
        pod_name=f"sim-{i}",
        namespace="default",
        labels={"app": f"svc-{i % services}", "version": "v1" if i % 2 == 0 else "v2"},
    )


class Fleet:
    """Simulated proxies: :class:`AdsClient` Delta streams on a loop thread of this process."""

    def __init__(self, cp: ControlPlane, services: int) -> None:
        self.cp = cp
        self.services = services
        self.clients: list[AdsClient] = []
        self.loop = LoopThread()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _connect(self, first: int, count: int) -> list[AdsClient]:
        credentials = self.cp.credentials()
        clients = [
            AdsClient(
                f"127.0.0.1:{self.cp.xds_port}",
                simulated_node(i, self.services),
                delta=True,
                credentials=credentials,
            )
            for i in range(first, first + count)
        ]
        await asyncio.gather(*(c.start() for c in clients))
        return clients

    def grow(self, count: int, synced: Callable[[int], bool], batch: int = 50) -> None:
        """Connect clients in batches until there are ``count``; after each batch wait until
        ``synced(number connected)`` holds."""
        while len(self.clients) < count:
            n = min(batch, count - len(self.clients))
            self.clients += self.loop.run(self._connect(len(self.clients), n))
            total = len(self.clients)
            wait_until(
                lambda total=total: synced(total),  # type: ignore[misc]
                900,
                f"{total} simulated proxies synced",
                0.2,
            )

    def close(self) -> None:
        async def stop() -> None:
            await asyncio.gather(*(c.stop() for c in self.clients), return_exceptions=True)

        with contextlib.suppress(Exception):
            self.loop.run(stop(), timeout=60)
        self.clients = []
        self.loop.close()


# ------------------------------------------------------------------------------- config


def service_items(
    count: int, *, port: int = 9080, subsets: Sequence[str] = ("v1", "v2")
) -> list[dict[str, Any]]:
    """``count`` Services ``svc-0``... selecting ``app: svc-N``, each with a DestinationRule."""
    items: list[dict[str, Any]] = []
    for i in range(count):
        name = f"svc-{i}"
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {
                    "selector": {"app": name},
                    "ports": [{"name": "http", "port": port}],
                },
            }
        )
        items.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {
                    "host": name,
                    "subsets": [{"name": s, "labels": {"version": s}} for s in subsets],
                },
            }
        )
    return items


def in_process_mesh(services: int, prefix: str) -> Mesh:
    """The control plane's ``Mesh`` in this process on a memory store holding
    :func:`service_items` (no gRPC, no API): for benchmarks of generation and pushes."""
    from pilotfish.config.store.base import Put
    from pilotfish.config.store.memory import MemoryStore
    from pilotfish.server import Mesh, ServerSettings

    store = MemoryStore()
    store.commit([Put(item) for item in service_items(services)])
    settings = ServerSettings.build(
        data_dir=Path(tempfile.mkdtemp(prefix=prefix)),
        listen="127.0.0.1:1",
        xds_listen="127.0.0.1:2",
        store_url=None,
    )
    return Mesh(store, settings)


def weighted_route(host: str, v1_weight: int) -> dict[str, Any]:
    """A VirtualService splitting ``host`` between subsets v1 and v2."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": host, "namespace": "default"},
        "spec": {
            "hosts": [host],
            "http": [
                {
                    "route": [
                        {"destination": {"host": host, "subset": "v1"}, "weight": v1_weight},
                        {"destination": {"host": host, "subset": "v2"}, "weight": 100 - v1_weight},
                    ]
                }
            ],
        },
    }


# ------------------------------------------------------------------------------- output


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def ratio(value: float, reference: float) -> str:
    return "n/a" if reference <= 0 else f"{value / reference:.2f}x"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def machine() -> str:
    cpus = os.cpu_count() or 1
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{cpus} CPUs{' (' + model + ')' if model else ''}, Python {sys.version.split()[0]}"


@contextlib.contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    start = time.monotonic()
    yield lambda: time.monotonic() - start


@dataclass(frozen=True)
class LoadSetup:
    """What a data-plane benchmark's command line decided: connections, load generator, CPUs."""

    connections: list[int]
    #: The wrk binary, or ``"python"``.
    load: str
    sut_cpus: set[int] | None
    load_cpus: set[int] | None
    workdir: Path


def load_setup(args: Any, prefix: str, title: str, sut: str) -> LoadSetup | int:
    """Parse the shared load options (``--quick``, ``--connections``, ``--load``, ``--no-pin``,
    ``--workdir``), pin this process for a Python load, make the work dir and print where
    everything runs. Returns an exit code when the asked-for load generator is missing."""
    if args.quick:
        args.connections, args.duration, args.rounds = "1", 1.0, 1
    connections = [int(x) for x in args.connections.split(",") if x.strip()]
    wrk = shutil.which("wrk")
    if args.load == "wrk" and not wrk:
        print("wrk is not installed: apt-get install -y wrk (or use --load python)")
        return 2
    load = wrk if wrk and args.load != "python" else "python"
    if load == "python" and args.load == "auto":
        print("wrk not found (apt-get install -y wrk); using the Python load generator")
    sut_cpus, load_cpus = cpu_split(not args.no_pin)
    if load_cpus and load == "python":
        os.sched_setaffinity(0, load_cpus)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=prefix))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"{title} on {machine()}; work dir {workdir}", flush=True)
    print(f"load generator: {'wrk ' + load if load != 'python' else 'python (asyncio)'}")
    print(
        f"{sut} on CPUs {sorted(sut_cpus)}, load on {sorted(load_cpus)}"
        if sut_cpus and load_cpus
        else "processes not pinned",
        flush=True,
    )
    return LoadSetup(connections, load, sut_cpus, load_cpus, workdir)
