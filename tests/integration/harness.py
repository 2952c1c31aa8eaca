"""Real processes for integration tests: a control plane (``pilotfish server`` with a SQLite
store), sidecar agents (``pilotfish proxy`` with real Envoy, explicit mode on loopback) and
small HTTP backends. Everything started here is stopped by the fixtures that started it.

The control plane serves xDS and the CA over TLS, as it does by default, and sidecars verify it
with its mesh roots (``--ca-file``), so the suite runs the default; a test that needs the
plaintext option starts its control plane with ``--xds-plaintext`` (sidecars then connect
without TLS)."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import cast

import httpx
import pytest

from pilotfish.agent.launch import PROXY_MODULE, agent_argv
from pilotfish.agent.settings import AgentSettings, HostPort, IdentitySettings, XdsApi, XdsTls
from pilotfish.api.duration import parse_duration
from pilotfish.api.networking import auto_registered_name
from pilotfish.api.node import NodeInfo


@dataclass
class ControlPlane:
    data_dir: Path
    config: Path
    url: str
    api_port: int
    xds_port: int
    proc: subprocess.Popen[bytes]
    log: Path
    #: xDS and the CA over TLS (the default); False with ``--xds-plaintext``.
    tls: bool = True

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PILOTFISH_CONFIG": str(self.config)}

    @property
    def roots(self) -> Path:
        """The mesh roots (what agents pass as ``--ca-file``)."""
        return self.data_dir / "ca" / "mesh-roots.pem"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def cli(
        self, *args: str, input: str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `pilotfish` CLI against this control plane."""
        res = subprocess.run(
            [sys.executable, "-m", "pilotfish.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            timeout=60,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"pilotfish {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
        return res

    def revision(self) -> int:
        return int(httpx.get(f"{self.url}/version", timeout=5).json()["revision"])

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_control_plane(
    data_dir: Path,
    config: Path,
    api_port: int,
    xds_port: int,
    extra_args: tuple[str, ...] = (),
    *,
    plaintext: bool = False,
    xds_host: str = "127.0.0.1",
) -> ControlPlane:
    """``pilotfish server`` on loopback; xDS over TLS unless ``plaintext`` (or
    ``--xds-plaintext`` in ``extra_args``). The trace collector's and the dashboard's fixed
    ports would collide between parallel tests: they are off unless ``extra_args`` turn them
    on. ``xds_host``: another loopback address gives a replica receivers of its own on the
    collector's fixed ports."""
    if "--trace-collector" not in extra_args:
        extra_args = (*extra_args, "--no-trace-collector")
    if "--dashboard-listen" not in extra_args:  # Kiali's fixed port would collide too
        extra_args = (*extra_args, "--dashboard-listen", "")
    if plaintext and "--xds-plaintext" not in extra_args:
        extra_args = (*extra_args, "--xds-plaintext")
    tls = "--xds-plaintext" not in extra_args
    log = data_dir.parent / f"server-{api_port}.log"
    env = {**os.environ, "PILOTFISH_CONFIG": str(config)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pilotfish.cli.main",
                "server",
                "--data-dir",
                str(data_dir),
                "--listen",
                f"127.0.0.1:{api_port}",
                "--xds-listen",
                f"{xds_host}:{xds_port}",
                *extra_args,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api_tls = "--api-tls" in extra_args
    url = f"{'https' if api_tls else 'http'}://127.0.0.1:{api_port}"
    roots = data_dir / "ca" / "mesh-roots.pem"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"control plane exited:\n{log.read_text()}")
        try:
            verify: ssl.SSLContext | bool = True
            if api_tls:
                if not roots.exists():
                    raise httpx.ConnectError("no roots yet")
                verify = ssl.create_default_context(cafile=str(roots))
            health = httpx.get(f"{url}/healthz", timeout=1, verify=verify)
            if health.status_code == 200 and config.exists():
                return ControlPlane(data_dir, config, url, api_port, xds_port, proc, log, tls)
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"control plane did not become ready:\n{log.read_text()}")


def start_replica(
    root: Path,
    name: str,
    store_url: str,
    api_port: int,
    xds_port: int,
    extra_args: tuple[str, ...] = (),
) -> ControlPlane:
    """One control-plane replica on the PostgreSQL database ``store_url``: its own data
    directory (``root/name``), the CA directory shared with the others (``root/shared-ca``;
    the first replica started creates the mesh root there). Starting it again with the same
    ports restarts the same replica."""
    (root / name).mkdir(exist_ok=True)
    return start_control_plane(
        root / name / "data",
        root / name / "config",
        api_port,
        xds_port,
        ("--store", store_url, "--ca-dir", str(root / "shared-ca"), *extra_args),
    )


@pytest.fixture
def control_plane_factory(
    tmp_path: Path, free_port: Callable[[], int]
) -> Iterator[Callable[[], ControlPlane]]:
    started: list[ControlPlane] = []
    data_dir = tmp_path / "data"
    config = tmp_path / "config"

    def factory(*extra_args: str) -> ControlPlane:
        cp = start_control_plane(data_dir, config, free_port(), free_port(), extra_args)
        started.append(cp)
        return cp

    try:
        yield factory
    finally:
        for cp in started:
            cp.kill(signal.SIGKILL)


@pytest.fixture
def control_plane(control_plane_factory: Callable[[], ControlPlane]) -> ControlPlane:
    return control_plane_factory()


# ---------------------------------------------------------------------------- sidecars

BACKEND = Path(__file__).with_name("backend.py")

#: The ``reviews`` Service most mesh tests route to (port 9080, selecting ``app: reviews``).
REVIEWS_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
"""


def filler_services(count: int, port: int) -> str:
    """``count`` Services ``filler-<i>`` on ``port`` selecting no workload, each a document
    starting with ``---``: a mesh bigger than what a test calls."""
    return "".join(
        f"""---
apiVersion: v1
kind: Service
metadata: {{name: filler-{i}}}
spec:
  selector: {{app: filler-{i}}}
  ports: [{{name: http, port: {port}}}]
"""
        for i in range(count)
    )


def free_loopback_ip(port: int = 9080) -> str:
    """A random 127.x.y.z on which ``port`` is free (tests run in parallel)."""
    import random
    import socket

    rng = random.SystemRandom()
    for _ in range(100):
        ip = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        with socket.socket() as s:
            try:
                s.bind((ip, port))
            except OSError:
                continue
        return ip
    raise RuntimeError("no free loopback address")


def app_listening(ip: str, port: int) -> bool:
    """Whether a TCP connection to ``ip:port`` is accepted."""
    import socket

    try:
        socket.create_connection((ip, port), timeout=1).close()
    except OSError:
        return False
    return True


def eventually(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Sidecar:
    name: str
    ip: str
    outbound_port: int
    readiness_port: int
    admin_port: int
    proc: subprocess.Popen[bytes]
    log: Path
    #: The sidecar's inbound listener for the app port (``IP:inbound_port``), if any.
    inbound_port: int | None = None
    #: Gateways: server port -> bound port on ``ip``.
    gateway_ports: dict[int, int] | None = None
    #: The agent's own port (``/healthz/ready`` answers with the reason when not ready).
    agent_port: int | None = None

    def request(
        self, host: str, path: str = "/", headers: dict[str, str] | None = None, method: str = "GET"
    ) -> httpx.Response:
        """A request from this app through its sidecar to ``host`` (e.g. ``reviews:9080``)."""
        return httpx.request(
            method,
            f"http://127.0.0.1:{self.outbound_port}{path}",
            headers={"Host": host, **(headers or {})},
            timeout=10,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class Mesh:
    """A control plane plus sidecars with backends, all on loopback."""

    def __init__(
        self,
        cp: ControlPlane,
        tmp: Path,
        free_port: Callable[[], int],
        replicas: Sequence[ControlPlane] = (),
    ) -> None:
        """``replicas``: further control-plane replicas the proxies know (after ``cp``)."""
        self.cp = cp
        self.replicas = tuple(replicas)
        self.tmp = tmp
        self.free_port = free_port
        self.sidecars: list[Sidecar] = []

    def live(self) -> ControlPlane:
        """The first control plane (``cp``, then ``replicas``) whose process still runs."""
        for cp in (self.cp, *self.replicas):
            if cp.proc.poll() is None:
                return cp
        raise AssertionError("no control-plane replica is running")

    def apply(self, yaml_text: str) -> None:
        res = self.live().cli("apply", "-f", "-", input=yaml_text)
        if res.returncode != 0:
            raise AssertionError(f"apply failed: {res.stderr}")

    def token(
        self, namespace: str, service_account: str, ttl: str = "1h", workload_group: str = ""
    ) -> Path:
        """A workload token file from `pilotfish token create` (bound to ``workload_group``)."""
        bound = ("--workload-group", workload_group) if workload_group else ()
        res = self.live().cli(
            "token", "create", "-n", namespace, "--service-account", service_account,
            "--ttl", ttl, *bound, check=True,
        )  # fmt: skip
        path = self.tmp / f"token-{namespace}-{service_account}-{workload_group}"
        path.write_text(res.stdout.strip() + "\n")
        return path

    def add(
        self,
        name: str,
        labels: dict[str, str],
        *,
        app_port: int | None = 9080,
        namespace: str = "default",
        service_account: str = "default",
        xds_api: str = "delta",
        mtls: bool = False,
        cert_ttl: str | None = None,
        proxy_type: str = "sidecar",
        gateway_ports: tuple[int, ...] = (),
        extra_args: tuple[str, ...] = (),
        wait: bool = True,
        app_command: tuple[str, ...] | None = None,
        workload_group: str | None = None,
        group_token: str | None = None,
    ) -> Sidecar:
        """Start a proxy with a backend app. ``mtls``: with a workload token (mesh
        certificate); ``proxy_type="router"``: a gateway binding each of ``gateway_ports``
        on a free port of its own loopback IP (no app); ``app_command``: run this app instead
        of the HTTP backend (``{ip}`` and ``{port}`` in it are filled in)."""
        ip = free_loopback_ip(app_port or 9080)
        # A workload registering into a group shows a token bound to it (``group_token``
        # chooses another group's, to be refused).
        group_token = group_token if group_token is not None else (workload_group or "")
        if workload_group is not None:
            # Registers into the WorkloadGroup under Istio's name for it.
            name = auto_registered_name(workload_group, ip)
            extra_args = (*extra_args, "--workload-group", workload_group)
        outbound, readiness, admin, agent = (self.free_port() for _ in range(4))
        bound: dict[int, int] = {}
        inbound: dict[int, int] = {}
        app: tuple[str, ...] = ()
        if proxy_type == "router":
            bound = {port: self.free_port() for port in gateway_ports}
            app_port = None
        inbound_port = self.free_port() if app_port is not None else None
        if app_port is not None and inbound_port is not None:
            inbound = {app_port: inbound_port}
            app = (
                sys.executable, str(BACKEND), "--host", ip, "--port", str(app_port),
                "--name", name, "--version", labels.get("version", ""),
            )  # fmt: skip
            if app_command is not None:
                app = tuple(a.format(ip=ip, port=app_port) for a in app_command)
        router = proxy_type == "router"
        node = NodeInfo(
            proxy_type="router" if router else "sidecar",
            ip=ip,
            pod_name=name,
            namespace=namespace,
            labels=dict(labels),
            service_account=service_account,
            interception_mode="NONE",
            outbound_port=None if router else outbound,
            inbound_ports=inbound,
            gateway_ports=bound,
            bind_address=ip if router else "0.0.0.0",
        )
        # Options in extra_args that choose the xDS TLS replace the control plane's own.
        own_tls = not {"--ca-file", "--plaintext"} & set(extra_args)
        settings = AgentSettings(
            node=node,
            work_dir=self.tmp / f"proxy-{name}",
            discovery_address=HostPort("127.0.0.1", self.cp.xds_port),
            discovery_fallbacks=tuple(HostPort("127.0.0.1", r.xds_port) for r in self.replicas),
            xds_tls=XdsTls(self.cp.roots) if own_tls and self.cp.tls else None,
            identity=IdentitySettings(
                token_file=self.token(namespace, service_account, workload_group=group_token),
                cert_ttl=timedelta(seconds=parse_duration(cert_ttl or "24h")),
            )
            if mtls or group_token
            else None,
            xds_api=cast(XdsApi, xds_api),
            admin_port=admin,
            readiness_port=readiness,
            agent_port=agent,
            concurrency=1,
            drain_seconds=1.0,
            app_command=app,
        )
        argv = agent_argv(settings)
        # extra_args go before the app command (after ``--``).
        at = argv.index("--") if app else len(argv)
        argv[at:at] = extra_args
        cmd = [sys.executable, "-m", PROXY_MODULE, "proxy", *argv]
        log = self.tmp / f"proxy-{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=self.cp.env
            )
        sc = Sidecar(
            name, ip, outbound, readiness, admin, proc, log, inbound_port, bound or None, agent
        )
        self.sidecars.append(sc)

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"proxy {name} exited:\n{log.read_text()}")
            if (
                httpx.get(f"http://127.0.0.1:{readiness}/healthz/ready", timeout=1).status_code
                != 200
            ):
                return False
            # The proxy's readiness is Envoy's; the app the agent started may still be loading
            # (a request then gets Envoy's 503 for a refused connection), so wait for it too,
            # as a pod's readiness probe would.
            return not app or app_port is None or app_listening(ip, app_port)

        if wait:
            eventually(ready, 30, f"sidecar {name} ready")
        return sc

    def stop(self) -> None:
        for sc in self.sidecars:
            sc.stop()


@pytest.fixture
def mesh(
    control_plane: ControlPlane, tmp_path: Path, free_port: Callable[[], int]
) -> Iterator[Mesh]:
    m = Mesh(control_plane, tmp_path, free_port)
    try:
        yield m
    finally:
        m.stop()
