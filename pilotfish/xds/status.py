"""Sync status of connected proxies, as ``pilotfish proxy-status`` and the HTTP API show it.

One :class:`ProxyStatus` per connected xDS stream, with one :class:`TypeStatus` per resource
type: the version and nonce last sent, the version last ACKed, the last NACK. The sync state
follows ``istioctl proxy-status``: ``SYNCED`` when the last response was ACKed, ``STALE`` while
it waits for an answer (``STALE (Never Acknowledged)`` if nothing was ever ACKed), ``NOT SENT``
when nothing was sent, and ``NACKED`` when Envoy rejected the last response.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

SYNCED = "SYNCED"
STALE = "STALE"
STALE_NEVER_ACKED = "STALE (Never Acknowledged)"
NOT_SENT = "NOT SENT"
NACKED = "NACKED"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass(frozen=True)
class NackInfo:
    """A rejected response: the version Envoy still runs, its error message, when."""

    nonce: str
    version: str
    error: str
    code: int
    at: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = _iso(self.at)
        return out


@dataclass(frozen=True)
class GenerationError:
    """The control plane failed to generate a proxy's config: the proxy keeps what it has."""

    error: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error, "at": _iso(self.at)}


@dataclass(frozen=True)
class TypeStatus:
    type_url: str
    short_name: str
    sent_version: str = ""
    sent_nonce: str = ""
    sent_at: float | None = None
    acked_version: str = ""
    acked_nonce: str = ""
    acked_at: float | None = None
    last_nack: NackInfo | None = None
    #: Resource names the proxy subscribes to (empty with ``wildcard``).
    subscribed: tuple[str, ...] = ()
    wildcard: bool = False
    resource_count: int = 0

    @property
    def state(self) -> str:
        if not self.sent_nonce:
            return NOT_SENT
        if self.acked_nonce == self.sent_nonce:
            return SYNCED
        if self.last_nack is not None and self.last_nack.nonce == self.sent_nonce:
            return NACKED
        return STALE if self.acked_nonce else STALE_NEVER_ACKED

    def to_dict(self) -> dict[str, Any]:
        return {
            "type_url": self.type_url,
            "type": self.short_name,
            "state": self.state,
            "sent_version": self.sent_version,
            "sent_nonce": self.sent_nonce,
            "sent_at": _iso(self.sent_at),
            "acked_version": self.acked_version,
            "acked_nonce": self.acked_nonce,
            "acked_at": _iso(self.acked_at),
            "last_nack": self.last_nack.to_dict() if self.last_nack else None,
            "wildcard": self.wildcard,
            "subscribed": list(self.subscribed),
            "resource_count": self.resource_count,
        }


@dataclass(frozen=True)
class ProxyStatus:
    """One connected proxy (one ADS stream)."""

    connection_id: str
    node_id: str
    cluster: str
    namespace: str
    pod_name: str
    proxy_type: str
    protocol: str  # "SotW" or "Delta"
    peer: str
    connected_since: float
    #: A push is being delivered or waits to be.
    pushing: bool = False
    #: The proxy's IP, interception mode and Envoy admin port (as its node announced them).
    ip: str = ""
    interception_mode: str = ""
    admin_port: int | None = None
    #: The workload's labels and service account (what selectors and policies match).
    labels: dict[str, str] = field(default_factory=dict)
    service_account: str = ""
    types: dict[str, TypeStatus] = field(default_factory=dict)
    generation_error: GenerationError | None = None

    def state(self, short: str) -> str:
        """Sync state of one type by short name (``CDS``...), ``NOT SENT`` if unknown."""
        for t in self.types.values():
            if t.short_name == short:
                return t.state
        return NOT_SENT

    @property
    def synced(self) -> bool:
        """Every type that was sent is ACKed or NACKed (nothing is in flight)."""
        return not self.pushing and all(
            t.state in (SYNCED, NACKED) for t in self.types.values() if t.sent_nonce
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "node_id": self.node_id,
            "cluster": self.cluster,
            "namespace": self.namespace,
            "pod_name": self.pod_name,
            "proxy_type": self.proxy_type,
            "protocol": self.protocol,
            "peer": self.peer,
            "connected_since": _iso(self.connected_since),
            "pushing": self.pushing,
            "synced": self.synced,
            "ip": self.ip,
            "interception_mode": self.interception_mode,
            "admin_port": self.admin_port,
            "labels": dict(self.labels),
            "service_account": self.service_account,
            "types": {t.short_name: t.to_dict() for t in self.types.values()},
            "generation_error": (
                self.generation_error.to_dict() if self.generation_error is not None else None
            ),
        }
