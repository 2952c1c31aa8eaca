"""`make demo` from a checkout inside a private directory (mode 0700, as ``/root`` is).

The checkout (sources and the built virtualenv, hard-linked so the test stays fast) is copied
under a 0700 directory, then its own ``scripts/demo.sh`` runs with a private HOME: the
sidecars' Envoy (the proxy user) and the apps (the app user) cannot reach anything in there,
yet every Bookinfo pod must become ready and the product page must show reviews. Then
``pilotfish down`` - with no flags, found through the CLI context - must leave nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pilotfish.platform.local.hostmeshes import port_problem, running_meshes
from tests.e2e.conftest import REPO, SKIP_REASON, Mesh

pytestmark = pytest.mark.e2e

#: What `make demo` needs from a checkout.
ENTRIES = ("pilotfish", "samples", "scripts", "Makefile", "pyproject.toml", "README.md")
#: The demo's fixed ports (API, gateway) and ranges: they must be free for this test.
DEMO_PORTS = (
    ("127.0.0.1", 15014), ("127.0.0.1", 8080), ("127.0.0.1", 8443), ("127.0.0.1", 9090),
    ("127.0.0.1", 16686),
)  # fmt: skip


def _copy_venv(src: Path, dst: Path) -> None:
    """Hard links where the filesystem allows them (fast, no space), a copy otherwise."""
    if subprocess.run(["cp", "-al", str(src), str(dst)], check=False).returncode != 0:
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, symlinks=True)


@pytest.fixture
def private_checkout() -> Iterator[Path]:
    if SKIP_REASON is not None:
        pytest.skip(SKIP_REASON)
    if running_meshes():
        pytest.fail("a Pilotfish mesh is running on this host; the demo needs its defaults")
    busy = [p for a, port in DEMO_PORTS if (p := port_problem(a, port))]
    assert not busy, f"the demo's ports are in use: {busy}"
    venv = Path(sys.prefix)
    # Beside the repository, on its filesystem (hard links); mkdtemp makes it mode 0700.
    root = Path(tempfile.mkdtemp(prefix=".private-", dir=REPO))
    assert root.stat().st_mode & 0o777 == 0o700
    checkout = root / "pilotfish"
    checkout.mkdir(mode=0o755)
    checkout.chmod(0o755)
    for name in ENTRIES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, checkout / name)
    _copy_venv(venv, checkout / ".venv")
    try:
        yield checkout
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_make_demo_from_a_private_directory_then_down_without_flags(
    private_checkout: Path,
) -> None:
    root = private_checkout.parent
    home = root / "home"
    home.mkdir(mode=0o700)
    env = {
        **os.environ,
        "HOME": str(home),
        "PILOTFISH_CONFIG": str(home / ".pilotfish" / "config"),
        "PYTHONPATH": str(private_checkout),  # this copy's code, not the repository's
    }
    mesh = Mesh(root, "pf", "10.244.0.0/16", 15014, 8080, env)
    python = private_checkout / ".venv" / "bin" / "python"
    where = subprocess.run(
        [str(python), "-P", "-c", "import pilotfish; print(pilotfish.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(private_checkout)), where
    try:
        demo = subprocess.run(
            ["bash", "scripts/demo.sh"],
            cwd=private_checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "Bookinfo is up" in demo.stdout
        # The demo profile is the installed operator: nothing overlays its mesh config, and
        # Bookinfo's containers have commands, so their images warn about nothing.
        assert "Warning" not in demo.stderr, demo.stderr[-3000:]
        page = httpx.get("http://127.0.0.1:8080/productpage", timeout=15).text
        assert "<title>Simple Bookstore App</title>" in page
        assert "Error fetching product reviews" not in page
        assert "Book Reviews" in page
        # The README tour's curl lines work as written, shell quoting and all.
        readme = (private_checkout / "README.md").read_text()
        curls = [line for line in readme.splitlines() if line.startswith("curl ")]
        assert curls, "the README's tour has no curl line"
        for line in curls:
            res = subprocess.run(
                ["bash", "-c", line], capture_output=True, text=True, timeout=30, check=False
            )
            assert res.returncode == 0, (line, res.stderr[-500:])
            assert res.stdout.startswith("{") and '"error"' not in res.stdout, (line, res.stdout)
    finally:
        down = subprocess.run(
            [str(python), "-P", "-m", "pilotfish.cli.main", "down"],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        left = mesh.leftovers()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Pilotfish is down." in down.stdout
    assert left == [], "left behind after `pilotfish down`:\n" + "\n".join(left)
