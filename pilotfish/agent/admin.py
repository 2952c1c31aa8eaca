"""Talking to Envoy's admin API, and what the agent concludes from it.

The pure half (parsing ``/stats`` text, deciding readiness, counting the connections a drain
waits for) is separate from :class:`AdminClient`, the small HTTP client on the admin port.

Readiness, as measured with Envoy 1.40: admin ``/ready`` answers ``PRE_INITIALIZING`` then
``INITIALIZING`` (503) while the first CDS and LDS answers are awaited; when each
``initial_fetch_timeout`` expires unanswered (CDS first, then LDS: about twice the timeout in
all), Envoy goes ``LIVE`` (200) and starts its listeners with no config from the control plane.
``/ready`` also stays ``LIVE`` during ``/drain_listeners``. So a proxy is ready only when
``/ready`` is ``LIVE`` *and* CDS and LDS were each received once (accepted or rejected, as
Istio counts them), and the agent is not draining.

While no config has arrived, the ``xds-grpc`` cluster's stats tell why (see
:func:`xds_connection_problem`): a control-plane certificate the ``--ca-file`` does not verify
(``ssl.fail_verify_error``), one without the expected name (``ssl.fail_verify_san``), a failed
TLS handshake (``ssl.connection_error``: e.g. a plaintext control plane), a refused connection,
or a control plane that hangs up on a plaintext client (a TLS port). The reason and
:attr:`Readiness.cause` carry it, so ``/healthz/ready`` and the agent's log say what is wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from pilotfish.agent.http import HttpError, Response, request
from pilotfish.agent.settings import XDS_CLUSTER

#: Stats that show the first xDS answers arrived.
XDS_RECEIVED_STATS = {
    "cds": ("cluster_manager.cds.update_success", "cluster_manager.cds.update_rejected"),
    "lds": ("listener_manager.lds.update_success", "listener_manager.lds.update_rejected"),
}
#: Stats of the ``xds-grpc`` cluster that explain why no config arrives.
XDS_CONNECTION_STATS = (
    "upstream_cx_active",
    "upstream_cx_connect_fail",
    "upstream_cx_destroy_remote_with_active_rq",
    "ssl.fail_verify_error",
    "ssl.fail_verify_san",
    "ssl.connection_error",
)
#: Listener stat prefixes whose connections do not hold a drain back (admin, health probes).
IGNORED_LISTENERS = ("admin", "readiness")


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str
    #: Why the control plane cannot be reached or trusted, when known (also in ``reason``).
    cause: str = ""
    #: A short machine-readable reason (``EnvoyCrashLoop`` while Envoy keeps exiting), sent as
    #: the ``X-Pilotfish-Reason`` header of a 503 so a runtime can report it as Kubernetes would.
    code: str = ""


def parse_stats(text: str) -> dict[str, int]:
    """``name: value`` lines of admin ``/stats`` (counters and gauges; histograms skipped)."""
    stats: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        value = value.strip()
        if sep and value.lstrip("-").isdigit():
            stats[name.strip()] = int(value)
    return stats


def xds_connection_problem(stats: Mapping[str, int]) -> str:
    """Why Envoy has no working connection to the control plane, from the ``xds-grpc``
    cluster's stats; empty while a connection is up or nothing failed yet."""

    def count(name: str) -> int:
        return stats.get(f"cluster.{XDS_CLUSTER}.{name}", 0)

    if count("upstream_cx_active") > 0:
        return ""
    if count("ssl.fail_verify_error"):
        return (
            "TLS to the control plane failed: its certificate is not signed by a CA in "
            "--ca-file (is it the mesh roots, <data-dir>/ca/mesh-roots.pem?)"
        )
    if count("ssl.fail_verify_san"):
        return (
            "TLS to the control plane failed: its certificate does not name the address "
            "dialled (pass one of its names as --xds-server-name, or add one with "
            "`pilotfish server --xds-san`)"
        )
    if count("ssl.connection_error"):
        return (
            "TLS handshake with the control plane failed (a control plane started with "
            "--xds-plaintext needs --plaintext)"
        )
    if count("upstream_cx_destroy_remote_with_active_rq"):
        return (
            "the control plane closed the connection without answering (it serves TLS: "
            "pass --ca-file <data-dir>/ca/mesh-roots.pem)"
        )
    if count("upstream_cx_connect_fail"):
        return "cannot connect to the control plane"
    return ""


def evaluate_readiness(
    server_state: str | None,
    stats: Mapping[str, int],
    *,
    require_xds: bool = True,
    draining: bool = False,
) -> Readiness:
    """Decide readiness from admin ``/ready``'s body, the xDS update stats and (for the
    reason) the ``xds-grpc`` cluster's connection stats."""
    if draining:
        return Readiness(False, "draining")
    if server_state is None:
        return Readiness(False, "Envoy admin is not reachable")
    cause = ""
    if require_xds and not all(_received(stats, names) for names in XDS_RECEIVED_STATS.values()):
        cause = xds_connection_problem(stats)
    suffix = f": {cause}" if cause else ""
    if server_state != "LIVE":
        return Readiness(False, f"Envoy is {server_state}{suffix}", cause)
    if require_xds:
        for kind, names in XDS_RECEIVED_STATS.items():
            if not _received(stats, names):
                return Readiness(
                    False, f"config not received from the control plane ({kind}){suffix}", cause
                )
    return Readiness(True, "ready")


def _received(stats: Mapping[str, int], names: tuple[str, str]) -> bool:
    return sum(stats.get(n, 0) for n in names) > 0


def active_downstream_connections(stats: Mapping[str, int]) -> int:
    """Open downstream connections on the proxy's own listeners (admin and readiness excluded).

    Uses ``listener.<prefix>.downstream_cx_active`` and skips the per-worker copies
    (``listener.<prefix>.worker_N.downstream_cx_active``).
    """
    total = 0
    for name, value in stats.items():
        if not (name.startswith("listener.") and name.endswith(".downstream_cx_active")):
            continue
        middle = name[len("listener.") : -len(".downstream_cx_active")]
        last = middle.rsplit(".", 1)[-1]
        if last.startswith("worker_") or last == "main_thread":
            continue
        if middle in IGNORED_LISTENERS:
            continue
        total += value
    return total


#: What readiness reads from ``/stats`` (a regular expression for its ``filter``).
_READINESS_STATS = (
    r"^(cluster_manager\.cds|listener_manager\.lds)\.update_|^cluster\."
    + XDS_CLUSTER
    + r"\.("
    + "|".join(name.replace(".", r"\.") for name in XDS_CONNECTION_STATS)
    + ")$"
)


class AdminClient:
    """Async client for one Envoy's admin API on ``127.0.0.1:<port>``."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout_s: float = 2.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.base_url = f"http://{host}:{port}"

    async def aclose(self) -> None:
        """Nothing to release (one connection per request); kept for symmetry."""

    async def _request(
        self, method: str, path: str, params: dict[str, str] | None = None
    ) -> Response:
        target = path + (f"?{urlencode(params)}" if params else "")
        return await request(self.host, self.port, method, target, timeout=self.timeout_s)

    async def server_state(self) -> str | None:
        """Body of ``/ready`` (``LIVE``, ``INITIALIZING``, ...), or None if admin is down."""
        try:
            response = await self._request("GET", "/ready")
        except HttpError:
            return None
        return response.text.strip() or None

    async def stats(self, regex: str | None = None) -> dict[str, int]:
        """Counters and gauges, optionally filtered by a regular expression. Empty if down."""
        params = {"filter": regex} if regex else None
        try:
            response = await self._request("GET", "/stats", params)
        except HttpError:
            return {}
        if response.status != 200:
            return {}
        return parse_stats(response.text)

    async def readiness(self, *, require_xds: bool = True, draining: bool = False) -> Readiness:
        if draining:
            return evaluate_readiness(None, {}, draining=True)
        if not require_xds:
            return evaluate_readiness(await self.server_state(), {}, require_xds=False)
        # Both at once: a readiness probe waits for this answer.
        state, stats = await asyncio.gather(self.server_state(), self.stats(_READINESS_STATS))
        return evaluate_readiness(state, stats, require_xds=True)

    async def active_connections(self) -> int | None:
        """Open downstream connections (see :func:`active_downstream_connections`)."""
        try:
            response = await self._request(
                "GET", "/stats", {"filter": r"^listener\..*downstream_cx_active$"}
            )
        except HttpError:
            return None
        return active_downstream_connections(parse_stats(response.text))

    async def drain_listeners(self, *, graceful: bool = True, inbound_only: bool = False) -> bool:
        """POST ``/drain_listeners``. True if Envoy accepted it."""
        query = "&".join(
            flag for flag, on in (("inboundonly", inbound_only), ("graceful", graceful)) if on
        )
        try:
            response = await self._request(
                "POST", "/drain_listeners" + (f"?{query}" if query else "")
            )
        except HttpError:
            return False
        return response.status == 200

    async def prometheus(self) -> tuple[int, bytes, str]:
        """``/stats/prometheus``: status, body and content type (503 if admin is down)."""
        try:
            response = await self._request("GET", "/stats/prometheus")
        except HttpError as exc:
            return 503, f"Envoy admin is not reachable: {exc}\n".encode(), "text/plain"
        content_type = response.headers.get("content-type", "text/plain; version=0.0.4")
        return response.status, response.body, content_type
