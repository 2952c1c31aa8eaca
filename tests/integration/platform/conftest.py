"""Fixtures for pod-runtime tests: root checks, and a private bridge and range per test.

Every test gets its own prefix (``t`` + 5 random characters, never ``pf``) and its own /24 in
10.200.0.0-10.249.255.0 that no host route overlaps, so these tests run in parallel with each
other and with a real runtime on its default ``pf`` network. Everything is removed with
``cleanup_all`` in a ``finally``, even when the test fails.
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
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilotfish.platform.local.network import PodNetwork, PodNetworkSettings, cleanup_all
from pilotfish.platform.local.process import PodProcess
from pilotfish.platform.local.users import MeshUsers, ensure_mesh_users

_rng = random.SystemRandom()


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "pods need Linux network namespaces"
    if os.geteuid() != 0:
        return "pods need root (network namespaces, veths, iptables); run as root"
    for tool in ("ip", "iptables-restore", "iptables-save", "setpriv", "useradd"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (see scripts/install-system-deps.sh)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, check=False)
    if probe.returncode != 0:
        return "`ip netns` is unavailable on this machine"
    return None


SKIP_REASON = _skip_reason()


@pytest.fixture(autouse=True)
def _requires_pods() -> None:
    if SKIP_REASON is not None:
        pytest.skip(SKIP_REASON)


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(
        ["ip", "-j", "-4", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    nets = []
    for route in json.loads(out or "[]"):
        dst = str(route.get("dst", ""))
        if dst and dst != "default":
            nets.append(ipaddress.IPv4Network(dst, strict=False))
    return nets


def new_settings() -> PodNetworkSettings:
    """Settings with a fresh prefix and a /24 that nothing on the host uses."""
    used = _used_networks()
    for _ in range(200):
        suffix = "".join(_rng.choice(string.ascii_lowercase + string.digits) for _ in range(5))
        net = ipaddress.IPv4Network(f"10.{_rng.randint(200, 249)}.{_rng.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return PodNetworkSettings(prefix=f"t{suffix}", pod_cidr=str(net))
    raise RuntimeError("no free /24 for a test pod network")


@pytest.fixture
def pod_network() -> Iterator[PodNetwork]:
    """A set-up private pod network, torn down completely afterwards."""
    network = PodNetwork(new_settings())
    try:
        network.setup()
        yield network
    finally:
        cleanup_all(network.settings)


@pytest.fixture(scope="session")
def mesh_users() -> MeshUsers:
    if SKIP_REASON is not None:
        pytest.skip(SKIP_REASON)
    return ensure_mesh_users()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


@pytest.fixture
def started(pod_network: PodNetwork) -> Iterator[list[PodProcess]]:
    """Processes a test started; stopped (whole process group) before the network goes away."""
    procs: list[PodProcess] = []
    try:
        yield procs
    finally:
        for proc in procs:
            proc.stop(grace=2.0)
