"""xDS delivery: the ADS gRPC server (SotW and Delta) and its contract with the control plane.

The rest of the control plane provides a :data:`Generator`, ``(NodeInfo) -> Resources``, where
``Resources`` maps a type URL (:data:`CLUSTER_TYPE`, :data:`ENDPOINT_TYPE`,
:data:`LISTENER_TYPE`, :data:`ROUTE_TYPE`, :data:`SECRET_TYPE`, :data:`EXTENSION_CONFIG_TYPE`)
to ``{name: protobuf message}``.
It calls :meth:`DiscoveryServer.push` with a :class:`PushRequest` after every change, and reads
:meth:`DiscoveryServer.status` for proxy-status. The server debounces pushes, regenerates per
connected proxy, diffs by content hash and sends only what changed, in make-before-break order.

Modules: ``resources`` (types, cache, snapshots) · ``protocol`` (ACK/NACK/stale decisions) ·
``ordering`` (push steps) · ``push`` (PushRequest, debounce) · ``connection`` (one stream as a
state machine) · ``server`` (gRPC) · ``status`` · ``settings`` · ``secrets`` (the secrets
generator: the ``kubernetes://`` names translation gives, resolved into SDS Secrets from the
stored Secrets; the only reader of Secret bodies) · ``client`` (a Python ADS client for
benchmarks and tests).
"""

from pilotfish.xds.push import DebounceSettings, PushRequest
from pilotfish.xds.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    EXTENSION_CONFIG_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    VIRTUAL_HOST_TYPE,
    Generator,
    Resources,
)
from pilotfish.xds.server import DiscoveryServer, parse_node
from pilotfish.xds.settings import TlsSettings, XdsSettings
from pilotfish.xds.status import GenerationError, NackInfo, ProxyStatus, TypeStatus

__all__ = [
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "EXTENSION_CONFIG_TYPE",
    "LISTENER_TYPE",
    "ROUTE_TYPE",
    "SECRET_TYPE",
    "VIRTUAL_HOST_TYPE",
    "DebounceSettings",
    "DiscoveryServer",
    "GenerationError",
    "Generator",
    "NackInfo",
    "ProxyStatus",
    "PushRequest",
    "Resources",
    "TlsSettings",
    "TypeStatus",
    "XdsSettings",
    "parse_node",
]
