"""A throwaway PostgreSQL cluster for tests: Debian's server binaries, no system service.

``postgres_cluster`` (session scope, one per pytest-xdist worker) runs ``initdb`` in a temp
directory, starts the server with ``pg_ctl`` on a free loopback port (trust authentication,
no fsync: nothing here must survive the run), and at the end stops it and removes the
directory. It skips, saying why, only when the server binaries are not installed
(``scripts/install-system-deps.sh`` installs Debian's ``postgresql``). PostgreSQL refuses to
run as root, so under root the cluster runs as the ``postgres`` user (or ``nobody``).

``cluster.new_database()`` creates an empty database and returns its URL: each store under
test gets its own.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUPERUSER = "pilotfish"


def server_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest Debian version first)."""

    def version(initdb: str) -> int:
        name = Path(initdb).parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl", path=str(Path(on_path).parent)):
        return Path(on_path).parent
    return None


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists")


@dataclass
class PostgresCluster:
    bin_dir: Path
    root: Path
    port: int
    user: pwd.struct_passwd | None
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        kwargs = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        res = subprocess.run(
            [str(self.bin_dir / argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            **kwargs,  # type: ignore[arg-type]
        )
        if res.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed:\n{res.stdout}\n{res.stderr}\n{log}")

    def start(self, port: Callable[[], int]) -> None:
        """initdb, then start on a port from ``port()``; another one if that one was taken
        meanwhile (other test runs share the port range)."""
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--no-sync",
            "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        for attempt in range(5):
            self.port = port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port}"
                f" -c unix_socket_directories={self.root}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=300"
            )
            try:
                self._run(
                    "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                    "-w", "-t", "60", "start",
                )  # fmt: skip
                return
            except RuntimeError:
                if attempt == 4 or "could not bind" not in self.log.read_text():
                    raise
                self.log.unlink()

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def new_database(self) -> str:
        """An empty database of its own; returns its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)


@contextlib.contextmanager
def throwaway_cluster(bin_dir: Path, port: Callable[[], int]) -> Iterator[PostgresCluster]:
    """initdb and start a cluster in a new temp directory (as ``postgres`` or ``nobody`` under
    root); stopped and removed on exit. Used by the fixture below and by bench/replicas.py."""
    user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="pilotfish-pg-"))
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    cluster = PostgresCluster(bin_dir, root, 0, user)
    try:
        started = time.monotonic()
        cluster.start(port)
        print(f"PostgreSQL on port {cluster.port} in {time.monotonic() - started:.1f}s")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    bin_dir = server_binaries()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed: install Debian's"
            " postgresql package (scripts/install-system-deps.sh does)"
        )
    from tests.conftest import _free_port

    with throwaway_cluster(bin_dir, _free_port) as cluster:
        yield cluster
