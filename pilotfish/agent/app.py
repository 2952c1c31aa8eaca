"""The workload's own process in explicit mode (``interception_mode=NONE``).

Without traffic capture the app must be told where its sidecar listens. The agent starts it
(only once Envoy is ready) with these variables added to its environment:

=========================  ==============================================================
``PILOTFISH_OUTBOUND``     ``127.0.0.1:<outbound_port>``: send every mesh request here,
                           with the service in the Host header (``reviews:9080``)
``PILOTFISH_OUTBOUND_URL`` the same as ``http://127.0.0.1:<outbound_port>``
``PILOTFISH_INBOUND_PORTS`` ``APP:LISTEN,...``: where the sidecar receives for each app port
``POD_NAME``, ``POD_NAMESPACE``, ``INSTANCE_IP``, ``SERVICE_ACCOUNT``  (as in Istio pods)
``HTTP_PROXY``/``http_proxy``  only with ``app_http_proxy_env``: the outbound listener as an
                           HTTP proxy (clients send absolute URLs; Envoy routes by host)
=========================  ==============================================================

The app runs in its own process group; stopping it sends SIGTERM to the group and SIGKILL
after a grace period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from pilotfish.agent.process import spawn_child, terminate
from pilotfish.agent.settings import AgentSettings
from pilotfish.api.mesh import OUTBOUND_CAPTURE_PORT

log = logging.getLogger("pilotfish.agent.app")


def app_environment(settings: AgentSettings, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` plus the variables that tell an explicit-mode app about its sidecar."""
    node = settings.node
    env = dict(base)
    outbound_port = node.outbound_port or OUTBOUND_CAPTURE_PORT
    outbound = f"127.0.0.1:{outbound_port}"
    env.update(
        {
            "PILOTFISH_OUTBOUND": outbound,
            "PILOTFISH_OUTBOUND_URL": f"http://{outbound}",
            "PILOTFISH_INBOUND_PORTS": ",".join(
                f"{app}:{listen}" for app, listen in sorted(node.inbound_ports.items())
            ),
            "POD_NAME": node.pod_name,
            "POD_NAMESPACE": node.namespace,
            "INSTANCE_IP": node.ip,
            "SERVICE_ACCOUNT": node.service_account,
        }
    )
    if settings.app_http_proxy_env:
        for name in ("HTTP_PROXY", "http_proxy"):
            env[name] = f"http://{outbound}"
        no_proxy = "localhost,127.0.0.1"
        for name in ("NO_PROXY", "no_proxy"):
            env[name] = no_proxy
    return env


class AppProcess:
    """One run of the workload command."""

    def __init__(self, command: tuple[str, ...], env: Mapping[str, str]) -> None:
        if not command:
            raise ValueError("app command is empty")
        self.command = command
        self.env = dict(env)
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log.info("starting app: %s", " ".join(self.command))
        self._proc = await spawn_child(self.command, env=self.env)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    async def wait(self) -> int:
        if self._proc is None:
            raise RuntimeError("app not started")
        return await self._proc.wait()

    async def stop(self, timeout_s: float) -> int | None:
        """SIGTERM (then SIGKILL after ``timeout_s``); the exit code, None if never started."""
        if self._proc is None:
            return None
        return await terminate(self._proc, timeout_s)
