"""``run_agent``: the sidecar agent's lifetime, from bootstrap to a drained exit.

Order of events:

1. render the bootstrap into ``work_dir`` (``envoy-bootstrap.json``), with the EnvoyFilter
   BOOTSTRAP patches ``bootstrap_patches`` hands over merged in;
2. serve the agent's HTTP endpoints (``agent_port``) - Envoy's readiness listener forwards to
   them, so they come up first;
3. with a workload identity (``settings.identity``): serve SDS on the pod's socket and start
   asking the CA for the first certificate (see ``workload_identity.py``);
4. start Envoy under :class:`~pilotfish.agent.supervisor.EnvoySupervisor` at once: it connects
   to the control plane while the key pair is made and the certificate signed, and holds the
   listeners and clusters that need the certificate until SDS sends it (the proxy is not ready
   before: ``/healthz/ready`` says it waits for its certificate);
5. explicit mode: once Envoy is ready (LIVE with its first CDS and LDS), start the app with the
   sidecar's addresses in its environment (see ``app.py``);
6. run until SIGTERM/SIGINT, a ``stop`` event, the app exiting, or the supervisor giving up;
   until the proxy is first ready, log why not every 10 s, and at once when the control
   plane cannot be reached or trusted (a TLS failure, a refused connection);
7. stop: readiness turns 503, the app is stopped first (SIGTERM, then SIGKILL after
   ``app_stop_timeout_s``), then Envoy is drained for up to ``drain_seconds`` and stopped.

The exit code is 0 after a stop request, the app's exit code when the app ended on its own,
and 1 when Envoy could not be kept running.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING

from pilotfish.agent.admin import Readiness
from pilotfish.agent.app import AppProcess, app_environment
from pilotfish.agent.bootstrap import patched, render_bootstrap, write_bootstrap
from pilotfish.agent.health import AgentServer
from pilotfish.agent.settings import AgentSettings
from pilotfish.agent.supervisor import EnvoySupervisor, SupervisorSettings
from pilotfish.api.node import AUTO_REGISTER_GROUP_METADATA
from pilotfish.api.peer import peer_environment, workload_values

if TYPE_CHECKING:  # gRPC and cryptography load only when the proxy has a workload identity
    from pilotfish.agent.workload_identity import WorkloadIdentity

log = logging.getLogger("pilotfish.agent")


def supervisor_settings(settings: AgentSettings) -> SupervisorSettings:
    """How the agent runs Envoy for ``settings``."""
    return SupervisorSettings(
        bootstrap_path=settings.bootstrap_path,
        admin_port=settings.admin_port,
        concurrency=settings.concurrency,
        log_level=settings.log_level,
        log_path=settings.log_path,
        # Listeners refuse new connections after 1 s of drain (0 s for a zero drain period);
        # the rest of drain_seconds lets in-flight requests finish.
        listener_drain_s=1 if settings.drain_seconds >= 1 else 0,
        require_xds=True,
        user=settings.envoy_user,
        env=tuple(sorted(envoy_environment(settings).items())),
    )


def _envoy_owner(user: str | None) -> tuple[int | None, int | None]:
    from pilotfish.agent.workload_identity import envoy_owner

    return envoy_owner(user)


def registration_token(settings: AgentSettings) -> str:
    """The workload token shown on the xDS stream by an agent registering into a WorkloadGroup
    (the control plane refuses a registration without one bound to the group); ``""`` for
    other agents."""
    if settings.identity is None:
        return ""
    if not settings.node.extra.get(AUTO_REGISTER_GROUP_METADATA):
        return ""
    return settings.identity.token_file.read_text().strip()


def own_values(settings: AgentSettings) -> dict[str, str]:
    """This workload's values in Istio's metrics (its side's ``source_*``/``destination_*``)."""
    node = settings.node
    principal = node.spiffe_id if settings.identity is not None else ""
    workload = node.workload_name or node.pod_name
    return workload_values(node.namespace, workload, node.labels, principal)


def envoy_environment(settings: AgentSettings) -> dict[str, str]:
    """What Envoy's config reads about this workload (``%ENVIRONMENT(PILOTFISH_*)%``)."""
    return peer_environment(own_values(settings))


class Agent:
    """One agent run. ``run_agent`` is the usual entry point; tests may drive this directly."""

    def __init__(self, settings: AgentSettings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.environ = dict(os.environ if environ is None else environ)
        self.supervisor = EnvoySupervisor(supervisor_settings(settings))
        self.app: AppProcess | None = None
        self.stopping = False
        self._server: AgentServer | None = None
        self.identity: WorkloadIdentity | None = None
        self._health_tasks: list[asyncio.Task[None]] = []

    async def readiness(self) -> Readiness:
        if self.stopping:
            return Readiness(False, "stopping")
        if self.identity is not None and self.identity.manager.current() is None:
            return Readiness(False, f"no workload certificate yet: {self.identity.waiting_for()}")
        return await self.supervisor.readiness()

    async def run(self, stop: asyncio.Event) -> int:
        settings = self.settings
        settings.work_dir.mkdir(parents=True, exist_ok=True)
        if settings.identity is not None:
            from pilotfish.agent.workload_identity import WorkloadIdentity

            self.identity = WorkloadIdentity(settings, settings.identity)
        sds_socket = self.identity.socket_path if self.identity is not None else None
        token = registration_token(settings)
        write_bootstrap(
            patched(render_bootstrap(settings, sds_socket, token), settings.bootstrap_patches),
            settings.bootstrap_path,
            private_to=_envoy_owner(settings.envoy_user) if token else None,
        )
        try:
            # Envoy first: its own start (~0.1 s before it reads its bootstrap) overlaps the
            # agent's servers and the certificate request. It retries SDS within 50 ms if it
            # asks before the SDS socket listens, and holds everything that needs a secret.
            await self.supervisor.start()
            if settings.agent_port is not None:
                self._server = AgentServer(
                    settings.agent_bind,
                    settings.agent_port,
                    self.readiness,
                    self.supervisor.admin,
                    settings.app_metrics,
                    own_values(settings),
                )
                try:
                    await self._server.start()
                except OSError as exc:
                    log.error(
                        "agent port %s:%d: %s (choose another with --agent-port)",
                        settings.agent_bind,
                        settings.agent_port,
                        exc.strerror or exc,
                    )
                    self._server = None
                    return 1
            if self.identity is not None:
                await self.identity.start()
            self._start_health_checks()
            log.info(
                "proxy %s started (admin 127.0.0.1:%d, readiness :%d)",
                settings.node.node_id,
                settings.admin_port,
                settings.readiness_port,
            )
            if self.identity is not None:
                which, secret = await _first(self.identity.wait_first(stop), self.supervisor.wait())
                if which != 0 or secret is None:
                    return self._exit_code(app_code=None)
            waits: list[Awaitable[object]] = [stop.wait(), self.supervisor.wait()]
            if settings.app_command:
                waiting = self._wait_ready_logged("app not started yet: ")
                which, ready = await _first(waiting, stop.wait())
                if which != 0 or not ready:
                    return self._exit_code(app_code=None)
                self.app = AppProcess(settings.app_command, app_environment(settings, self.environ))
                await self.app.start()
                waits.append(self.app.wait())
            else:
                waits.append(_forever(self._wait_ready_logged("")))
            await _first(*waits)
            app_code = None if stop.is_set() or self.app is None else self.app.returncode
            return self._exit_code(app_code)
        finally:
            await self._shutdown()

    def _start_health_checks(self) -> None:
        """Run the WorkloadGroup's probe and report health changes over xDS (Istio's agent)."""
        settings = self.settings
        if settings.workload_probe is None:
            return
        from pilotfish.agent.workload_health import HealthReporter, run_probe
        from pilotfish.agent.workload_identity import ca_channel
        from pilotfish.api.probe import Probe

        probe = Probe.parse(settings.workload_probe, default_host=settings.node.ip)
        # Each (re)connection dials the next control-plane replica, as Envoy fails over.
        addresses = itertools.cycle((settings.discovery_address, *settings.discovery_fallbacks))
        reporter = HealthReporter(
            settings.node,
            lambda: ca_channel(settings, next(addresses)),
            registration_token(settings),
        )
        loop = asyncio.get_running_loop()
        self._health_tasks = [
            loop.create_task(reporter.run()),
            loop.create_task(run_probe(probe, reporter.report)),
        ]

    def _exit_code(self, app_code: int | None) -> int:
        if self.supervisor.failed:
            return 1
        if app_code is not None:
            log.info("app exited with code %d; stopping the proxy", app_code)
            # Killed by a signal: report it as a shell would (128 + signal number).
            return app_code if app_code >= 0 else 128 - app_code
        return 0

    async def _wait_ready_logged(self, prefix: str) -> bool:
        """Wait (forever) for readiness, logging why not every 10 s, and at once when a
        problem with the control-plane connection (a TLS failure, say) shows up."""
        loop = asyncio.get_running_loop()
        next_log = loop.time() + 10
        logged, logged_cause = False, ""
        while not await self.supervisor.wait_ready(timeout_s=1):
            if self.supervisor.failed:
                return False
            readiness = await self.supervisor.readiness()
            new_cause = readiness.cause and readiness.cause != logged_cause
            if new_cause or loop.time() >= next_log:
                log.warning("%sproxy not ready (%s)", prefix, readiness.reason)
                next_log = loop.time() + 10
                logged, logged_cause = True, readiness.cause or logged_cause
        if logged:
            log.info("proxy ready")
        return True

    async def _shutdown(self) -> None:
        self.stopping = True
        for task in self._health_tasks:
            task.cancel()
        for task in self._health_tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            if self.app is not None:
                await self.app.stop(self.settings.app_stop_timeout_s)
        finally:
            try:
                await self.supervisor.drain_and_stop(self.settings.drain_seconds)
            finally:
                if self._server is not None:
                    await self._server.stop()
                if self.identity is not None:
                    await self.identity.stop()


async def run_agent(
    settings: AgentSettings,
    stop: asyncio.Event | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run the sidecar agent until SIGTERM/SIGINT (or ``stop``); returns the exit code.

    ``environ`` is the base environment of the explicit-mode app (default: the agent's own).
    Signal handlers are installed only when running in the main thread.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (RuntimeError, ValueError, NotImplementedError):
            continue
        installed.append(sig)
    try:
        return await Agent(settings, environ).run(stop)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _forever(wait: Awaitable[object]) -> None:
    """Await ``wait``, then block until cancelled (a side task among :func:`_first`'s)."""
    await wait
    await asyncio.Event().wait()


async def _first(*waits: Awaitable[object]) -> tuple[int, object]:
    """Await the first of ``waits`` to finish, cancel the others; its index and result."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        index = next(i for i, task in enumerate(tasks) if task.done())
        return index, tasks[index].result()
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
