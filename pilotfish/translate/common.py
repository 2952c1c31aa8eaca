"""Names and small proto helpers every translator uses.

Names follow Istio so that config dumps read the same: ``outbound|9080|v1|reviews.default...``
and ``inbound|9080||`` clusters (each the ``name`` of a ``ClusterKey``), ``PassthroughCluster``,
``BlackHoleCluster``, ``InboundPassthroughCluster``, listeners ``virtualOutbound``/
``virtualInbound``, route configs named by port (``9080``) and ``http.8080`` for gateways.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, TypeGuard, TypeVar

from envoy.config.core.v3 import address_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message
from pydantic import BaseModel

from pilotfish.api.duration import Duration

M = TypeVar("M", bound=BaseModel)

PASSTHROUGH_CLUSTER = "PassthroughCluster"
BLACKHOLE_CLUSTER = "BlackHoleCluster"
INBOUND_PASSTHROUGH_CLUSTER = "InboundPassthroughCluster"
VIRTUAL_OUTBOUND = "virtualOutbound"
OUTBOUND_CAPTURE = 15001
INBOUND_CAPTURE = 15006
VIRTUAL_INBOUND = "virtualInbound"
#: Source address the inbound passthrough binds so capture rules let it reach the app.
INBOUND_PASSTHROUGH_BIND_IP = "127.0.0.6"


class ClusterKey(NamedTuple):
    """What an Istio cluster is for: direction, port, subset and host. Translators carry keys
    and look things up by their fields; ``name`` is the only place the Istio name is made."""

    direction: Literal["inbound", "outbound"]
    port: int
    subset: str = ""
    host: str = ""

    @classmethod
    def outbound(cls, port: int, subset: str, host: str) -> ClusterKey:
        return cls("outbound", port, subset, host)

    @classmethod
    def inbound(cls, port: int) -> ClusterKey:
        return cls("inbound", port)

    @property
    def name(self) -> str:
        """``outbound|9080|v1|reviews.default.svc.cluster.local``, ``inbound|9080||``."""
        return f"{self.direction}|{self.port}|{self.subset}|{self.host}"

    @classmethod
    def parse(cls, name: str) -> ClusterKey | None:
        """The key of an Istio cluster name (None for other names, ``PassthroughCluster``...)."""
        parts = name.split("|")
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        direction, port, subset, host = parts
        if direction == "inbound":
            return cls("inbound", int(port), subset, host)
        if direction == "outbound":
            return cls("outbound", int(port), subset, host)
        return None


def pack(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg)
    return out


def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    whole = int(seconds)
    d.seconds = whole
    d.nanos = round((seconds - whole) * 1e9)
    return d


def proto_duration(value: Duration) -> duration_pb2.Duration:
    """A model's duration field (parsed when the model was)."""
    return duration(value.seconds)


def given(value: M | None) -> TypeGuard[M]:
    """True when a message field was written with at least one field: an empty ``{}`` counts
    as not given."""
    return value is not None and bool(value.model_fields_set)


def u32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)


def socket_address(ip: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=ip, port_value=port)
    )
