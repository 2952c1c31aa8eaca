"""The built-in parts of the mesh under Istio's addon names, as config in the store.

Istio's tutorials and Telemetry providers name its addons by service: ``zipkin.istio-system``
(port 9411, and the collector's OTLP ports). Pilotfish's control plane runs the trace collector
itself, so it keeps a ``ServiceEntry`` ``istio-system/zipkin`` pointing at the collector's
address: Envoy's tracers and apps reach it by that name, as in an Istio mesh. It is labelled as
managed by Pilotfish, written only when missing or different, and visible like any config
(``pilotfish get se -n istio-system``).
"""

from __future__ import annotations

from typing import Any

from pilotfish.config.store.base import Key, Put, Store
from pilotfish.config.validation import validate

__all__ = ["MANAGED_BY", "ensure_addon_services", "zipkin_service_entry"]

MANAGED_BY = {"app.kubernetes.io/managed-by": "pilotfish"}


def zipkin_service_entry(address: str) -> dict[str, Any]:
    """``zipkin.istio-system``: the collector's Zipkin and OTLP ports at ``address``. Pure."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "zipkin", "namespace": "istio-system", "labels": dict(MANAGED_BY)},
        "spec": {
            "hosts": ["zipkin.istio-system.svc.cluster.local"],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [
                {"number": 9411, "name": "http-zipkin", "protocol": "HTTP"},
                {"number": 4317, "name": "grpc-otlp", "protocol": "GRPC"},
                {"number": 4318, "name": "http-otlp", "protocol": "HTTP"},
            ],
            "endpoints": [{"address": address}],
        },
    }


def ensure_addon_services(store: Store, address: str) -> bool:
    """Store the addon ServiceEntries for ``address`` when missing or different; True if
    something was written."""
    body = validate(zipkin_service_entry(address)).body
    current = store.get(Key("ServiceEntry", "istio-system", "zipkin"))
    if current is not None and current.body.get("spec") == body["spec"]:
        return False
    store.commit([Put(body)])
    return True
