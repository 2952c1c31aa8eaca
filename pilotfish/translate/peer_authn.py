"""PeerAuthentication: which inbound connections a workload accepts (pure).

Istio's precedence, most specific first:

1. workload: a policy in the workload's namespace whose ``selector.matchLabels`` match its
   labels; ``portLevelMtls`` (keyed by the workload's port, the app's target port) applies only
   from such a policy;
2. namespace: a policy without selector in the workload's namespace;
3. mesh: a policy without selector in the root namespace (``istio-system``);
4. ``PERMISSIVE`` when nothing says otherwise.

``UNSET`` (or no ``mtls``) inherits from the next level; a port's ``UNSET`` inherits the
workload's mode. When several policies compete at one level the oldest wins (creation time,
then name), as in Istio.

Modes: ``STRICT`` accepts only mTLS with a client certificate from the mesh roots;
``PERMISSIVE`` accepts mTLS and plaintext (the TLS inspector tells them apart); ``DISABLE``
accepts plaintext only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pilotfish.config.store.base import StoredObject
from pilotfish.model.push_context import PushContext

STRICT = "STRICT"
PERMISSIVE = "PERMISSIVE"
DISABLE = "DISABLE"
UNSET = "UNSET"
MODES = (STRICT, PERMISSIVE, DISABLE)


@dataclass(frozen=True)
class MtlsPolicy:
    """The effective inbound mTLS mode of one workload, with per-port overrides."""

    mode: str = PERMISSIVE
    ports: tuple[tuple[int, str], ...] = ()

    def for_port(self, port: int) -> str:
        for number, mode in self.ports:
            if number == port:
                return mode
        return self.mode

    @property
    def modes(self) -> frozenset[str]:
        return frozenset({self.mode, *(m for _, m in self.ports)})


def _mode(spec: Mapping[str, Any] | None) -> str:
    mode = str(((spec or {}).get("mode")) or UNSET).upper()
    return mode if mode in MODES else UNSET


def _selector(obj: StoredObject) -> dict[str, str] | None:
    sel = ((obj.body.get("spec") or {}).get("selector") or {}).get("matchLabels")
    if not sel:
        return None
    return {str(k): str(v) for k, v in sel.items()}


def _age(obj: StoredObject) -> tuple[str, str, str]:
    created = str((obj.body.get("metadata") or {}).get("creationTimestamp") or "")
    # Objects without a timestamp sort by store revision (older first).
    return (created or f"~{obj.revision:012d}", obj.namespace, obj.name)


def _oldest(objs: list[StoredObject]) -> StoredObject | None:
    return min(objs, key=_age) if objs else None


def compose(
    policies: tuple[StoredObject, ...] | list[StoredObject],
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str = "istio-system",
) -> MtlsPolicy:
    """The effective policy for a workload of ``namespace`` with ``labels``."""
    mesh_level = _oldest(
        [p for p in policies if p.namespace == root_namespace and _selector(p) is None]
    )
    ns_level = None
    if namespace != root_namespace:
        ns_level = _oldest(
            [p for p in policies if p.namespace == namespace and _selector(p) is None]
        )
    workload_level = _oldest(
        [
            p
            for p in policies
            if p.namespace == namespace
            and (sel := _selector(p)) is not None
            and all(labels.get(k) == v for k, v in sel.items())
        ]
    )

    mode = PERMISSIVE
    for level in (mesh_level, ns_level, workload_level):
        if level is None:
            continue
        here = _mode((level.body.get("spec") or {}).get("mtls"))
        if here != UNSET:
            mode = here
    ports: list[tuple[int, str]] = []
    if workload_level is not None:
        raw = (workload_level.body.get("spec") or {}).get("portLevelMtls") or {}
        for key, value in raw.items():
            try:
                number = int(key)
            except (TypeError, ValueError):
                continue
            port_mode = _mode(value)
            ports.append((number, mode if port_mode == UNSET else port_mode))
    return MtlsPolicy(mode, tuple(sorted(ports)))


def workload_policy(push: PushContext, namespace: str, labels: Mapping[str, str]) -> MtlsPolicy:
    """:func:`compose` over the context's PeerAuthentications (memoized per workload labels)."""
    key = ("peer_authn", namespace, tuple(sorted(labels.items())))
    return push.memo(
        key,
        lambda: compose(
            push.policies("PeerAuthentication"), namespace, labels, push.settings.root_namespace
        ),
    )


__all__ = ["DISABLE", "PERMISSIVE", "STRICT", "MtlsPolicy", "compose", "workload_policy"]
