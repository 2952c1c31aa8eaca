"""Resource bodies for store tests."""

from __future__ import annotations

from typing import Any


def vs(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A VirtualService body."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec or {"hosts": [name]},
    }
