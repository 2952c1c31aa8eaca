"""Sidecar agents forked from one warm parent (a zygote), so pods share what agents have in common.

A sidecar agent is a Python process that loads asyncio, gRPC, cryptography and Envoy's SDS
protos before doing anything of its own: ~57 MB RSS and 0.1-0.3 s of imports each time. The
runtime instead starts one zygote (``python -m pilotfish.platform.local.zygote SOCKET``) that
imports all of that once, freezes it out of the garbage collector's reach (``gc.freeze``), and
then forks one child per sidecar. A child starts in microseconds and shares the parent's pages
copy-on-write: in PSS (proportional set size) those pages are counted once across the agents
that share them, so a pod's marginal cost is what its own agent writes. The numbers are in
``docs/benchmarks.md`` ("Agent memory"); ``bench/agent_memory.py`` measures them.

Each child is an ordinary, separate agent (one pod, one process, one key): it leaves the
zygote's session, enters a private mount namespace and the pod's network namespace (what
``ip netns exec`` does, ``/etc/netns/<ns>/*`` bound over ``/etc`` included), binds the
sidecar's own hosts file over ``/etc/hosts``, takes the proxy group, sends its output to the
pod's ``istio-proxy.log`` and runs ``pilotfish proxy`` with the pod's options. Nothing of one
pod's identity is ever in the zygote or in another pod's agent: the key is made in the child
after the fork. ``pilotfish proxy`` run alone (a VM) is the same agent, started normally.

Protocol, on a Unix socket only root can open: the runtime sends one JSON line (a
:class:`SpawnRequest`) per connection; the zygote answers ``{"pid": N}`` (or ``{"error": ..}``)
and, when that agent exits, ``{"exit": code}`` (``Popen.returncode`` style), then closes. The
zygote is single-threaded (forking is safe only then) and never creates a gRPC channel,
server, event loop or key: gRPC starts its threads, and OpenSSL seeds its generator, in each
child.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import gc
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("pilotfish.runtime.zygote")

__all__ = ["SpawnRequest", "Zygote", "ZygoteClient", "ZygoteProcess", "serve"]

#: What the zygote loads before forking: the agent and everything a sidecar agent uses.
PRELOAD = (
    "pilotfish.cli.proxy_cmd",
    "pilotfish.agent.agent",
    "pilotfish.agent.workload_identity",
    "asyncio.unix_events",
    "asyncio.subprocess",
    "urllib.parse",
)
_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MS_REC = 16384
_MS_SLAVE = 1 << 19
_PR_SET_PDEATHSIG = 1
#: The runtime's pid, passed to the zygote it starts (see :func:`die_with_parent`).
PARENT_ENV = "PILOTFISH_ZYGOTE_PARENT"
_NETNS_DIR = Path("/run/netns")
_ETC_NETNS = Path("/etc/netns")


@dataclass(frozen=True)
class SpawnRequest:
    """One sidecar agent to fork."""

    #: ``pilotfish proxy`` options (what :func:`pilotfish.agent.launch.agent_argv` gives).
    argv: tuple[str, ...]
    netns: str
    log_path: str
    #: The agent's group (the proxy group: capture rules let its connections through).
    gid: int
    #: The agent's whole environment.
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    #: ``(source, target)`` bind mounts made in the agent's own mount namespace, in order.
    binds: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self)) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SpawnRequest:
        data = json.loads(text)
        return cls(
            argv=tuple(str(a) for a in data["argv"]),
            netns=str(data["netns"]),
            log_path=str(data["log_path"]),
            gid=int(data["gid"]),
            env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
            cwd=str(data.get("cwd") or "/"),
            binds=tuple((str(s), str(t)) for s, t in data.get("binds") or ()),
        )


# ---------------------------------------------------------------------------- the child


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _bind(libc: ctypes.CDLL, source: str, target: str) -> None:
    _check(libc.mount(source.encode(), target.encode(), None, _MS_BIND, None), f"bind {target}")


def _enter_pod(request: SpawnRequest) -> None:
    """In the forked child: become the pod's sidecar agent process (see the module doc)."""
    libc = _libc()
    os.setsid()
    _check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # Mounts made here stay here (as ``ip netns exec`` does it).
    _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_SLAVE, None), "mount --make-rslave /")
    fd = os.open(_NETNS_DIR / request.netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(libc.setns(fd, _CLONE_NEWNET), f"setns({request.netns})")
    finally:
        os.close(fd)
    etc = _ETC_NETNS / request.netns
    if etc.is_dir():
        for entry in sorted(etc.iterdir()):
            if (Path("/etc") / entry.name).exists():
                _bind(libc, str(entry), f"/etc/{entry.name}")
    for source, target in request.binds:
        _bind(libc, source, target)
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(request.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    os.chdir(request.cwd)
    os.setgroups([])
    os.setresgid(request.gid, request.gid, request.gid)
    os.environ.clear()
    os.environ.update(request.env)


def _run_child(request: SpawnRequest, keep: Sequence[int]) -> None:
    """The forked child's whole life; never returns."""
    code = 1
    try:
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for fd in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
        _enter_pod(request)
        import random

        random.seed()  # the zygote's state is every child's: draw afresh
        sys.argv = ["pilotfish proxy", *request.argv]
        from pilotfish.cli.proxy_cmd import proxy

        try:
            proxy.main(args=list(request.argv), prog_name="pilotfish proxy")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # report and exit: a child must never return to the loop
        with contextlib.suppress(Exception):
            print(f"sidecar agent could not start: {exc!r}", file=sys.stderr, flush=True)
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


# ---------------------------------------------------------------------------- the zygote


def preload() -> None:
    """Import what every agent uses, then keep it out of the collector's way (a collection
    writes to every object it visits, which would unshare the pages)."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


def serve(socket_path: Path) -> int:
    """Run the zygote on ``socket_path`` until SIGTERM/SIGINT; returns the exit code."""
    preload()
    if threading.active_count() != 1 or len(os.listdir("/proc/self/task")) != 1:
        log.error("the zygote has threads after preloading; forking would be unsafe")
        return 1
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o077)
    try:
        listener.bind(str(socket_path))
    finally:
        os.umask(old_umask)
    os.chmod(socket_path, 0o600)
    listener.listen(64)
    listener.setblocking(False)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping = False

    def on_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through wake_w
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "wake")
    children: dict[int, socket.socket] = {}
    pending: dict[socket.socket, bytes] = {}
    print("ready", flush=True)
    try:
        while not stopping:
            for key, _ in selector.select(timeout=1.0):
                if key.data == "accept":
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        conn, _addr = listener.accept()
                        conn.setblocking(False)
                        pending[conn] = b""
                        selector.register(conn, selectors.EVENT_READ, "request")
                elif key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        while os.read(wake_r, 512):
                            pass
                else:
                    client = key.fileobj
                    assert isinstance(client, socket.socket)
                    _read_request(client, pending, selector, children, listener, wake_r, wake_w)
            _reap(children)
    finally:
        signal.set_wakeup_fd(-1)
        selector.close()
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        for conn in [*children.values(), *pending]:
            conn.close()
    return 0


def _read_request(
    conn: socket.socket,
    pending: dict[socket.socket, bytes],
    selector: selectors.BaseSelector,
    children: dict[int, socket.socket],
    listener: socket.socket,
    wake_r: int,
    wake_w: int,
) -> None:
    try:
        chunk = conn.recv(65536)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        chunk = b""
    data = pending.get(conn, b"") + chunk
    if chunk and b"\n" not in data:
        pending[conn] = data
        return
    selector.unregister(conn)
    pending.pop(conn, None)
    if not chunk and b"\n" not in data:
        conn.close()
        return
    try:
        request = SpawnRequest.from_json(data.split(b"\n", 1)[0].decode())
    except (ValueError, KeyError, TypeError) as exc:
        _send(conn, {"error": f"bad request: {exc}"})
        conn.close()
        return
    keep = [listener.fileno(), wake_r, wake_w, conn.fileno(), selector_fd(selector)]
    keep += [c.fileno() for c in children.values()]
    pid = os.fork()
    if pid == 0:
        _run_child(request, keep)
    conn.setblocking(True)
    _send(conn, {"pid": pid})
    children[pid] = conn


def selector_fd(selector: selectors.BaseSelector) -> int:
    fileno = getattr(selector, "fileno", None)
    return int(fileno()) if callable(fileno) else -1


def _reap(children: dict[int, socket.socket]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            _send(conn, {"exit": os.waitstatus_to_exitcode(status)})
            conn.close()


def _send(conn: socket.socket, message: Mapping[str, object]) -> None:
    with contextlib.suppress(OSError):
        conn.sendall((json.dumps(message) + "\n").encode())


# ---------------------------------------------------------------------------- the runtime's side


class ZygoteProcess:
    """A sidecar agent forked by the zygote; what the runtime's :class:`PodProcess` offers."""

    def __init__(self, conn: socket.socket, pid: int, argv: list[str], log_path: Path) -> None:
        self._conn = conn
        self._buffer = b""
        self.pid = pid
        self.argv = argv
        self.log_path: Path | None = log_path
        self.returncode: int | None = None
        self._lock = threading.Lock()

    @property
    def pgid(self) -> int:
        return self.pid

    def poll(self) -> int | None:
        return self._wait(0.0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._wait(timeout)
        if code is None:
            raise TimeoutError(f"sidecar agent {self.pid} still running")
        return code

    def _wait(self, timeout: float | None) -> int | None:
        with self._lock:
            if self.returncode is not None:
                return self.returncode
            deadline = None if timeout is None else time.monotonic() + timeout
            while b"\n" not in self._buffer:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._conn.settimeout(remaining)
                try:
                    chunk = self._conn.recv(4096)
                except (TimeoutError, BlockingIOError):
                    return None
                except OSError:
                    chunk = b""
                if not chunk:  # the zygote went away: the agent's fate is unknown to it
                    return self._lost()
                self._buffer += chunk
            line = self._buffer.split(b"\n", 1)[0]
            try:
                self.returncode = int(json.loads(line)["exit"])
            except (ValueError, KeyError, TypeError):
                self.returncode = 1
            self._conn.close()
            return self.returncode

    def _lost(self) -> int | None:
        """No word from the zygote: the agent counts as ended once its pid is gone."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            state = "X"
        if state not in ("Z", "X"):
            time.sleep(0.01)
            return None
        self.returncode = -int(signal.SIGKILL)
        self._conn.close()
        return self.returncode

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the group, wait up to ``grace``, then SIGKILL the group. Idempotent."""
        if self.poll() is None:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                self.wait(grace)
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            self.wait(grace)
        return self.returncode


class ZygoteClient:
    """Asks the zygote on ``socket_path`` for sidecar agents."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def spawn(self, request: SpawnRequest, timeout: float = 5.0) -> ZygoteProcess:
        """Fork an agent for ``request``; raises OSError when the zygote cannot."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(timeout)
            conn.connect(str(self.socket_path))
            conn.sendall(request.to_json().encode())
            data = b""
            while b"\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    raise OSError(errno.ECONNRESET, "the zygote closed the connection")
                data += chunk
            line, _, rest = data.partition(b"\n")
            answer = json.loads(line)
            if "pid" not in answer:
                raise OSError(errno.EINVAL, f"the zygote refused: {answer.get('error')}")
        except BaseException:
            conn.close()
            raise
        process = ZygoteProcess(
            conn, int(answer["pid"]), list(request.argv), Path(request.log_path)
        )
        process._buffer = rest
        return process


class Zygote:
    """The runtime's zygote process: started once, restarted if it dies, stopped at the end."""

    def __init__(self, socket_path: Path, python: str = sys.executable) -> None:
        self.socket_path = socket_path
        self.python = python
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def start(self, timeout: float = 30.0) -> bool:
        """Start it and wait until it serves; False (logged) if it does not."""
        with self._lock:
            proc = subprocess.Popen(
                [self.python, "-P", "-m", __name__, str(self.socket_path)],
                env={**os.environ, PARENT_ENV: str(os.getpid())},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
            self._proc = proc
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        try:
            while time.monotonic() < deadline:
                if selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    line = proc.stdout.readline()
                    if line.strip() == b"ready":
                        return True
                    if not line:
                        break
        finally:
            selector.close()
        log.warning("the sidecar zygote did not start; sidecars start as separate processes")
        return False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self) -> ZygoteClient:
        return ZygoteClient(self.socket_path)

    def keep_running(self, stop: threading.Event, delay: float = 1.0) -> None:
        """Restart the zygote whenever it exits, until ``stop`` (run in a thread)."""
        while not stop.is_set():
            proc = self._proc
            if proc is not None and proc.poll() is None:
                stop.wait(delay)
                continue
            if stop.is_set() or self._stopped:
                return
            log.warning("the sidecar zygote exited; starting it again")
            self.start()
            stop.wait(delay)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()


def die_with_parent() -> bool:
    """SIGTERM this zygote when the runtime that started it dies (even by SIGKILL), so a
    crashed runtime leaves no zygote behind; False if that parent is gone already."""
    parent = os.environ.pop(PARENT_ENV, "")
    if not parent.isdigit():
        return True
    _check(_libc().prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0), "prctl")
    return os.getppid() == int(parent)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m pilotfish.platform.local.zygote SOCKET", file=sys.stderr)
        return 2
    if not die_with_parent():
        return 1
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return serve(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
