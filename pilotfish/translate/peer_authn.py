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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pilotfish.api.security import MutualTLS, PeerAuthenticationSpec
from pilotfish.model.config import PolicyConfig
from pilotfish.model.push_context import PushContext

PeerAuthentication = PolicyConfig[PeerAuthenticationSpec]

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
    #: ``namespace/name`` of the PeerAuthentication that set ``mode`` (None: the default).
    decided_by: str | None = None
    #: The workload-level policy that set the ``ports`` overrides.
    ports_decided_by: str | None = None

    def for_port(self, port: int) -> str:
        for number, mode in self.ports:
            if number == port:
                return mode
        return self.mode

    def decided_for_port(self, port: int) -> str | None:
        """The PeerAuthentication that decided ``for_port(port)`` (None: the default)."""
        if any(number == port for number, _ in self.ports):
            return self.ports_decided_by
        return self.decided_by

    @property
    def modes(self) -> frozenset[str]:
        return frozenset({self.mode, *(m for _, m in self.ports)})


def _mode(mtls: MutualTLS | None) -> str:
    mode = ((mtls.mode if mtls is not None else None) or UNSET).upper()
    return mode if mode in MODES else UNSET


def _selector(policy: PeerAuthentication) -> dict[str, str] | None:
    sel = policy.spec.selector.matchLabels if policy.spec.selector is not None else None
    return dict(sel) if sel else None


def _age(policy: PeerAuthentication) -> tuple[str, str, str]:
    # Objects without a timestamp sort by store revision (older first).
    return (policy.creation or f"~{policy.revision:012d}", policy.namespace, policy.name)


def _oldest(policies: list[PeerAuthentication]) -> PeerAuthentication | None:
    return min(policies, key=_age) if policies else None


def compose(
    policies: Sequence[PeerAuthentication],
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
    decided_by: str | None = None
    for level in (mesh_level, ns_level, workload_level):
        if level is None:
            continue
        here = _mode(level.spec.mtls)
        if here != UNSET:
            mode = here
            decided_by = f"{level.namespace}/{level.name}"
    ports: list[tuple[int, str]] = []
    ports_by: str | None = None
    if workload_level is not None:
        for number, value in workload_level.spec.portLevelMtls.items():
            port_mode = _mode(value)
            ports.append((number, mode if port_mode == UNSET else port_mode))
        if ports:
            ports_by = f"{workload_level.namespace}/{workload_level.name}"
    return MtlsPolicy(mode, tuple(sorted(ports)), decided_by, ports_by)


def workload_policy(push: PushContext, namespace: str, labels: Mapping[str, str]) -> MtlsPolicy:
    """:func:`compose` over the context's PeerAuthentications (memoized per workload labels)."""
    key = ("peer_authn", namespace, tuple(sorted(labels.items())))
    return push.memo(
        key,
        lambda: compose(push.peer_authentications, namespace, labels, push.settings.root_namespace),
    )


__all__ = ["DISABLE", "PERMISSIVE", "STRICT", "MtlsPolicy", "compose", "workload_policy"]
