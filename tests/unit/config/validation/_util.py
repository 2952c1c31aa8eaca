"""Helpers for validation tests: build bodies, collect the problems validate() reports."""

from __future__ import annotations

from typing import Any

from pilotfish.config.validation import Validated, validate
from pilotfish.errors import ValidationError

API_VERSIONS = {
    "VirtualService": "networking.istio.io/v1",
    "DestinationRule": "networking.istio.io/v1",
    "Gateway": "networking.istio.io/v1",
    "ServiceEntry": "networking.istio.io/v1",
    "WorkloadEntry": "networking.istio.io/v1",
    "WorkloadGroup": "networking.istio.io/v1",
    "Sidecar": "networking.istio.io/v1",
    "EnvoyFilter": "networking.istio.io/v1alpha3",
    "PeerAuthentication": "security.istio.io/v1",
    "AuthorizationPolicy": "security.istio.io/v1",
    "RequestAuthentication": "security.istio.io/v1",
    "Telemetry": "telemetry.istio.io/v1",
    "Namespace": "v1",
    "Service": "v1",
    "ServiceAccount": "v1",
    "Secret": "v1",
    "Deployment": "apps/v1",
    "Pod": "v1",
}


def body(kind: str, spec: Any = None, name: str = "test", **top: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": API_VERSIONS[kind],
        "kind": kind,
        "metadata": {"name": name},
    }
    if spec is not None:
        out["spec"] = spec
    out.update(top)
    return out


def problems(b: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (path, reason) validate() reports; [] when the body is valid."""
    try:
        validate(b)
    except ValidationError as e:
        return [(x.path, x.reason) for x in e.errors]
    return []


def ok(b: dict[str, Any]) -> Validated:
    """validate(), failing the test with every problem when the body is invalid."""
    found = problems(b)
    assert found == [], found
    return validate(b)


def has(b: dict[str, Any], path: str, reason_part: str) -> None:
    """Assert validate() reports ``reason_part`` at exactly ``path``."""
    found = problems(b)
    assert any(p == path and reason_part in r for p, r in found), found
