"""WorkloadGroup auto-registration: a WorkloadEntry per connected agent of a group (Istio's).

An agent started with ``--workload-group NAME`` sends ``AUTO_REGISTER_GROUP: NAME`` in its
node metadata and names itself ``<NAME>-<IP>``. When its xDS stream opens, the control plane
stores the WorkloadEntry ``<NAME>-<IP>`` built from the group's template (labels, ports,
service account, network, locality, weight) with the agent's address, annotated with the
group and the replica that manages it. When the agent has been gone for the reconnect grace,
the replica that manages the entry deletes it; an agent that reconnected meanwhile, here or
to another replica (which then manages it), keeps it. When the managing replica itself is gone
(killed, restarted: a restarted control plane is a new replica), :meth:`AutoRegistration.sweep`
on the leader deletes its entries that no agent took back within the cleanup grace.

The registry merges the connected sidecar with its entry (as with a Pod): the entry gives the
template's labels, named ports and health, the sidecar its explicit-mode port mapping.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pilotfish.api.networking import (
    AUTO_REGISTRATION_GROUP_ANNOTATION,
    WORKLOAD_CONTROLLER_ANNOTATION,
    auto_registered_entry,
)
from pilotfish.api.node import AUTO_REGISTER_GROUP_METADATA, NodeInfo
from pilotfish.config.store.base import Delete, Key, Put, Store
from pilotfish.errors import PilotfishError

log = logging.getLogger("pilotfish.registry.autoregister")


def group_of(node: NodeInfo) -> str:
    """The WorkloadGroup a sidecar asks to register into, or ``""``."""
    if node.proxy_type != "sidecar":
        return ""
    return str(node.extra.get(AUTO_REGISTER_GROUP_METADATA) or "")


def registration_problem(
    node: NodeInfo,
    group_body: dict[str, Any] | None,
    token_namespace: str,
    token_service_account: str,
    token_group: str,
) -> str:
    """Why ``node``, whose token proves ``token_namespace``/``token_service_account`` and is
    bound to ``token_group`` (``""``: to none), may not register into the group it asks for;
    ``""`` when it may. As Istio, the proxy's identity must be the group's: its namespace and
    its template's service account; and the token must be bound to that very group. Pure."""
    group = group_of(node)
    where = f"WorkloadGroup {node.namespace}/{group}"
    if group_body is None:
        return f"{where} does not exist"
    if token_group != group:
        bound = f"WorkloadGroup {token_group}" if token_group else "no WorkloadGroup"
        return f"its token is bound to {bound}, not to {where}"
    if token_namespace != node.namespace:
        return f"its token is for namespace {token_namespace}, not {node.namespace}"
    template = (group_body.get("spec") or {}).get("template") or {}
    account = str(template.get("serviceAccount") or "default")
    if token_service_account != account:
        return (
            f"its token is for service account {token_service_account}, and {where} "
            f"has template.serviceAccount {account}"
        )
    if node.service_account != account:
        return (
            f"it names service account {node.service_account}, and {where} has "
            f"template.serviceAccount {account}"
        )
    return ""


def with_health_condition(status: Any, healthy: bool, message: str) -> dict[str, Any]:
    """``status`` with its ``Healthy`` condition set as Istio's health controller writes it
    (``status: "True"``, or ``"False"`` with the probe's message). Pure."""
    out = dict(status) if isinstance(status, dict) else {}
    conditions = [
        c for c in out.get("conditions") or [] if isinstance(c, dict) and c.get("type") != "Healthy"
    ]
    condition: dict[str, Any] = {
        "type": "Healthy",
        "status": "True" if healthy else "False",
        "lastProbeTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if not healthy and message:
        condition["message"] = message
    out["conditions"] = [*conditions, condition]
    return out


class AutoRegistration:
    """Creates and removes auto-registered WorkloadEntries in ``store``. ``controller`` names
    this control plane replica (it only deletes the entries it manages)."""

    def __init__(self, store: Store, controller: str) -> None:
        self.store = store
        self.controller = controller
        #: The latest health each agent reported, by (namespace, entry name): applied when
        #: its entry is (re)created, since the report may come before Envoy's stream.
        self._health: dict[tuple[str, str], tuple[bool, str]] = {}
        #: Entries whose managing replica was found gone: (revision then, when first found).
        self._orphans: dict[Key, tuple[int, float]] = {}

    def connected(self, node: NodeInfo) -> str | None:
        """Store the node's WorkloadEntry; its name, or None (no group asked, or none found)."""
        group_name = group_of(node)
        if not group_name:
            return None
        group = self.store.get(Key("WorkloadGroup", node.namespace, group_name))
        if group is None:
            log.warning(
                "proxy %s asked to register into WorkloadGroup %s/%s, which does not exist: "
                "no WorkloadEntry created",
                node.node_id,
                node.namespace,
                group_name,
            )
            return None
        body = auto_registered_entry(group.body, node.ip, dict(node.labels), self.controller)
        name = str(body["metadata"]["name"])
        reported = self._health.get((node.namespace, name))
        if reported is not None:
            body["status"] = with_health_condition(None, *reported)
        else:
            # Reconnected from another replica (failover, maximum connection age) while its
            # health reports go elsewhere: keep the health already stored, or an unhealthy
            # entry would serve again until the agent's next change of health.
            current = self.store.get(Key("WorkloadEntry", node.namespace, name))
            meta = (current.body.get("metadata") or {}) if current is not None else {}
            ours = (meta.get("annotations") or {}).get(AUTO_REGISTRATION_GROUP_ANNOTATION)
            if current is not None and ours == group_name and current.body.get("status"):
                body["status"] = copy.deepcopy(current.body["status"])
        if name != node.pod_name:
            log.warning(
                "proxy %s registers into WorkloadGroup %s/%s as %s (the group's network "
                "changes the name)",
                node.node_id,
                node.namespace,
                group_name,
                name,
            )
        try:
            self.store.commit([Put(body)])
        except PilotfishError as exc:
            log.warning("could not store WorkloadEntry %s/%s: %s", node.namespace, name, exc)
            return None
        log.info("registered WorkloadEntry %s/%s (%s)", node.namespace, name, node.ip)
        return name

    def health(self, node: NodeInfo, healthy: bool, message: str) -> bool:
        """The node's agent reports its probe result: set its entry's ``Healthy`` condition
        (as Istio's health controller; EDS leaves unhealthy endpoints out). True if written."""
        key = Key("WorkloadEntry", node.namespace, node.pod_name)
        self._health[(node.namespace, node.pod_name)] = (healthy, message)
        for _ in range(3):
            current = self.store.get(key)
            if current is None:
                log.info("health of %s kept until its WorkloadEntry %s exists", node.node_id, key)
                return False
            annotations = (current.body.get("metadata") or {}).get("annotations") or {}
            if annotations.get(AUTO_REGISTRATION_GROUP_ANNOTATION) != group_of(node):
                return False  # not this group's auto-registered entry
            body = copy.deepcopy(current.body)
            body["status"] = with_health_condition(body.get("status"), healthy, message)
            try:
                self.store.commit([Put(body, expected_revision=current.revision)])
            except PilotfishError as exc:
                log.info("health of WorkloadEntry %s/%s: %s", node.namespace, node.pod_name, exc)
                continue
            log.info(
                "WorkloadEntry %s/%s is %s",
                node.namespace,
                node.pod_name,
                "healthy" if healthy else f"unhealthy ({message})",
            )
            return True
        return False

    def left(self, node: NodeInfo, name: str) -> bool:
        """The node has been gone for the grace: delete its entry if this replica manages it.
        True when deleted."""
        key = Key("WorkloadEntry", node.namespace, name)
        self._health.pop((node.namespace, name), None)
        current = self.store.get(key)
        if current is None:
            return False
        annotations = (current.body.get("metadata") or {}).get("annotations") or {}
        if annotations.get(WORKLOAD_CONTROLLER_ANNOTATION) != self.controller:
            return False  # reconnected to another replica, which manages it now
        if annotations.get(AUTO_REGISTRATION_GROUP_ANNOTATION) != group_of(node):
            return False  # not an auto-registered entry of that group
        try:
            self.store.commit([Delete(key, expected_revision=current.revision)])
        except PilotfishError as exc:
            log.info("kept WorkloadEntry %s/%s: %s", node.namespace, name, exc)
            return False
        log.info("removed WorkloadEntry %s/%s: its proxy left", node.namespace, name)
        return True

    def sweep(self, alive: Callable[[str], bool], now: float, grace: float) -> list[Key]:
        """Delete the auto-registered entries whose managing replica is gone (``alive`` says
        no for the replica named in ``istio.io/workloadController``) and that nothing rewrote
        for ``grace`` seconds since they were first found so (``now``: a monotonic clock). An
        agent that reconnects to any replica rewrites its entry, naming that replica, so a
        rewritten entry is kept; an agent that left while its replica was gone is never back,
        and its entry must not keep an endpoint that answers nobody. Returns what was
        deleted. Run by one replica at a time (the leader)."""
        deleted: list[Key] = []
        seen: set[Key] = set()
        alive_memo: dict[str, bool] = {}
        for stored in self.store.list("WorkloadEntry"):
            annotations = (stored.body.get("metadata") or {}).get("annotations") or {}
            if not annotations.get(AUTO_REGISTRATION_GROUP_ANNOTATION):
                continue
            controller = str(annotations.get(WORKLOAD_CONTROLLER_ANNOTATION) or "")
            if controller == self.controller:
                continue  # ours: removed by left() once its agent has gone for the grace
            if controller not in alive_memo:
                alive_memo[controller] = bool(controller) and alive(controller)
            if alive_memo[controller]:
                continue
            seen.add(stored.key)
            revision, since = self._orphans.get(stored.key, (stored.revision, now))
            if revision != stored.revision:  # rewritten meanwhile: count from now
                revision, since = stored.revision, now
            self._orphans[stored.key] = (revision, since)
            if now - since < grace:
                continue
            try:
                self.store.commit([Delete(stored.key, expected_revision=stored.revision)])
            except PilotfishError as exc:
                log.info("kept WorkloadEntry %s: %s", stored.key, exc)
                continue
            self._orphans.pop(stored.key, None)
            deleted.append(stored.key)
            log.info(
                "removed WorkloadEntry %s/%s: the replica that managed it (%s) is gone and "
                "its agent did not reconnect within %.0f s",
                stored.key.namespace,
                stored.key.name,
                controller or "none",
                grace,
            )
        for key in set(self._orphans) - seen:
            self._orphans.pop(key, None)
        return deleted
