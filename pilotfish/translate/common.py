"""Names and small proto helpers every translator uses.

Names follow Istio so that config dumps read the same: ``outbound|9080|v1|reviews.default...``
clusters, ``inbound|9080||`` clusters, ``PassthroughCluster``, ``BlackHoleCluster``,
``InboundPassthroughCluster``, listeners ``virtualOutbound``/``virtualInbound``, route configs
named by port (``9080``) and ``http.8080`` for gateways.
"""

from __future__ import annotations

from typing import TypeGuard, TypeVar

from envoy.config.core.v3 import address_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message
from pydantic import BaseModel

from pilotfish.api.duration import Duration, parse_duration

M = TypeVar("M", bound=BaseModel)

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

PASSTHROUGH_CLUSTER = "PassthroughCluster"
BLACKHOLE_CLUSTER = "BlackHoleCluster"
INBOUND_PASSTHROUGH_CLUSTER = "InboundPassthroughCluster"
VIRTUAL_OUTBOUND = "virtualOutbound"
OUTBOUND_CAPTURE = 15001
INBOUND_CAPTURE = 15006
VIRTUAL_INBOUND = "virtualInbound"
#: Source address the inbound passthrough binds so capture rules let it reach the app.
INBOUND_PASSTHROUGH_BIND_IP = "127.0.0.6"


def outbound_cluster_name(port: int, subset: str, hostname: str) -> str:
    return f"outbound|{port}|{subset}|{hostname}"


def inbound_cluster_name(port: int) -> str:
    return f"inbound|{port}||"


def parse_cluster_name(name: str) -> tuple[str, int, str, str] | None:
    """``(direction, port, subset, host)`` of an Istio-style cluster name, else None."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] not in ("inbound", "outbound") or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2], parts[3]


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


def istio_duration(text: str) -> duration_pb2.Duration:
    """A duration as Istio writes it (``"1.5s"``, ``"100ms"``)."""
    return duration(parse_duration(text))


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
