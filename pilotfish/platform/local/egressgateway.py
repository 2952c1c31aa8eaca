"""Istio's egress gateway as the local mesh runs it: ``istio-system/istio-egressgateway``.

When the install profile turns it on (``components.egressGateways[0]``, on in ``demo``), ``up``
applies what Istio's chart installs, shaped for the local runtime: a Deployment whose pod
template uses Istio's gateway injection (``inject.istio.io/templates: gateway``, an
``istio-proxy`` container of image ``auto``), so the runtime runs the proxy as a router in a
pod of its own (no capture, a workload certificate), labelled ``istio: egressgateway``; and a
Service mapping 80 -> 8080 and 443 -> 8443 as Istio's does. Both carry the
``app.kubernetes.io/managed-by: pilotfish`` label; a profile without the egress gateway
deletes them. Pure.
"""

from __future__ import annotations

from typing import Any

from pilotfish.api.mesh import GATEWAY_PORTS
from pilotfish.api.profiles import EGRESS_GATEWAY
from pilotfish.config.addons import MANAGED_BY

__all__ = ["EGRESS_LABELS", "egress_gateway_objects", "egress_gateway_refs"]

NAMESPACE = "istio-system"
SERVICE_ACCOUNT = "istio-egressgateway-service-account"
#: The labels Istio's egress gateway pods carry (what Gateways select).
EGRESS_LABELS = {"app": EGRESS_GATEWAY, "istio": "egressgateway"}
#: Istio's egress gateway Service ports: (name, port); the target is the gateway's port map.
_PORTS = (("http2", 80), ("https", 443))


def egress_gateway_objects() -> list[dict[str, Any]]:
    """The Deployment and Service of the egress gateway. Pure."""
    ports = [
        {"name": name, "port": port, "targetPort": GATEWAY_PORTS[port], "protocol": "TCP"}
        for name, port in _PORTS
    ]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": EGRESS_GATEWAY, "namespace": NAMESPACE, "labels": dict(MANAGED_BY)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(EGRESS_LABELS)},
            "template": {
                "metadata": {
                    "labels": {**EGRESS_LABELS, "sidecar.istio.io/inject": "true"},
                    "annotations": {"inject.istio.io/templates": "gateway"},
                },
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "containers": [
                        {
                            "name": "istio-proxy",
                            "image": "auto",
                            "ports": [
                                {"containerPort": GATEWAY_PORTS[port], "protocol": "TCP"}
                                for _, port in _PORTS
                            ],
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": EGRESS_GATEWAY, "namespace": NAMESPACE, "labels": dict(MANAGED_BY)},
        "spec": {"selector": dict(EGRESS_LABELS), "ports": ports},
    }
    return [deployment, service]


def egress_gateway_refs() -> list[dict[str, str]]:
    """What deleting the egress gateway removes (the API's delete items). Pure."""
    return [
        {"kind": kind, "namespace": NAMESPACE, "name": EGRESS_GATEWAY}
        for kind in ("Deployment", "Service")
    ]
