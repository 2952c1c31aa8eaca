"""``pilotfish up`` / ``down`` / ``status``: the whole local mesh as background processes.

``up`` starts three processes, each in its own session with its log in ``<state>/logs/``:

1. the control plane (``pilotfish server``): API on ``api_listen``, xDS and the CA over TLS
   on the pod bridge's address so pods reach it (the bridge is created first); its serving
   certificate names that address;
2. the runtime (``pilotfish runtime``, see :mod:`.runtime_main`), after the mesh roots
   (``<data-dir>/ca/mesh-roots.pem``) are copied to ``<run dir>/mesh-roots.pem`` (mode 0644),
   which every sidecar passes as ``--ca-file`` and its Envoy (the proxy user) reads;
3. the ingress gateway (``pilotfish proxy --type router``) in the host network namespace with
   ``istio: ingressgateway`` labels in ``istio-system``, Gateway ports 80 -> 8080,
   443 -> 8443 and any other as written (8080 -> 8080) bound on ``gateway_bind`` (127.0.0.1
   by default), verifying the control plane with ``<data-dir>/ca/mesh-roots.pem`` (it runs as root);

4. Prometheus (Debian's ``prometheus``, when installed) on ``127.0.0.1:9090`` with its config
   and TSDB in ``<state>/prometheus/``, scraping the control plane, the gateway and every pod
   the runtime lists in its targets file (see :mod:`.prometheus`); without the binary the
   mesh comes up without it and ``status`` says how to install it;
5. the addon names (see :mod:`.addons`): an Envoy on the pod bridge address that forwards
   ``prometheus.istio-system:9090`` and ``tracing.istio-system`` to Prometheus and the trace
   query API on loopback;

waiting for each to be ready, and records them in ``<state>/mesh.json``. ``down`` stops them
(the runtime first, so apps stop and sidecars drain) and then removes every namespace, veth,
bridge and rule of the mesh's prefix with :func:`~.network.cleanup_all` - also when the mesh
crashed and ``mesh.json`` names processes that are gone. The data directory (config store,
token, CA) is never touched, so state survives ``down``/``up``.

Pure parts (:func:`server_argv`, :func:`runtime_argv`, :func:`gateway_argv`,
:func:`preflight_problem`) and :func:`copy_mesh_roots` are unit-tested; the rest starts and
stops processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.agent.launch import PROXY_MODULE, agent_argv
from pilotfish.agent.settings import AgentSettings, HostPort, IdentitySettings, XdsTls
from pilotfish.api.kinds import APPLY_PATH, DELETE_PATH, by_kind, token_path
from pilotfish.api.mesh import (
    ADMIN_PORT,
    AGENT_PORT,
    DEFAULT_API_ADDRESS,
    GATEWAY_PORTS,
    READINESS_PORT,
    XDS_PORT,
)
from pilotfish.api.node import NodeInfo
from pilotfish.api.profiles import EGRESS_GATEWAY
from pilotfish.config.addons import MANAGED_BY
from pilotfish.errors import PilotfishError
from pilotfish.platform.local import prometheus as prom
from pilotfish.platform.local.addons import (
    PROMETHEUS_PORT,
    TRACING_QUERY_PORT,
    Forward,
    addon_services,
    addons_bootstrap,
)
from pilotfish.platform.local.commands import IptablesTools
from pilotfish.platform.local.egressgateway import (
    EGRESS_LABELS,
    egress_gateway_objects,
    egress_gateway_refs,
)
from pilotfish.platform.local.hostmeshes import (
    MeshRecord,
    PrefixBusy,
    PrefixLock,
    conflicts,
    port_problem,
    prefix_locked,
    remove_record,
    running_meshes,
    write_record,
)
from pilotfish.platform.local.meshfile import (
    MESH_FILE,
    load_mesh,
    mesh_lock,
    process_alive,
)
from pilotfish.platform.local.meshfile import (
    cmdline as _cmdline,
)
from pilotfish.platform.local.meshfile import (
    save_mesh as _save_mesh,
)
from pilotfish.platform.local.network import PodNetwork, PodNetworkSettings, cleanup_all
from pilotfish.platform.local.prometheus import PrometheusLayout
from pilotfish.platform.local.runtime import read_status_file
from pilotfish.platform.local.runtime_main import mesh_roots_path, run_dir_for
from pilotfish.platform.local.runtime_model import PROXY_CONTAINER, pod_is_ready

__all__ = [
    "ComponentStatus",
    "MeshError",
    "MeshSettings",
    "Progress",
    "copy_mesh_roots",
    "gateway_argv",
    "load_mesh",
    "mesh_down",
    "mesh_status",
    "mesh_up",
    "preflight_problem",
    "runtime_argv",
    "server_argv",
]

#: The control plane's trace collector: Jaeger's query API on loopback.
TRACE_QUERY_PORT = 16686
#: The control plane's web dashboard (Kiali's port), on loopback.
DASHBOARD_PORT = 20001
#: Istio's ingress gateway ports (80 -> 8080, 443 -> 8443); other Gateway ports bind as written.
DEFAULT_GATEWAY_PORTS: tuple[tuple[int, int], ...] = tuple(GATEWAY_PORTS.items())


class MeshError(PilotfishError):
    """``up``/``down`` could not do what was asked; the message says what to do."""


@dataclass(frozen=True)
class MeshSettings:
    data_dir: Path
    state_dir: Path
    api_listen: str = DEFAULT_API_ADDRESS
    xds_port: int = XDS_PORT
    gateway_bind: str = "127.0.0.1"
    gateway_ports: tuple[tuple[int, int], ...] = DEFAULT_GATEWAY_PORTS
    gateway_admin_port: int = ADMIN_PORT
    gateway_agent_port: int = AGENT_PORT
    gateway_readiness_port: int = READINESS_PORT
    network: PodNetworkSettings = field(default_factory=PodNetworkSettings)
    #: Working directory of the pods' apps (commands like ``samples/bookinfo/src/x.py``).
    workdir: Path = field(default_factory=Path.cwd)
    python: str = sys.executable
    ready_timeout: float = 60.0
    #: Extra environment of the background processes (e.g. ``PILOTFISH_CONFIG``).
    env: tuple[tuple[str, str], ...] = ()
    #: Prometheus' port on 127.0.0.1 (Istio's addon port); ``None``: no Prometheus.
    prometheus_port: int | None = prom.DEFAULT_PORT
    #: The control plane's trace collector: Jaeger's query API on 127.0.0.1.
    trace_query_port: int = TRACE_QUERY_PORT
    #: The control plane's web dashboard on 127.0.0.1 (Kiali's port); ``None``: no dashboard.
    dashboard_port: int | None = DASHBOARD_PORT
    #: The Prometheus binary (looked up on ``PATH``).
    prometheus_binary: str = "prometheus"
    #: The optional parts an install profile chooses (see :mod:`pilotfish.api.profiles`);
    #: Prometheus is off when ``prometheus_port`` is ``None``, the dashboard when
    #: ``dashboard_port`` is.
    ingress_gateway: bool = True
    trace_collector: bool = True
    #: Istio's egress gateway, a pod in ``istio-system`` (see :mod:`.egressgateway`).
    egress_gateway: bool = False
    #: Sidecar agents forked from the runtime's warm parent (see :mod:`.zygote`); False: one
    #: new Python process per sidecar (``pilotfish runtime --sidecar-processes``).
    sidecar_zygote: bool = True

    @property
    def xds_address(self) -> str:
        return f"{self.network.gateway_ip}:{self.xds_port}"

    @property
    def api_url(self) -> str:
        host, _, port = self.api_listen.rpartition(":")
        host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        return f"http://{host}:{port}"

    @property
    def gateway_url(self) -> str:
        port = dict(self.gateway_ports).get(80, self.gateway_ports[0][1])
        host = "127.0.0.1" if self.gateway_bind == "0.0.0.0" else self.gateway_bind
        return f"http://{host}:{port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def prometheus(self) -> PrometheusLayout:
        return PrometheusLayout.under(self.state_dir)

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pods_dir(self) -> Path:
        """The runtime's pods: ``<namespace>/<pod>/`` with each container's log."""
        return self.state_dir / "pods"

    @property
    def mesh_roots(self) -> Path:
        """The control plane's mesh roots (what verifies its xDS/CA port)."""
        return self.data_dir / "ca" / "mesh-roots.pem"


# ---------------------------------------------------------------- pure parts


def server_argv(s: MeshSettings) -> list[str]:
    return [
        s.python, "-P", "-m", "pilotfish.cli.main", "server",
        "--data-dir", str(s.data_dir),
        "--listen", s.api_listen,
        "--xds-listen", s.xds_address,
        "--trace-query-port", str(s.trace_query_port),
        *(["--prometheus-url", s.prometheus_url] if s.prometheus_port else []),
        "--dashboard-listen", f"127.0.0.1:{s.dashboard_port}" if s.dashboard_port else "",
        "--trace-collector" if s.trace_collector else "--no-trace-collector",
    ]  # fmt: skip


def components_record(s: MeshSettings) -> dict[str, bool]:
    """The optional parts this mesh is asked to run (recorded in ``mesh.json``). Pure."""
    return {
        "ingress gateway": s.ingress_gateway,
        "egress gateway": s.egress_gateway,
        "prometheus": s.prometheus_port is not None,
        "trace collector": s.trace_collector,
        "dashboard": s.dashboard_port is not None,
    }


def _server_profile(argv: Sequence[str]) -> tuple[bool, bool]:
    """What of the control plane's command line an install profile decides (the trace
    collector on, the dashboard on): a change restarts it. Pure."""
    at = argv.index("--dashboard-listen") + 1 if "--dashboard-listen" in argv else 0
    return "--no-trace-collector" not in argv, bool(at and at < len(argv) and argv[at])


def runtime_argv(s: MeshSettings) -> list[str]:
    n = s.network
    extra = [] if s.sidecar_zygote else ["--sidecar-processes"]
    return [
        s.python, "-P", "-m", "pilotfish.cli.runtime_cmds", "runtime",
        "--server", s.api_url,
        "--token-file", str(s.data_dir / "admin-token"),
        "--state-dir", str(s.state_dir),
        "--prefix", n.prefix,
        "--pod-cidr", n.pod_cidr,
        "--service-cidr", n.service_cidr,
        "--xds-address", s.xds_address,
        "--workdir", str(s.workdir),
        *extra,
    ]  # fmt: skip


GATEWAY_NAMESPACE = "istio-system"
GATEWAY_SERVICE_ACCOUNT = "istio-ingressgateway-service-account"
#: The gateway's workload token lives as long as one `up` (it is issued again by each).
GATEWAY_TOKEN_TTL = 365 * 24 * 3600


def gateway_token_path(s: MeshSettings) -> Path:
    return run_dir_for(s.network.prefix) / "ingressgateway" / "token"


def gateway_argv(s: MeshSettings) -> list[str]:
    node = NodeInfo(
        proxy_type="router",
        ip="127.0.0.1",
        pod_name="istio-ingressgateway",
        namespace=GATEWAY_NAMESPACE,
        labels={"istio": "ingressgateway", "app": "istio-ingressgateway"},
        service_account=GATEWAY_SERVICE_ACCOUNT,
        interception_mode="NONE",
        gateway_ports=dict(s.gateway_ports),
        bind_address=s.gateway_bind,
    )
    agent = AgentSettings(
        node=node,
        work_dir=run_dir_for(s.network.prefix) / "ingressgateway",
        discovery_address=HostPort.parse(s.xds_address),
        xds_tls=XdsTls(s.mesh_roots),
        identity=IdentitySettings(token_file=gateway_token_path(s)),
        admin_port=s.gateway_admin_port,
        agent_port=s.gateway_agent_port,
        readiness_port=s.gateway_readiness_port,
        drain_seconds=1.0,
    )
    return [s.python, "-P", "-m", PROXY_MODULE, "proxy", *agent_argv(agent)]


def _loopback(listen: str) -> str:
    host, _, port = listen.rpartition(":")
    return f"{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{port}"


def prometheus_yaml(s: MeshSettings) -> str:
    """The local Prometheus' config for this mesh. Pure."""
    return prom.render_config(
        prom.config_for(
            api=_loopback(s.api_listen),
            gateway_agent=f"127.0.0.1:{s.gateway_agent_port}",
            targets_dir=s.prometheus.targets_dir,
            self_address=f"127.0.0.1:{s.prometheus_port}",
            rule_files=[s.prometheus.graph_rules],
        )
    )


def prometheus_binary(
    s: MeshSettings, which: Callable[[str], str | None] = shutil.which
) -> str | None:
    """The Prometheus this mesh runs, or ``None`` (disabled, or not installed)."""
    if s.prometheus_port is None:
        return None
    return which(s.prometheus_binary)


def preflight_problem(
    euid: int, platform: str, which: Callable[[str], str | None] = shutil.which
) -> str | None:
    """One line saying what is missing for pods, or ``None``. Pure (given ``which``)."""
    if not platform.startswith("linux"):
        return "pods need Linux (network namespaces and iptables); this is " + platform
    if euid != 0:
        return (
            "pods need root (network namespaces, veths and iptables): run `sudo pilotfish up`; "
            "`pilotfish server` alone runs without root"
        )
    missing = [t for t in ("ip", "iptables-restore", "setpriv", "useradd") if not which(t)]
    if missing:
        return (
            f"pods need {', '.join(missing)}: install iproute2, iptables and util-linux "
            "(scripts/install-system-deps.sh)"
        )
    return None


# ---------------------------------------------------------------- state file


def _stop_process(entry: dict[str, Any] | None, grace: float) -> None:
    if not process_alive(entry):
        return
    assert entry is not None
    pid = int(entry["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and process_alive(entry):
        time.sleep(0.05)
    if process_alive(entry):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- up


class Progress:
    """How ``up`` shows its steps; the CLI passes a rich one, tests the silent default."""

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        yield

    def note(self, text: str) -> None:
        return None


#: Processes this process started (pid -> Popen), to read their exit status.
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


def _spawn(
    s: MeshSettings, name: str, argv: Sequence[str], pass_fds: Sequence[int] = ()
) -> dict[str, Any]:
    s.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = s.logs_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(s.workdir),
            env={**os.environ, **dict(s.env)},
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    _STARTED[proc.pid] = proc
    return {"pid": proc.pid, "argv": list(argv), "log": str(log_path)}


def _tail(path: str | Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    return ""


def _wait(s: MeshSettings, name: str, entry: dict[str, Any], check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + s.ready_timeout
    while time.monotonic() < deadline:
        if check():
            return
        popen = _STARTED.get(int(entry["pid"]))
        code = popen.poll() if popen is not None else None
        if code is not None or (popen is None and not process_alive(entry)):
            raise MeshError(
                f"the {name} exited during start (exit status {code}, command line now "
                f"{_cmdline(int(entry['pid']))}); its log ends with:\n" + _tail(entry["log"])
            )
        time.sleep(0.05)
    raise MeshError(
        f"the {name} was not ready after {s.ready_timeout:g}s (log: {entry['log']}):\n"
        + _tail(entry["log"])
    )


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def part_ports(s: MeshSettings) -> dict[str, list[tuple[str, int]]]:
    """``(address, port)`` each part of the mesh listens on, by part. Pure."""
    api_host, _, api_port = s.api_listen.rpartition(":")
    gateway = [(s.gateway_bind, listen) for _, listen in s.gateway_ports]
    gateway += [("127.0.0.1", s.gateway_admin_port), ("0.0.0.0", s.gateway_agent_port)]
    gateway += [("0.0.0.0", s.gateway_readiness_port)]
    return {
        "control plane": [
            (api_host or "0.0.0.0", int(api_port)),
            ("127.0.0.1", s.trace_query_port),
            *([("127.0.0.1", s.dashboard_port)] if s.dashboard_port else []),
        ],
        "ingress gateway": gateway if s.ingress_gateway else [],
        "prometheus": [("127.0.0.1", s.prometheus_port)] if s.prometheus_port else [],
        "addons": [(str(s.network.gateway_ip), f.listen) for f in addon_forwards(s, True)],
    }


def mesh_record(s: MeshSettings, pids: Sequence[int] = ()) -> MeshRecord:
    """What this mesh owns on the host: prefix, ranges and every port it listens on. Pure."""
    ports = [p for part in part_ports(s).values() for p in part]
    return MeshRecord(
        prefix=s.network.prefix,
        data_dir=str(s.data_dir),
        state_dir=str(s.state_dir),
        api=s.api_url,
        pod_cidr=s.network.pod_cidr,
        service_cidr=s.network.service_cidr,
        ports=tuple(dict.fromkeys(ports)),
        pids=tuple(pids),
    )


def _refuse_conflicts(s: MeshSettings, parts: Sequence[str], own_runtime: bool = False) -> None:
    """Refuse up front when another running mesh would share a prefix, range or port, or a
    port this mesh needs is taken; nothing has been touched yet."""
    mine = mesh_record(s)
    for other in running_meshes():
        if Path(other.data_dir) == s.data_dir:
            continue
        shared = conflicts(mine, other)
        if shared:
            raise MeshError(
                f"another Pilotfish mesh is running here: {other.describe()}.\n"
                f"This one would share {'; '.join(shared)}.\n"
                f"Stop it with `pilotfish down --data-dir {other.data_dir}`, or give this one "
                "its own --prefix, --pod-cidr and ports."
            )
    if not own_runtime and prefix_locked(s.network.prefix):
        raise MeshError(
            f"the name prefix {s.network.prefix!r} is in use by a running pod runtime "
            "(started without `pilotfish up`?); stop it, or choose another --prefix"
        )
    wanted = part_ports(s)
    taken = [
        problem
        for part in parts
        for address, port in wanted.get(part, [])
        if (problem := port_problem("0.0.0.0" if address in ("", "0.0.0.0") else address, port))
    ]
    if taken:
        raise MeshError(
            "ports this mesh needs are in use: " + "; ".join(taken) + "\n"
            "Stop what uses them, or choose others (--listen, --gateway-port, "
            "--gateway-admin-port, --gateway-agent-port, --gateway-readiness-port, "
            "--prometheus-port, --trace-query-port, --dashboard-port)."
        )


def mesh_up(s: MeshSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Start the mesh (see the module docstring); returns what ``mesh.json`` records.

    Holds the mesh lock throughout, so the runtime's control-plane supervisor leaves the
    control plane to this call (see :mod:`.supervisor`).

    A mesh of the same data directory that runs already is reconciled: the parts that are
    not running are started, the others kept. Raises :class:`MeshError` when another mesh
    would share a prefix, range or port with this one, pods cannot run here, or a part fails
    to start (everything this call started is stopped again).
    """
    problem = preflight_problem(os.geteuid(), sys.platform)
    if problem:
        raise MeshError(problem)
    with mesh_lock(s.state_dir):
        return _mesh_up(s, progress or Progress())


def _mesh_up(s: MeshSettings, progress: Progress) -> dict[str, Any]:
    current = load_mesh(s.state_dir) or {}
    prometheus = prometheus_binary(s)
    wanted = {"server": True, "runtime": True, "gateway": s.ingress_gateway,
              "prometheus": prometheus is not None,
              "addons": bool(addon_forwards(s, prometheus is not None))}  # fmt: skip
    alive = {name: process_alive(e) for name, e in _entries(current).items()}
    for name in wanted:
        alive.setdefault(name, False)
    if alive["server"] and current.get("api"):
        # Reconciling a running mesh talks to its running control plane, wherever this `up`'s
        # flags (or their defaults) would have put a new one.
        s = replace(s, api_listen=urlsplit(str(current["api"])).netloc)
    if any(alive.values()):
        stopped = _stop_unwanted(s, current, alive, wanted, prometheus is not None)
        starting = [n for n, w in wanted.items() if w and not alive[n]]
        current["components"] = components_record(s)
        if not starting:
            _reconcile_egress_gateway(s, progress)
            _save_mesh(s.state_dir, current)
            if stopped:
                pids = [int(e["pid"]) for e in _entries(current).values() if e]
                write_record(mesh_record(s, pids))
            else:
                progress.note("Pilotfish is already running with this data directory as asked")
            return current
        progress.note("reconciling the running mesh: starting " + ", ".join(starting))
        mesh = dict(current)
    else:
        if current:  # a crashed run: whatever is left goes first
            mesh_down(s)
        mesh = {}
        alive = dict.fromkeys(alive, False)
    parts = [
        p for p, name in (("control plane", "server"), ("ingress gateway", "gateway"),
                          ("prometheus", "prometheus"))
        if wanted[name] and not alive[name]
    ]  # fmt: skip
    _refuse_conflicts(s, parts, own_runtime=alive["runtime"])
    try:
        lock = PrefixLock.acquire(s.network.prefix)
    except PrefixBusy as exc:
        if not alive["runtime"]:
            raise MeshError(f"{exc}; choose another --prefix") from None
        lock = None  # our own runtime holds it
    mesh.update(
        {
            "api": s.api_url,
            "gateway": s.gateway_url,
            "prefix": s.network.prefix,
            "pod_cidr": s.network.pod_cidr,
            "service_cidr": s.network.service_cidr,
            "data_dir": str(s.data_dir),
            "state_dir": str(s.state_dir),
            "gateway_readiness": f"http://127.0.0.1:{s.gateway_readiness_port}/healthz/ready",
            "xds_host": str(s.network.gateway_ip),
            "trace_query_port": s.trace_query_port,
            "dashboard": f"http://127.0.0.1:{s.dashboard_port}" if s.dashboard_port else None,
            "components": components_record(s),
        }
    )
    started: list[str] = []
    try:
        if not alive["runtime"]:
            with progress.step("pod network"):
                cleanup_all(s.network)
                PodNetwork(s.network).setup()
        if not alive["server"]:
            with progress.step(f"control plane (API {s.api_url}, xDS {s.xds_address})"):
                mesh["server"] = _spawn(s, "server", server_argv(s))
                started.append("server")
                _save_mesh(s.state_dir, mesh)
                _wait(s, "control plane", mesh["server"], lambda: _http_ok(f"{s.api_url}/healthz"))
        if not alive["runtime"]:
            assert lock is not None
            with progress.step("pod runtime"):
                _copy_mesh_roots(s)
                argv = [*runtime_argv(s), "--lock-fd", str(lock.fd)]
                mesh["runtime"] = _spawn(s, "runtime", argv, pass_fds=(lock.fd,))
                started.append("runtime")
                _save_mesh(s.state_dir, mesh)
                pid = mesh["runtime"]["pid"]

                def runtime_ready() -> bool:
                    info = read_status_file(s.state_dir) or {}
                    return bool(info.get("ready")) and info.get("pid") == pid

                _wait(s, "pod runtime", mesh["runtime"], runtime_ready)
        if wanted["gateway"] and not alive["gateway"]:
            with progress.step(f"ingress gateway ({s.gateway_url})"):
                _write_gateway_token(s)
                mesh["gateway"] = s.gateway_url
                mesh["gateway_process"] = _spawn(s, "gateway", gateway_argv(s))
                started.append("gateway")
                _save_mesh(s.state_dir, mesh)
                _wait(
                    s,
                    "ingress gateway",
                    mesh["gateway_process"],
                    lambda: _http_ok(mesh["gateway_readiness"]),
                )
        if prometheus is None:
            mesh.pop("prometheus", None)
            if s.prometheus_port is not None:
                progress.note(
                    f"Prometheus is not installed, so the mesh runs without it: "
                    f"{prom.INSTALL_HINT}, then `pilotfish up` again"
                )
        elif not alive["prometheus"]:
            with progress.step(f"prometheus ({s.prometheus_url})"):
                _write_prometheus_config(s)
                mesh["prometheus_url"] = s.prometheus_url
                argv = prom.prometheus_argv(
                    prometheus, s.prometheus, f"127.0.0.1:{s.prometheus_port}"
                )
                mesh["prometheus"] = _spawn(s, "prometheus", argv)
                started.append("prometheus")
                _save_mesh(s.state_dir, mesh)
                _wait(
                    s,
                    "prometheus",
                    mesh["prometheus"],
                    lambda: _http_ok(f"{s.prometheus_url}/-/ready"),
                )
        if wanted["addons"] and not alive["addons"]:
            forwards = addon_forwards(s, "prometheus" in mesh)
            mesh["addon_forwards"] = [f.name for f in forwards]
            with progress.step(
                "addon names (" + ", ".join(f"{f.name}.istio-system" for f in forwards) + ")"
            ):
                mesh["addons"] = _spawn(s, "addons", _addons_argv(s, forwards))
                started.append("addons")
                _save_mesh(s.state_dir, mesh)
                bridge = str(s.network.gateway_ip)
                _wait(s, "addons", mesh["addons"], lambda: _tcp_ok(bridge, forwards[0].listen))
                _apply(s, addon_services(bridge, "prometheus" in mesh))
        _reconcile_egress_gateway(s, progress)
        for name, entry in _entries(mesh).items():
            if not process_alive(entry):
                raise MeshError(f"the {name} exited right after it became ready; see its log "
                                f"in {s.logs_dir}")  # fmt: skip
        pids = [int(e["pid"]) for e in _entries(mesh).values() if e]
        write_record(mesh_record(s, pids))
    except BaseException:
        if any(alive.values()):
            for name in reversed(started):  # reconciling: stop only what this call started
                _stop_process(_entries(mesh).get(name), 10.0)
        else:
            mesh_down(s)
        raise
    finally:
        if lock is not None:
            lock.release()  # the runtime holds its own descriptor of the same lock
    return mesh


def _write_prometheus_config(s: MeshSettings) -> None:
    layout = s.prometheus
    for d in (layout.root, layout.data, layout.targets_dir, layout.graph_rules.parent):
        d.mkdir(parents=True, exist_ok=True)
    for path, text in ((layout.graph_rules, prom.graph_rules_yaml()),
                       (layout.config, prometheus_yaml(s))):  # fmt: skip
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)


def addon_forwards(s: MeshSettings, prometheus: bool) -> list[Forward]:
    """What the addons Envoy forwards from the bridge address to loopback. Pure."""
    out = [Forward("tracing", TRACING_QUERY_PORT, s.trace_query_port)] if s.trace_collector else []
    if prometheus and s.prometheus_port:
        out.append(Forward("prometheus", PROMETHEUS_PORT, s.prometheus_port))
    return out


def _addons_argv(s: MeshSettings, forwards: Sequence[Forward]) -> list[str]:
    path = s.state_dir / "addons" / "envoy.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(addons_bootstrap(str(s.network.gateway_ip), forwards), indent=1))
    return [
        str(envoy_binary()), "-c", str(path), "--concurrency", "1", "--disable-hot-restart",
        "--log-level", "warn",
    ]  # fmt: skip


def _tcp_ok(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


EGRESS_NAMESPACE = "istio-system"
MANAGED_BY_KEY = next(iter(MANAGED_BY))


def _reconcile_egress_gateway(s: MeshSettings, progress: Progress) -> None:
    """Apply the egress gateway and wait until its pod is ready, or delete it when the
    profile leaves it out (only the objects Pilotfish made)."""
    if not s.egress_gateway:
        found = _api_get(s, by_kind("Deployment").api_path(EGRESS_NAMESPACE, EGRESS_GATEWAY))
        labels = ((found or {}).get("metadata") or {}).get("labels") or {}
        if found is not None and labels.get(MANAGED_BY_KEY) == MANAGED_BY[MANAGED_BY_KEY]:
            with progress.step("removing the egress gateway"):
                _delete(s, egress_gateway_refs())
        return
    with progress.step(f"egress gateway ({EGRESS_NAMESPACE}/{EGRESS_GATEWAY})"):
        _apply(s, egress_gateway_objects())
        selector = ",".join(f"{k}={v}" for k, v in EGRESS_LABELS.items())

        def pods() -> list[dict[str, Any]]:
            got = _api_get(
                s, by_kind("Pod").api_path(EGRESS_NAMESPACE), {"labelSelector": selector}
            )
            return list((got or {}).get("items") or [])

        deadline = time.monotonic() + s.ready_timeout
        while True:
            current = pods()
            if any(pod_is_ready(p) for p in current):
                return
            if time.monotonic() > deadline:
                raise MeshError(
                    f"the egress gateway's pod was not ready within {s.ready_timeout:g}s"
                    + "".join(f"\n  {line}" for line in _not_ready_report(s, current))
                )
            time.sleep(0.2)


def _not_ready_report(s: MeshSettings, pods: Sequence[dict[str, Any]]) -> list[str]:
    """Why these pods are not ready, as their statuses say, and the end of each one's proxy
    log (a pod's logs go with it, so an error that only named the file would name nothing)."""
    if not pods:
        return ["no pod was created for it; see `pilotfish get deployments -A` and "
                f"{s.logs_dir / 'runtime.log'}"]  # fmt: skip
    out = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        ns, name = str(meta.get("namespace")), str(meta.get("name"))
        out.append(
            f"pod {ns}/{name}: {status.get('phase') or 'Pending'}"
            + "".join(f", {status[k]}" for k in ("reason", "message") if status.get(k))
        )
        for c in status.get("containerStatuses") or []:
            state = c.get("state") or {}
            detail: dict[str, Any] = next(iter(state.values()), {})
            why = ": ".join(str(detail[k]) for k in ("reason", "message") if detail.get(k))
            out.append(
                f"  container {c.get('name')}: {next(iter(state), 'unknown')}, "
                f"ready={c.get('ready')}, restarts={c.get('restartCount', 0)}"
                + (f" ({why})" if why else "")
            )
        log_path = s.pods_dir / ns / name / f"{PROXY_CONTAINER}.log"
        try:
            tail = log_path.read_text(errors="replace").splitlines()[-8:]
        except OSError:
            tail = []
        out += [f"  {log_path.name}: {line}" for line in tail]
    return out


def _api_get(
    s: MeshSettings, path: str, params: dict[str, str] | None = None
) -> dict[str, Any] | None:
    token = (s.data_dir / "admin-token").read_text().strip()
    resp = httpx.get(
        s.api_url + path,
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    if resp.status_code == 404:
        return None
    if resp.status_code >= 400:
        raise MeshError(f"GET {path} failed: HTTP {resp.status_code}: {resp.text[:300]}")
    return dict(resp.json())


def _delete(s: MeshSettings, items: list[dict[str, str]]) -> None:
    token = (s.data_dir / "admin-token").read_text().strip()
    resp = httpx.post(
        s.api_url + DELETE_PATH,
        json={"items": items},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    if resp.status_code >= 400 and resp.status_code != 404:
        raise MeshError(f"deleting the egress gateway failed: HTTP {resp.status_code}")


def _apply(s: MeshSettings, items: list[dict[str, Any]]) -> None:
    """Store ``items`` through the control plane's API, as ``pilotfish apply`` does."""
    token = (s.data_dir / "admin-token").read_text().strip()
    resp = httpx.post(
        s.api_url + APPLY_PATH,
        json={"items": items, "sources": [], "namespace": None, "dryRun": False},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    if resp.status_code >= 400:
        names = ", ".join(f"{i['kind']} {i['metadata']['name']}" for i in items)
        raise MeshError(f"applying {names} failed: HTTP {resp.status_code}: {resp.text[:300]}")


def _copy_mesh_roots(s: MeshSettings) -> None:
    copy_mesh_roots(s.mesh_roots, mesh_roots_path(s.network.prefix), s.logs_dir / "server.log")


def copy_mesh_roots(source: Path, out: Path, server_log: Path) -> None:
    """The mesh roots where the runtime's sidecars (and their Envoy, as the proxy user) read
    them (mode 0644); the data directory itself stays private."""
    if not source.is_file():
        raise MeshError(
            f"the control plane wrote no mesh roots at {source} (see its log in {server_log})"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.parent.chmod(0o755)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(source.read_bytes())
    tmp.chmod(0o644)
    tmp.replace(out)


def _write_gateway_token(s: MeshSettings) -> None:
    """A workload token for the gateway's identity, so it gets a mesh certificate (mTLS)."""
    token = (s.data_dir / "admin-token").read_text().strip()
    path = token_path(GATEWAY_NAMESPACE, GATEWAY_SERVICE_ACCOUNT)
    resp = httpx.post(
        s.api_url + path,
        json={"spec": {"expirationSeconds": GATEWAY_TOKEN_TTL}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    if resp.status_code >= 400:
        raise MeshError(
            f"ServiceAccount {GATEWAY_NAMESPACE}/{GATEWAY_SERVICE_ACCOUNT}: token request "
            f"failed: HTTP {resp.status_code}: {resp.text[:300]}"
        )
    out = gateway_token_path(s)
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(str(resp.json()["status"]["token"]) + "\n")


# ---------------------------------------------------------------- down and status


def _entries(mesh: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    entries = {
        "server": mesh.get("server"),
        "runtime": mesh.get("runtime"),
        "gateway": mesh.get("gateway_process"),
    }
    if "prometheus" in mesh:  # started only where it is installed
        entries["prometheus"] = mesh.get("prometheus")
    if "addons" in mesh:  # meshes started before the addon names had none
        entries["addons"] = mesh.get("addons")
    if not mesh.get("gateway_process"):  # left out by the install profile
        del entries["gateway"]
    return entries


def _stop_unwanted(
    s: MeshSettings,
    mesh: dict[str, Any],
    alive: dict[str, bool],
    wanted: dict[str, bool],
    prometheus: bool,
) -> list[str]:
    """Reconciling: stop the parts the profile no longer wants, the control plane when its
    trace collector or dashboard is to be turned on or off (it comes back on the same store),
    and the addon names when what they forward changes."""
    stopped = []
    server = mesh.get("server") or {}
    if alive["server"] and _server_profile(server.get("argv") or []) != _server_profile(
        server_argv(s)
    ):
        _stop_process(server, 10.0)
        mesh.pop("server", None)
        alive["server"] = False
        stopped.append("control plane")
    forwards = [f.name for f in addon_forwards(s, prometheus)]
    redo = {"addons"} if mesh.get("addon_forwards", forwards) != forwards else set()
    for name, key in (("gateway", "gateway_process"), ("prometheus", "prometheus"),
                      ("addons", "addons")):  # fmt: skip
        if alive[name] and (not wanted[name] or name in redo):
            _stop_process(mesh.get(key), 10.0)
            mesh.pop(key, None)
            alive[name] = False
            stopped.append(name)
    if not wanted["prometheus"]:
        mesh.pop("prometheus_url", None)
    return stopped


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def process_tree(pids: Sequence[int]) -> dict[int, str]:
    """Every process in the trees rooted at ``pids``: pid -> start time (to tell a reused pid)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[int, str] = {}
    todo = [p for p in pids if p in table]
    while todo:
        pid = todo.pop()
        if pid not in out:
            out[pid] = table[pid][1]
            todo += children.get(pid, [])
    return out


def still_running(tree: dict[int, str]) -> list[int]:
    """The processes of a :func:`process_tree` snapshot that still run (zombies do not)."""
    table = _proc_table()
    alive = []
    for pid, started in tree.items():
        if table.get(pid, (0, ""))[1] != started:
            continue
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.append(pid)
    return alive


def mesh_down(s: MeshSettings) -> list[str]:
    """Stop everything and remove the pod network; returns one line per thing done.

    Raises :class:`MeshError` when a process of the mesh still runs afterwards, or its
    network could not be removed because a live runtime (another mesh's) holds the prefix.
    """
    with mesh_lock(s.state_dir):
        return _mesh_down(s)


def _mesh_down(s: MeshSettings) -> list[str]:
    done: list[str] = []
    mesh = load_mesh(s.state_dir) or {}
    entries = _entries(mesh)
    live = [int(e["pid"]) for e in entries.values() if e and process_alive(e)]
    tree = process_tree(live)
    # Runtime first: apps stop, sidecars drain, pods go. Then the gateway, then the server.
    parts = (
        ("runtime", 30.0), ("gateway", 10.0), ("server", 5.0), ("prometheus", 10.0),
        ("addons", 5.0),
    )  # fmt: skip
    for name, grace in parts:
        entry = entries.get(name)
        if process_alive(entry):
            _stop_process(entry, grace)
            done.append(f"stopped the {name} (pid {entry['pid'] if entry else '?'})")
    left = _reap(tree)
    prefix = str(mesh.get("prefix") or s.network.prefix)
    network = s.network
    if prefix != network.prefix:
        network = PodNetworkSettings(
            prefix=prefix,
            pod_cidr=str(mesh.get("pod_cidr") or network.pod_cidr),
            service_cidr=str(mesh.get("service_cidr") or network.service_cidr),
        )
    try:
        lock = PrefixLock.acquire(network.prefix)
    except PrefixBusy:
        raise MeshError(
            "\n".join(
                [
                    *done,
                    f"the pod network {network.prefix!r} was left in place: a running pod "
                    "runtime still holds it (another mesh with the same prefix?)",
                ]
            )
        ) from None
    try:
        report = cleanup_all(network, IptablesTools.default())
    finally:
        lock.release()
    if report.namespaces:
        done.append(f"removed {len(report.namespaces)} pod network namespaces")
    if report.links:
        done.append(f"removed {len(report.links)} links ({', '.join(report.links[-3:])})")
    if report.rules_removed:
        done.append("removed the mesh's iptables rules")
    if report.routes:
        done.append(f"removed the fail-closed routes ({', '.join(report.routes)})")
    shutil.rmtree(run_dir_for(network.prefix), ignore_errors=True)
    shutil.rmtree(s.pods_dir, ignore_errors=True)
    remove_record(network.prefix)
    with contextlib.suppress(FileNotFoundError):
        (s.state_dir / MESH_FILE).unlink()
    if left:
        raise MeshError(
            "\n".join([*done, "these processes of the mesh did not stop: " + ", ".join(left)])
        )
    return done


def _reap(tree: dict[int, str], grace: float = 5.0) -> list[str]:
    """SIGKILL what is left of a stopped mesh's processes; describe any that still run."""
    pids = still_running(tree)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = still_running(tree)
    return [f"{pid} ({' '.join(_cmdline(pid))[:80]})" for pid in pids]


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    healthy: bool
    detail: str
    #: Shown instead of healthy/stopped when set (``not installed``).
    state: str = ""


def mesh_status(s: MeshSettings) -> list[ComponentStatus]:
    """Health of each part of a running mesh (empty when none was started here)."""
    mesh = load_mesh(s.state_dir)
    if not mesh:
        return []
    entries = _entries(mesh)
    out = []
    alive = process_alive(entries["server"])
    api = str(mesh.get("api"))
    out.append(
        ComponentStatus("control plane", alive, alive and _http_ok(f"{api}/healthz"), f"API {api}")
    )
    out = [_with_log(out[0], entries["server"])]
    alive = process_alive(entries["runtime"])
    info = read_status_file(s.state_dir) or {}
    pods = f"{info.get('ready_pods', 0)}/{info.get('pods', 0)} pods ready"
    problems = [str(p) for p in info.get("problems") or []] if alive else []
    if problems:
        pods += "".join(f"\n  {p}" for p in problems)
    out.append(ComponentStatus("pod runtime", alive, alive and bool(info.get("ready")), pods))
    out[1] = _with_log(out[1], entries["runtime"])
    components = mesh.get("components") or {}
    if components.get("ingress gateway", True):
        alive = process_alive(entries.get("gateway"))
        ready_url = str(mesh.get("gateway_readiness"))
        gateway = ComponentStatus(
            "ingress gateway", alive, alive and _http_ok(ready_url), str(mesh.get("gateway"))
        )
        out.append(_with_log(gateway, entries.get("gateway")))
    else:
        out.append(_disabled("ingress gateway"))
    if components.get("trace collector", True):
        query = f"http://127.0.0.1:{mesh.get('trace_query_port') or TRACE_QUERY_PORT}"
        alive = process_alive(entries["server"])
        healthy = alive and _http_ok(f"{query}/api/services")
        detail = f"query API {query}, receivers on {mesh.get('xds_host') or 'the bridge'}"
        if alive and not healthy:
            detail += "\n  not answering: see `trace collector` in the control plane's log"
        out.append(ComponentStatus("trace collector", alive, healthy, detail))
    else:
        out.append(_disabled("trace collector"))
    if components.get("prometheus", True) or mesh.get("prometheus"):
        out.append(_prometheus_status(s, mesh))
    else:
        out.append(_disabled("prometheus"))
    if "addons" in mesh:
        entry = mesh.get("addons")
        alive = process_alive(entry)
        bridge = str(mesh.get("xds_host") or s.network.gateway_ip)
        listed = mesh.get("addon_forwards") or [
            "tracing",
            *(["prometheus"] * ("prometheus" in mesh)),
        ]
        ports = {"tracing": TRACING_QUERY_PORT, "prometheus": PROMETHEUS_PORT}
        healthy = alive and bool(listed) and _tcp_ok(bridge, ports[listed[0]])
        shown = {"tracing": 80, "prometheus": PROMETHEUS_PORT}
        names = ", ".join(f"{n}.istio-system:{shown[n]}" for n in listed)
        out.append(_with_log(ComponentStatus("addon names", alive, healthy, names), entry))
    return out


def _disabled(name: str) -> ComponentStatus:
    return ComponentStatus(
        name, False, True, "left out by the install profile (`pilotfish install --set ...`)",
        state="not enabled",
    )  # fmt: skip


def _prometheus_status(s: MeshSettings, mesh: dict[str, Any]) -> ComponentStatus:
    entry = mesh.get("prometheus")
    if not entry:
        if prometheus_binary(s) is None:
            return ComponentStatus(
                "prometheus", False, True,
                f"not installed; the mesh runs without it ({prom.INSTALL_HINT}, then "
                "`pilotfish up`)", state="not installed",
            )  # fmt: skip
        return ComponentStatus(
            "prometheus", False, False, "installed but not started: run `pilotfish up`"
        )
    url = str(mesh.get("prometheus_url") or s.prometheus_url)
    alive = process_alive(entry)
    healthy = alive and _http_ok(f"{url}/-/ready")
    detail = url
    if healthy:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
            active = httpx.get(f"{url}/api/v1/targets?state=active", timeout=2.0).json()
            targets = active["data"]["activeTargets"]
            up = sum(1 for t in targets if t.get("health") == "up")
            detail += f" ({up}/{len(targets)} targets up)"
    return _with_log(ComponentStatus("prometheus", alive, healthy, detail), entry)


def _with_log(part: ComponentStatus, entry: dict[str, Any] | None) -> ComponentStatus:
    """A part that is not healthy: add the last line of its log (what it said last)."""
    if part.healthy or not entry or not entry.get("log"):
        return part
    last = _tail(entry["log"], 1).strip()
    return replace(part, detail=f"{part.detail}\n  last log line: {last}") if last else part
