"""Translation: pure functions from (proxy, PushContext) to Envoy resources, in Istio's names.

Entry point: ``generate_config(node, push)``: CDS, EDS, LDS and RDS as
``{type_url: {name: message}}``, and the names of the ``credentialName`` secrets they refer to
(resolved by the xDS secrets generator: translation never reads a Secret); ``generate`` is the
resources alone.
Modules: ``clusters`` (CDS/EDS), ``trafficpolicy`` (DestinationRule policies), ``routes``
(VirtualService HTTP rules), ``route_configs`` (virtual hosts), ``listeners``, ``filters``
(HCM and HTTP filters), ``common`` (names and proto helpers).
"""

from pilotfish.api.typeurls import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE
from pilotfish.translate.common import ClusterKey
from pilotfish.translate.generator import ProxyConfig, Resources, generate, generate_config

__all__ = [
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "LISTENER_TYPE",
    "ROUTE_TYPE",
    "ClusterKey",
    "ProxyConfig",
    "Resources",
    "generate",
    "generate_config",
]
