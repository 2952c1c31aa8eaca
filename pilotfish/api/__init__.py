"""Resource kinds and their typed models.

``MODELS`` maps each served kind to its pydantic model (attribute names are Istio's and
Kubernetes' JSON names: ``vs.spec.http[0].route[0].destination.host``); ``parse`` checks a body
against its kind's schema. Semantic validation lives in :mod:`pilotfish.config.validation`.
"""

from typing import TYPE_CHECKING

from pilotfish.lazy import lazy_exports

if TYPE_CHECKING:
    from pilotfish.api.core import Event, Namespace, Secret, Service, ServiceAccount
    from pilotfish.api.destinationrule import DestinationRule
    from pilotfish.api.duration import is_duration, parse_duration
    from pilotfish.api.kinds import KINDS, KindInfo, by_kind, for_api_version, lookup
    from pilotfish.api.meta import Model, ObjectMeta, Resource
    from pilotfish.api.models import (
        MODELS,
        field_errors,
        model_for,
        parse,
        parse_as,
        resource_ref,
    )
    from pilotfish.api.networking import (
        EnvoyFilter,
        Gateway,
        ServiceEntry,
        Sidecar,
        WorkloadEntry,
        WorkloadGroup,
    )
    from pilotfish.api.security import (
        AuthorizationPolicy,
        PeerAuthentication,
        RequestAuthentication,
    )
    from pilotfish.api.telemetry import Telemetry
    from pilotfish.api.virtualservice import VirtualService
    from pilotfish.api.workloads import Deployment, Pod

# The models (pydantic) load only when first used, so that light users of this package (the
# kind table, the node contract: the sidecar agent, the CLI) start fast.
_WHERE = {
    "Event": "core", "Namespace": "core", "Secret": "core", "Service": "core",
    "ServiceAccount": "core",
    "DestinationRule": "destinationrule",
    "is_duration": "duration", "parse_duration": "duration",
    "KINDS": "kinds", "KindInfo": "kinds", "by_kind": "kinds", "for_api_version": "kinds",
    "lookup": "kinds",
    "Model": "meta", "ObjectMeta": "meta", "Resource": "meta",
    "MODELS": "models", "field_errors": "models", "model_for": "models", "parse": "models",
    "parse_as": "models", "resource_ref": "models",
    "EnvoyFilter": "networking", "Gateway": "networking", "ServiceEntry": "networking",
    "Sidecar": "networking", "WorkloadEntry": "networking",
    "WorkloadGroup": "networking",
    "AuthorizationPolicy": "security", "PeerAuthentication": "security",
    "RequestAuthentication": "security",
    "Telemetry": "telemetry",
    "VirtualService": "virtualservice",
    "Deployment": "workloads", "Pod": "workloads",
}  # fmt: skip


__getattr__ = lazy_exports(__name__, _WHERE)

__all__ = [
    "KINDS",
    "MODELS",
    "AuthorizationPolicy",
    "Deployment",
    "DestinationRule",
    "EnvoyFilter",
    "Event",
    "Gateway",
    "KindInfo",
    "Model",
    "Namespace",
    "ObjectMeta",
    "PeerAuthentication",
    "Pod",
    "RequestAuthentication",
    "Resource",
    "Secret",
    "Service",
    "ServiceAccount",
    "ServiceEntry",
    "Sidecar",
    "Telemetry",
    "VirtualService",
    "WorkloadEntry",
    "WorkloadGroup",
    "by_kind",
    "field_errors",
    "for_api_version",
    "is_duration",
    "lookup",
    "model_for",
    "parse",
    "parse_as",
    "parse_duration",
    "resource_ref",
]
