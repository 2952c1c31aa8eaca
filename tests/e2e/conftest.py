"""A whole local mesh per test module: ``pilotfish up`` with a private prefix, range and ports.

:func:`bring_up` runs the real ``pilotfish up`` (as a process), yields a :class:`Mesh` to drive
it with the real CLI, and always ends with ``pilotfish down`` followed by a check that nothing
of the mesh is left on the host: network namespaces, links, iptables rules with its marker,
``/etc/netns`` entries and processes. These tests need root; they run one at a time.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import string
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pluggy
import pytest

from tests.conftest import _free_port

REPO = Path(__file__).resolve().parents[2]
_rng = random.SystemRandom()


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "pods need Linux network namespaces"
    if os.geteuid() != 0:
        return "pods need root (network namespaces, veths, iptables)"
    for tool in ("ip", "iptables-restore", "setpriv", "useradd", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (see scripts/install-system-deps.sh)"
    return None


SKIP_REASON = _skip_reason()


def free_port() -> int:
    return _free_port()


def _free_cidr() -> str:
    out = subprocess.run(
        ["ip", "-j", "-4", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    used = [
        ipaddress.IPv4Network(str(r["dst"]), strict=False)
        for r in json.loads(out or "[]")
        if r.get("dst") and r.get("dst") != "default"
    ]
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{_rng.randint(200, 249)}.{_rng.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return str(net)
    raise RuntimeError("no free /24 for the e2e pod network")


@dataclass
class Mesh:
    root: Path
    prefix: str
    pod_cidr: str
    api_port: int
    gateway_port: int
    env: dict[str, str]
    prometheus_port: int = 0
    trace_query_port: int = 16686
    dashboard_port: int = 20001
    #: Every pod name seen, to find app processes a pod left behind (by their HOSTNAME).
    seen_pods: set[str] = field(default_factory=set)
    #: The ports, prefix and ranges given to ``up`` (to run ``up``/``install`` again).
    up_args: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def run(
        self,
        module: str,
        *args: str,
        check: bool = True,
        timeout: float = 120,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [sys.executable, "-m", module, *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"{module} {' '.join(args)}: {res.returncode}\n{res.stdout}\n{res.stderr}"
            )
        return res

    def cli(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The main ``pilotfish`` CLI (apply, get, label, delete, ...)."""
        return self.run("pilotfish.cli.main", *args, check=check, input=input)

    def local(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The local-mesh commands (up, install, down, status, logs, exec), with its dirs."""
        dirs = ("--data-dir", str(self.data_dir))
        module = "pilotfish.cli.main" if args[0] == "install" else "pilotfish.cli.runtime_cmds"
        return self.run(module, args[0], *dirs, *args[1:], check=check)

    def pods(self, namespace: str = "default") -> list[dict[str, Any]]:
        out = self.cli("get", "pods", "-n", namespace, "-o", "json").stdout
        items = list(json.loads(out).get("items") or [])
        self.seen_pods.update(p["metadata"]["name"] for p in items)
        return items

    def wait_pods_ready(
        self, namespace: str, count: int, timeout: float = 90
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        pods: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            pods = self.pods(namespace)
            ready = [p for p in pods if _ready(p)]
            if len(pods) == count and len(ready) == count:
                return pods
            time.sleep(0.3)
        raise AssertionError(
            f"{namespace}: not {count} ready pods after {timeout}s: "
            + json.dumps([(p["metadata"]["name"], p.get("status")) for p in pods], indent=1)[:4000]
        )

    def pod_named(self, prefix: str, namespace: str = "default") -> str:
        names = [p["metadata"]["name"] for p in self.pods(namespace)]
        match = [n for n in names if n.startswith(prefix)]
        assert match, f"no pod {prefix}* in {names}"
        return match[0]

    def leftovers(self) -> list[str]:
        """Everything of this mesh still on the host (empty when it is clean)."""
        found: list[str] = []
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        found += [
            f"netns {line.split()[0]}"
            for line in netns.splitlines()
            if line.startswith(f"{self.prefix}-")
        ]
        links = json.loads(
            subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True).stdout
            or "[]"
        )
        found += [
            f"link {link['ifname']}"
            for link in links
            if str(link.get("ifname", "")).startswith(self.prefix)
        ]
        for save in ("iptables-nft-save", "iptables-legacy-save"):
            if shutil.which(save):
                rules = subprocess.run([save], capture_output=True, text=True).stdout
                found += [
                    f"{save}: {r}"
                    for r in rules.splitlines()
                    if f"pilotfish:{self.prefix}" in r or self.prefix.upper() + "-" in r
                ]
        routes = subprocess.run(
            ["ip", "route", "show", "type", "unreachable"], capture_output=True, text=True
        ).stdout
        found += [f"route {r}" for r in routes.splitlines() if self.pod_cidr in r]
        if Path("/etc/netns").is_dir():
            found += [
                f"/etc/netns/{p.name}"
                for p in Path("/etc/netns").iterdir()
                if p.name.startswith(f"{self.prefix}-")
            ]
        markers = (str(self.root), f"/run/pilotfish/{self.prefix}/")
        hostnames = {f"HOSTNAME={name}".encode() for name in self.seen_pods}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                env = set((proc / "environ").read_bytes().split(b"\0"))
            except OSError:
                continue
            if any(m in cmd for m in markers) or env & hostnames:
                found.append(f"process {proc.name}: {cmd[:200]}")
        return found

    def diagnose(self) -> str:
        """What a failed test's report shows of the mesh: pods, the logs of those not ready,
        and the tails of the control plane's and the runtime's logs (gone after ``down``)."""
        out: list[str] = []
        res = self.cli("get", "pods", "-A", "-o", "json", check=False)
        try:
            pods = list(json.loads(res.stdout).get("items") or [])
        except ValueError:
            pods = []
            out.append(f"get pods: {res.returncode} {res.stderr.strip()[:500]}")
        pods_dir = self.root / "state" / "pods"
        for pod in pods:
            meta, status = pod.get("metadata") or {}, pod.get("status") or {}
            ns, name = meta.get("namespace"), meta.get("name")
            containers = [
                f"{c.get('name')}={next(iter(c.get('state') or {}), '?')}"
                f"{'' if c.get('ready') else '(not ready)'}/{c.get('restartCount', 0)}"
                for c in status.get("containerStatuses") or []
            ]
            out.append(f"pod {ns}/{name}: {status.get('phase')} ready={_ready(pod)} "
                       f"{' '.join(containers)}")  # fmt: skip
            if _ready(pod):
                continue
            for log in sorted((pods_dir / str(ns) / str(name)).glob("*.log")):
                lines = log.read_text(errors="replace").splitlines()[-15:]
                out += [f"  {log.name}: {line}" for line in lines]
        for name, count in (("runtime.log", 40), ("server.log", 30)):
            path = self.root / "state" / "logs" / name
            try:
                lines = path.read_text(errors="replace").splitlines()[-count:]
            except OSError as exc:
                lines = [str(exc)]
            out += [f"{name}: {line}" for line in lines]
        return "\n".join(out)


def _ready(pod: dict[str, Any]) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


@contextmanager
def bring_up(root: Path, command: tuple[str, ...] = ("up",)) -> Iterator[Mesh]:
    """``pilotfish up`` (or ``command``, e.g. ``install --set profile=minimal -y``) with private
    names and ports; ``down`` and a leftovers check after."""
    if SKIP_REASON is not None:
        pytest.skip(SKIP_REASON)
    prefix = "e" + "".join(_rng.choice(string.ascii_lowercase) for _ in range(4))
    mesh = Mesh(
        root=root,
        prefix=prefix,
        pod_cidr=_free_cidr(),
        api_port=free_port(),
        gateway_port=free_port(),
        prometheus_port=free_port(),
        trace_query_port=free_port(),
        dashboard_port=free_port(),
        env={**os.environ, "PILOTFISH_CONFIG": str(root / "config")},
    )
    args = [
        "--listen",
        f"127.0.0.1:{mesh.api_port}",
        "--xds-port",
        str(free_port()),
        "--gateway-port",
        f"80:{mesh.gateway_port}",
        "--gateway-port",
        f"443:{free_port()}",
        "--gateway-port",
        f"8080:{mesh.gateway_port}",
        "--gateway-admin-port",
        str(free_port()),
        "--gateway-agent-port",
        str(free_port()),
        "--gateway-readiness-port",
        str(free_port()),
        "--prometheus-port",
        str(mesh.prometheus_port),
        "--trace-query-port",
        str(mesh.trace_query_port),
        "--dashboard-port",
        str(mesh.dashboard_port),
        "--prefix",
        prefix,
        "--pod-cidr",
        mesh.pod_cidr,
        "--workdir",
        str(REPO),
    ]
    mesh.up_args = args
    try:
        mesh.local(*command, *args)
        yield mesh
    finally:
        mesh.local("down", check=False)
        left = mesh.leftovers()
        assert left == [], "left behind after `pilotfish down`:\n" + "\n".join(left)


def get(url: str, cookies: dict[str, str] | None = None, timeout: float = 10) -> httpx.Response:
    return httpx.get(url, cookies=cookies, timeout=timeout)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """A failed test's report carries the mesh as it was (its logs go away with ``down``)."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    for value in funcargs.values():
        if isinstance(value, Mesh):
            try:
                text = value.diagnose()
            except Exception as exc:  # the report must not hide the failure itself
                text = f"no diagnosis: {exc!r}"
            report.sections.append(("mesh at the failure", text))
