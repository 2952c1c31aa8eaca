"""The mesh config in force: Istio's defaults overlaid with the stored IstioOperators."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pilotfish.api.meshconfig import MeshConfig, mesh_config_from_bodies
from pilotfish.config.store.base import Store

__all__ = ["mesh_config_of"]


def mesh_config_of(store: Store, pending: Sequence[Mapping[str, Any]] = ()) -> MeshConfig:
    """The stored IstioOperators' mesh config, with ``pending`` bodies replacing stored ones
    of the same namespace and name (a batch being applied)."""
    bodies: dict[tuple[str, str], Mapping[str, Any]] = {}
    for obj in store.list("IstioOperator"):
        bodies[(obj.key.namespace, obj.key.name)] = obj.body
    for body in pending:
        meta = body["metadata"]
        bodies[(str(meta.get("namespace") or ""), str(meta["name"]))] = body
    return mesh_config_from_bodies(bodies.values())
