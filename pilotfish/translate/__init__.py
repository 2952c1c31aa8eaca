"""Translation: pure functions from (proxy, PushContext) to Envoy resources, in Istio's names.

Entry point: ``generate(node, push) -> {type_url: {name: message}}`` (CDS, EDS, LDS, RDS).
Modules: ``clusters`` (CDS/EDS), ``trafficpolicy`` (DestinationRule policies), ``routes``
(VirtualService HTTP rules), ``route_configs`` (virtual hosts), ``listeners``, ``filters``
(HCM and HTTP filters), ``common`` (names and proto helpers).
"""

from pilotfish.api.typeurls import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE
from pilotfish.translate.common import ClusterKey
from pilotfish.translate.generator import Generator, Resources, generate, generator_for

__all__ = [
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "LISTENER_TYPE",
    "ROUTE_TYPE",
    "ClusterKey",
    "Generator",
    "Resources",
    "generate",
    "generator_for",
]
