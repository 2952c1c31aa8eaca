"""Runs the real Envoy binary, restarts it when it dies, drains and stops it on request.

Decisions:

- Envoy always runs with ``--disable-hot-restart``: no shared memory and no hot-restart domain
  socket, so any number of Envoys can share a host (loopback tests, several pods) without
  ``--base-id`` bookkeeping. A restart is a full process restart done by the supervisor.
- Envoy runs in its own session so a terminal's Ctrl-C reaches only the agent, which then
  drains; and with ``PR_SET_PDEATHSIG`` = SIGKILL so it dies with the agent even if the agent
  is killed with SIGKILL (see ``process.py``). The death signal follows the *thread* that
  forked: run the supervisor in a thread that lives as long as the agent (the loop's does).
- An unexpected exit (any exit the supervisor did not ask for, code 0 included) is followed by
  a restart after an exponential backoff (``backoff_initial_s`` doubling up to
  ``backoff_max_s``); a process that ran for ``stable_after_s`` resets the backoff.
  ``max_restarts`` > 0 gives up after that many restarts in a row without a stable run.
- Drain: ``POST /drain_listeners?graceful`` with Envoy started as ``--drain-time-s
  <listener_drain_s> --drain-strategy immediate``. Measured with Envoy 1.40: during the drain
  time listeners still accept and every response says ``connection: close``; then the listeners
  close (new connections are refused) while in-flight requests run to completion. The
  supervisor then waits until no downstream connection is open on the proxy's own listeners
  (admin ``/stats``) or ``drain_seconds`` pass, and stops Envoy (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from pilotfish.agent.admin import AdminClient, Readiness
from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.agent.process import spawn_child, terminate
from pilotfish.fsaccess import X, access_problem

log = logging.getLogger("pilotfish.agent.supervisor")


@dataclass(frozen=True)
class SupervisorSettings:
    """How to run one Envoy."""

    bootstrap_path: Path
    admin_port: int
    #: ``None``: :func:`pilotfish.agent.envoy_binary.envoy_binary`.
    binary: Path | None = None
    concurrency: int = 2
    log_level: str = "warning"
    #: ``None``: Envoy logs to the agent's stderr.
    log_path: Path | None = None
    #: Seconds listeners keep accepting (discouraged) after a drain starts (``--drain-time-s``).
    listener_drain_s: int = 1
    #: Readiness also requires the first CDS and LDS answers (False for static bootstraps).
    require_xds: bool = True
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    stable_after_s: float = 60.0
    #: Restarts in a row without a stable run before giving up; 0 = never give up.
    max_restarts: int = 0
    #: SIGTERM -> SIGKILL grace when stopping Envoy.
    stop_timeout_s: float = 5.0
    extra_args: tuple[str, ...] = ()
    #: Run Envoy as this user (name or uid; its primary group too), e.g. a dedicated proxy user
    #: that capture rules exclude by ``--uid-owner``. Needs root. ``None``: the agent's user.
    user: str | int | None = None
    #: Added to Envoy's environment (e.g. the workload values its metrics carry).
    env: tuple[tuple[str, str], ...] = ()


def envoy_command(settings: SupervisorSettings, binary: Path) -> list[str]:
    """The Envoy command line for ``settings``."""
    cmd = [
        str(binary),
        "-c",
        str(settings.bootstrap_path),
        "--concurrency",
        str(settings.concurrency),
        "--disable-hot-restart",
        "--drain-time-s",
        str(settings.listener_drain_s),
        "--drain-strategy",
        "immediate",
        "--log-level",
        settings.log_level,
        # Deprecation notices (Istio's stats need the stats logger's stat_prefix) would fill
        # the proxy's log at every listener update.
        "--component-log-level",
        "misc:error",
    ]
    if settings.log_path is not None:
        cmd += ["--log-path", str(settings.log_path)]
    return cmd + list(settings.extra_args)


class Backoff:
    """Exponential backoff: ``initial``, ``initial*factor``, ... capped at ``maximum``."""

    def __init__(self, initial: float, maximum: float, factor: float = 2.0) -> None:
        if initial < 0 or maximum < initial or factor < 1:
            raise ValueError("backoff needs 0 <= initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * self.factor, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class RestartPolicy:
    """When to restart a process that exited: backoff, reset after a stable run, give up.

    :meth:`after_exit` takes how long the process ran and returns the delay before the next
    start, or None to give up (``max_restarts`` restarts in a row without a stable run).
    """

    def __init__(self, backoff: Backoff, stable_after_s: float, max_restarts: int = 0) -> None:
        self.backoff = backoff
        self.stable_after_s = stable_after_s
        self.max_restarts = max_restarts
        self.unstable_restarts = 0

    def after_exit(self, ran_for_s: float) -> float | None:
        if ran_for_s >= self.stable_after_s:
            self.backoff.reset()
            self.unstable_restarts = 0
        if self.max_restarts and self.unstable_restarts >= self.max_restarts:
            return None
        self.unstable_restarts += 1
        return self.backoff.next_delay()


class EnvoySupervisor:
    """Keeps one Envoy running until :meth:`drain_and_stop` or :meth:`stop`.

    Usage::

        supervisor = EnvoySupervisor(settings)
        await supervisor.start()
        await supervisor.wait_ready(timeout_s=30)
        ...
        await supervisor.drain_and_stop(drain_seconds=5)
    """

    def __init__(self, settings: SupervisorSettings) -> None:
        self.settings = settings
        self.admin = AdminClient(settings.admin_port)
        self.restarts = 0
        self.failed = False
        self.draining = False
        self._binary = settings.binary or envoy_binary()
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._spawn_lock = asyncio.Lock()
        self._monitor: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        #: Why the last Envoy process ended (or could not start), for readiness and logs.
        self.last_exit = ""
        #: The Envoy process that has received its first CDS and LDS.
        self._xds_received_pid: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start Envoy (returns once the first process is spawned)."""
        if self._monitor is not None:
            raise RuntimeError("EnvoySupervisor.start() called twice")
        self._monitor = asyncio.create_task(self._run(), name="envoy-supervisor")
        started = asyncio.create_task(self._started.wait())
        done, _ = await asyncio.wait({started, self._monitor}, return_when=asyncio.FIRST_COMPLETED)
        if self._monitor in done:
            started.cancel()
            self._monitor.result()  # raises the spawn error, if any

    async def wait(self) -> None:
        """Return when supervision ends: after a stop, or when it gave up restarting."""
        if self._monitor is not None:
            await asyncio.shield(self._monitor)

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    async def drain_and_stop(self, drain_seconds: float) -> None:
        """Drain listeners, wait for open connections (at most ``drain_seconds``), stop Envoy."""
        proc = await self._begin_stop()
        if proc is not None and proc.returncode is None:
            self.draining = True
            accepted = await self.admin.drain_listeners(graceful=True)
            log.info("draining Envoy listeners (accepted=%s, up to %.1fs)", accepted, drain_seconds)
            await self._wait_connections_closed(proc, drain_seconds)
        await self._finish_stop(proc)

    async def stop(self) -> None:
        """Stop Envoy at once (no drain). Safe to call more than once."""
        proc = await self._begin_stop()
        await self._finish_stop(proc)

    async def __aenter__(self) -> EnvoySupervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- readiness -------------------------------------------------------------------------

    async def readiness(self) -> Readiness:
        """Ready = Envoy LIVE, first CDS/LDS received (if required), not draining."""
        if not self.running:
            if self.last_exit:
                return Readiness(
                    False,
                    f"{self.last_exit} (restarted {self.restarts} times)",
                    code="EnvoyCrashLoop",
                )
            return Readiness(False, "Envoy is not running")
        pid = self.pid
        # CDS and LDS received once stay received for the life of an Envoy process: after
        # that, readiness is admin /ready alone (one request per probe instead of two).
        require_xds = self.settings.require_xds and self._xds_received_pid != pid
        readiness = await self.admin.readiness(require_xds=require_xds, draining=self.draining)
        if readiness.ready and require_xds and self.pid == pid:
            self._xds_received_pid = pid
        return readiness

    async def ready(self) -> bool:
        return (await self.readiness()).ready

    async def wait_ready(self, timeout_s: float | None = None, poll_s: float = 0.1) -> bool:
        """Poll :meth:`ready` until True (returns True) or ``timeout_s`` passes (False)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            if await self.ready():
                return True
            if self._stopping or self.failed:
                return False
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(poll_s)

    # -- internals -------------------------------------------------------------------------

    async def _spawn(self) -> asyncio.subprocess.Process:
        cmd = envoy_command(self.settings, self._binary)
        log.info("starting Envoy: %s", " ".join(cmd))
        user = self.settings.user
        if user is not None:
            problem = cannot_execute_as(self._binary, user)
            if problem:
                log.error("Envoy cannot run as %s: %s", user, problem)
                self.last_exit = f"cannot execute {self._binary} as user {user}: {problem}"
        if user is not None and self.settings.log_path is not None:
            _prepare_log_for(self.settings.log_path, user)
        env = {**os.environ, **dict(self.settings.env)} if self.settings.env else None
        return await spawn_child(
            cmd, env=env, user=user, group=_primary_group(user) if user is not None else None
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        policy = RestartPolicy(
            Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s),
            self.settings.stable_after_s,
            self.settings.max_restarts,
        )
        while True:
            async with self._spawn_lock:
                if self._stopping:
                    return
                self._proc = proc = await self._spawn()
            self._started.set()
            began = loop.time()
            code = await proc.wait()
            if self._stopping:
                return
            delay = policy.after_exit(loop.time() - began)
            if delay is None:
                log.error(
                    "Envoy exited with code %s; giving up after %d restarts",
                    code,
                    policy.max_restarts,
                )
                self.failed = True
                return
            self.last_exit = (
                self.last_exit
                if code in (126, 127) and self.last_exit
                else (f"Envoy exited with code {code}{_EXIT_HINTS.get(code, '')}")
            )
            log.warning("Envoy exited unexpectedly with code %s; restarting in %.1fs", code, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self.restarts += 1

    async def _begin_stop(self) -> asyncio.subprocess.Process | None:
        async with self._spawn_lock:
            self._stopping = True
            self._wake.set()
            return self._proc

    async def _wait_connections_closed(
        self, proc: asyncio.subprocess.Process, drain_seconds: float
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_seconds
        while proc.returncode is None:
            active = await self.admin.active_connections()
            if not active:  # 0, or admin gone
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("drain period over with %d connections still open", active)
                return
            await asyncio.sleep(min(0.1, remaining))

    async def _finish_stop(self, proc: asyncio.subprocess.Process | None) -> None:
        if proc is not None:
            await terminate(proc, self.settings.stop_timeout_s)
        if self._monitor is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await self.admin.aclose()


#: What an exit code of the process that should have become Envoy says.
_EXIT_HINTS = {
    126: " (the binary could not be executed: permission denied or not executable)",
    127: " (the binary was not found)",
}


def cannot_execute_as(binary: Path, user: str | int) -> str | None:
    """Why ``user`` cannot execute ``binary`` (a directory it cannot enter, say), or None."""
    try:
        entry = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
    except KeyError:
        return f"no such user {user!r}"
    gids = [entry.pw_gid, *os.getgrouplist(entry.pw_name, entry.pw_gid)]
    return access_problem(binary, entry.pw_uid, gids, X)


def _primary_group(user: str | int) -> int:
    entry = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
    return entry.pw_gid


def _prepare_log_for(path: Path, user: str | int) -> None:
    """Create Envoy's log file owned by ``user`` so Envoy can write it after the switch."""
    entry = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=True)
    os.chown(path, entry.pw_uid, entry.pw_gid)
