"""The model: one immutable, indexed view of config and registry (``PushContext``), the
proxies it is computed for (``Proxy``), and the JSON Web Key Sets RequestAuthentication rules
name (``jwks``, fetched beside the push pipeline, as Istio's model resolves them). Host rules
as Istio reads them live in :mod:`pilotfish.api.hosts` (re-exported here).
"""

from pilotfish.api.hosts import (
    MESH_GATEWAY,
    host_matches,
    hosts_intersect,
    normalize_gateway,
    resolve_host,
)
from pilotfish.model.config import (
    DestinationRuleConfig,
    GatewayConfig,
    VirtualServiceConfig,
)
from pilotfish.model.proxy import Proxy, ServiceInstance
from pilotfish.model.push_context import MeshSettings, PushContext

__all__ = [
    "MESH_GATEWAY",
    "DestinationRuleConfig",
    "GatewayConfig",
    "MeshSettings",
    "Proxy",
    "PushContext",
    "ServiceInstance",
    "VirtualServiceConfig",
    "host_matches",
    "hosts_intersect",
    "normalize_gateway",
    "resolve_host",
]
