"""The workload's health check (a WorkloadGroup's ``probe``), reported to the control plane.

As Istio's agent on a VM: the probe (Istio's ``ReadinessProbe``: ``httpGet`` with ``path``,
``port``, ``host``, ``scheme``, ``httpHeaders``; ``tcpSocket``; ``exec``; with
``initialDelaySeconds``, ``periodSeconds``, ``timeoutSeconds``, ``successThreshold``,
``failureThreshold`` and Kubernetes' defaults) runs against the local app; each change of
health is sent to the control plane as a DiscoveryRequest of type ``istio.io/health`` on an
xDS stream of the agent's own (``error_detail`` set while unhealthy), which sets the
WorkloadEntry's ``Healthy`` condition. The stream shows the same node and workload token as
Envoy's; after a failure it is opened again and the current health sent again.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import json_format, struct_pb2
from google.rpc import status_pb2

from pilotfish.api.node import NodeInfo
from pilotfish.api.probe import Probe

log = logging.getLogger("pilotfish.agent.health")

HEALTH_TYPE = "istio.io/health"


async def check(probe: Probe) -> str:
    """Run the probe once: ``""`` on success, else why it failed."""
    try:
        return await asyncio.wait_for(_check(probe), probe.timeout)
    except TimeoutError:
        return f"timed out after {probe.timeout:g}s"
    except OSError as exc:
        return str(exc.strerror or exc)


async def _check(probe: Probe) -> str:
    if probe.kind == "exec":
        proc = await asyncio.create_subprocess_exec(
            *probe.command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            code = await proc.wait()
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            raise
        return "" if code == 0 else f"command exited with {code}"
    context = None
    if probe.kind == "httpGet" and probe.scheme == "HTTPS":
        # As Kubernetes' and Istio's HTTPS probes: the certificate is not verified.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(probe.host, probe.port, ssl=context)
    try:
        if probe.kind == "tcpSocket":
            return ""
        names = {n.lower() for n, _ in probe.headers}
        lines = [f"GET {probe.path} HTTP/1.1"]
        if "host" not in names:
            lines.append(f"Host: {probe.host}:{probe.port}")
        if "user-agent" not in names:
            lines.append("User-Agent: kube-probe/1.30")
        lines += [f"{n}: {v}" for n, v in probe.headers]
        lines += ["Connection: close", "", ""]
        writer.write("\r\n".join(lines).encode())
        await writer.drain()
        status_line = (await reader.readline()).decode("latin-1").split()
        if len(status_line) < 2 or not status_line[1].isdigit():
            return "no HTTP status line"
        status = int(status_line[1])
        # Kubernetes' rule: 200 <= status < 400 succeeds.
        return "" if 200 <= status < 400 else f"HTTP status {status}"
    finally:
        writer.close()


@dataclass
class HealthState:
    """Consecutive results against the thresholds; ``healthy`` is None until decided."""

    probe: Probe
    healthy: bool | None = None
    successes: int = 0
    failures: int = 0
    message: str = field(default="")

    def record(self, error: str) -> bool:
        """Record one result; True when the health changed."""
        if error:
            self.failures, self.successes = self.failures + 1, 0
            if self.healthy is not False and self.failures >= self.probe.failure_threshold:
                self.healthy, self.message = False, error
                return True
        else:
            self.successes, self.failures = self.successes + 1, 0
            if self.healthy is not True and self.successes >= self.probe.success_threshold:
                self.healthy, self.message = True, ""
                return True
        return False


async def run_probe(probe: Probe, changed: Callable[[bool, str], None]) -> None:
    """Probe forever; call ``changed(healthy, message)`` on each change of health."""
    state = HealthState(probe)
    await asyncio.sleep(probe.initial_delay)
    while True:
        error = await check(probe)
        if state.record(error):
            log.info("workload %s%s", "healthy" if state.healthy else "unhealthy: ", error)
            changed(bool(state.healthy), state.message)
        await asyncio.sleep(probe.period)


def node_proto(node: NodeInfo) -> base_pb2.Node:
    """The node as Envoy's bootstrap gives it (the control plane parses it the same way)."""
    metadata = struct_pb2.Struct()
    json_format.ParseDict(node.metadata(), metadata)
    return base_pb2.Node(id=node.node_id, cluster=node.cluster, metadata=metadata)


class HealthReporter:
    """Sends the latest health on an ``istio.io/health`` xDS stream, reopened after failures."""

    def __init__(
        self,
        node: NodeInfo,
        channel_for: Callable[[], grpc.aio.Channel],
        token: str,
    ) -> None:
        self.node = node
        self.channel_for = channel_for
        self.token = token
        self._latest: tuple[bool, str] | None = None
        self._changed = asyncio.Event()

    def report(self, healthy: bool, message: str) -> None:
        self._latest = (healthy, message)
        self._changed.set()

    def _request(self) -> discovery_pb2.DiscoveryRequest:
        assert self._latest is not None
        healthy, message = self._latest
        request = discovery_pb2.DiscoveryRequest(node=node_proto(self.node), type_url=HEALTH_TYPE)
        if not healthy:
            # As Istio's agent: code 500 and the probe's failure.
            request.error_detail.CopyFrom(status_pb2.Status(code=500, message=message))
        return request

    async def run(self) -> None:
        backoff = 0.5
        while True:
            await self._changed.wait()
            channel = self.channel_for()
            queue: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()

            async def requests(q: asyncio.Queue[discovery_pb2.DiscoveryRequest] = queue) -> Any:
                while True:
                    yield await q.get()

            metadata = (("authorization", f"Bearer {self.token}"),) if self.token else ()
            try:
                stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
                call = stub.StreamAggregatedResources(requests(), metadata=metadata)
                waiting = asyncio.ensure_future(call.read())
                while True:
                    self._changed.clear()
                    queue.put_nowait(self._request())
                    changed = asyncio.ensure_future(self._changed.wait())
                    done, _ = await asyncio.wait(
                        {changed, waiting}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if waiting in done:
                        changed.cancel()
                        waiting.result()  # raises the stream's error
                        raise ConnectionError("the control plane closed the health stream")
                    backoff = 0.5
            except (grpc.aio.AioRpcError, ConnectionError) as exc:
                log.warning("reporting health to the control plane: %s (retrying)", exc)
                self._changed.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                await channel.close()
