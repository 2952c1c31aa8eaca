"""WorkloadGroup auto-registration: Istio's entry names, the entry built from the template,
and a connected agent merged with its entry in the registry."""

from __future__ import annotations

from pilotfish.api.networking import auto_registered_entry, auto_registered_name
from pilotfish.api.node import NodeInfo
from pilotfish.config.store.base import StoredObject, key_of
from pilotfish.registry import Registry
from pilotfish.registry.vip import VipAllocator

GROUP = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "WorkloadGroup",
    "metadata": {"name": "vm", "namespace": "apps", "uid": "u1"},
    "spec": {
        "metadata": {"labels": {"app": "vm"}, "annotations": {"team": "a"}},
        "template": {
            "labels": {"version": "v1"},
            "serviceAccount": "vmsa",
            "ports": {"http": 8080},
        },
    },
}


def test_names_follow_istio() -> None:
    assert auto_registered_name("vm", "10.0.0.7") == "vm-10.0.0.7"
    assert auto_registered_name("vm", "fd00::7") == "vm-fd00--7"
    assert auto_registered_name("vm", "10.0.0.7", "net1") == "vm-10.0.0.7-net1"


def test_entry_from_template() -> None:
    we = auto_registered_entry(GROUP, "10.0.0.7", {"zone": "z"}, "cp-1")
    assert we["kind"] == "WorkloadEntry"
    assert we["metadata"]["name"] == "vm-10.0.0.7"
    assert we["metadata"]["namespace"] == "apps"
    assert we["spec"]["address"] == "10.0.0.7"
    assert we["spec"]["labels"] == {"version": "v1", "app": "vm", "zone": "z"}
    assert we["spec"]["serviceAccount"] == "vmsa"
    assert we["metadata"]["annotations"]["istio.io/autoRegistrationGroup"] == "vm"
    assert we["metadata"]["annotations"]["team"] == "a"
    assert we["metadata"]["ownerReferences"][0]["name"] == "vm"
    # The stored group is not changed.
    assert "address" not in GROUP["spec"]["template"]  # type: ignore[operator]


def test_connected_agent_merges_with_its_entry() -> None:
    we = auto_registered_entry(GROUP, "127.1.2.3", {}, "cp-1")
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "vm", "namespace": "apps"},
        "spec": {"selector": {"app": "vm"}, "ports": [{"name": "http", "port": 80}]},
    }
    reg = Registry(vips=VipAllocator())
    reg.sidecars.connected(
        NodeInfo(
            "sidecar",
            "127.1.2.3",
            we["metadata"]["name"],
            "apps",
            interception_mode="NONE",
            outbound_port=15001,
            inbound_ports={8080: 18080},
        )
    )
    snap = reg.snapshot([StoredObject(key_of(svc), svc, 1), StoredObject(key_of(we), we, 2)])
    assert list(snap.workloads) == ["Sidecar/apps/vm-127.1.2.3"]
    (ep,) = snap.endpoints[("vm.apps.svc.cluster.local", 80)]
    # The template's port for "http" (8080), dialled on the agent's inbound listener for it.
    assert (ep.address, ep.port, ep.labels["version"]) == ("127.1.2.3", 18080, "v1")


def _asking(group: str = "vm", **kw: object) -> NodeInfo:
    fields: dict[str, object] = {
        "proxy_type": "sidecar",
        "ip": "10.0.0.7",
        "pod_name": f"{group}-10.0.0.7",
        "namespace": "apps",
        "service_account": "vmsa",
        "extra": {"AUTO_REGISTER_GROUP": group},
    }
    fields.update(kw)
    return NodeInfo(**fields)  # type: ignore[arg-type]


def test_registration_needs_a_token_of_that_group_and_its_identity() -> None:
    from pilotfish.registry.autoregister import registration_problem

    node = _asking()
    assert registration_problem(node, GROUP, "apps", "vmsa", "vm") == ""
    assert "bound to WorkloadGroup other, not to WorkloadGroup apps/vm" in registration_problem(
        node, GROUP, "apps", "vmsa", "other"
    )
    assert "bound to no WorkloadGroup" in registration_problem(node, GROUP, "apps", "vmsa", "")
    assert "namespace default" in registration_problem(node, GROUP, "default", "vmsa", "vm")
    assert "template.serviceAccount vmsa" in registration_problem(node, GROUP, "apps", "x", "vm")
    named = registration_problem(_asking(service_account="x"), GROUP, "apps", "vmsa", "vm")
    assert "names service account x" in named
    assert "does not exist" in registration_problem(node, None, "apps", "vmsa", "vm")


def test_sweep_removes_entries_of_a_gone_replica_that_no_agent_took_back() -> None:
    from pilotfish.config.store import MemoryStore, Put
    from pilotfish.config.store.base import Key
    from pilotfish.registry.autoregister import AutoRegistration

    store = MemoryStore()
    store.commit([Put(GROUP)])
    plain = {**auto_registered_entry(GROUP, "10.0.0.9", {}, "cp-a"), "metadata": {
        "name": "by-hand", "namespace": "apps"}}  # fmt: skip
    for body in (
        auto_registered_entry(GROUP, "10.0.0.1", {}, "cp-a"),  # gone replica, agent gone
        auto_registered_entry(GROUP, "10.0.0.2", {}, "cp-a"),  # gone replica, agent back
        auto_registered_entry(GROUP, "10.0.0.3", {}, "cp-b"),  # live replica
        auto_registered_entry(GROUP, "10.0.0.4", {}, "cp-me"),  # this replica's own
        plain,  # not auto-registered
    ):
        store.commit([Put(body)])
    me = AutoRegistration(store, "cp-me")
    alive = {"cp-b"}.__contains__
    names = lambda: {o.name for o in store.list("WorkloadEntry")}  # noqa: E731

    assert me.sweep(alive, now=100.0, grace=30.0) == []  # first seen gone: the grace starts
    # The agent of 10.0.0.2 reconnects to replica b, which rewrites its entry.
    store.commit([Put(auto_registered_entry(GROUP, "10.0.0.2", {}, "cp-b"))])
    assert me.sweep(alive, now=129.0, grace=30.0) == []
    deleted = me.sweep(alive, now=130.0, grace=30.0)
    assert deleted == [Key("WorkloadEntry", "apps", "vm-10.0.0.1")]
    assert names() == {"vm-10.0.0.2", "vm-10.0.0.3", "vm-10.0.0.4", "by-hand"}

    # Rewritten by a replica that is gone too: counted again from the rewrite.
    store.commit([Put(auto_registered_entry(GROUP, "10.0.0.3", {}, "cp-c"))])
    assert me.sweep(alive, now=140.0, grace=30.0) == []
    store.commit([Put(auto_registered_entry(GROUP, "10.0.0.3", {"x": "y"}, "cp-c"))])
    assert me.sweep(alive, now=171.0, grace=30.0) == []
    assert me.sweep(alive, now=201.0, grace=30.0) == [Key("WorkloadEntry", "apps", "vm-10.0.0.3")]


def test_an_agent_reconnecting_to_another_replica_keeps_its_stored_health() -> None:
    from pilotfish.config.store import MemoryStore, Put
    from pilotfish.config.store.base import Key
    from pilotfish.registry.autoregister import AutoRegistration

    store = MemoryStore()
    store.commit([Put(GROUP)])
    node = _asking()
    key = Key("WorkloadEntry", "apps", "vm-10.0.0.7")
    a = AutoRegistration(store, "cp-a")
    assert a.connected(node) == "vm-10.0.0.7"
    assert a.health(node, False, "HTTP status 503")
    # Envoy reconnects to replica b; the agent's health stream stays on a.
    b = AutoRegistration(store, "cp-b")
    assert b.connected(node) == "vm-10.0.0.7"
    stored = store.get(key)
    assert stored is not None
    assert stored.body["metadata"]["annotations"]["istio.io/workloadController"] == "cp-b"
    (condition,) = stored.body["status"]["conditions"]
    assert (condition["status"], condition["message"]) == ("False", "HTTP status 503")
    # What b heard itself wins.
    b.health(node, True, "")
    assert b.connected(node) == "vm-10.0.0.7"
    stored = store.get(key)
    assert stored is not None and stored.body["status"]["conditions"][0]["status"] == "True"
