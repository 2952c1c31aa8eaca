"""The canary controller's phases over a memory store, with a fake runtime and fake checks.

The runtime's part (pods becoming ready) is played by :func:`settle`, which writes each
Deployment's status as the local runtime does once its pods are ready; metric values and
webhook answers come from :class:`FakeChecks`. Real traffic is in tests/e2e/test_canary.py.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from pilotfish.api.flagger import CanaryWebhook
from pilotfish.canary.checks import MetricError, Query
from pilotfish.canary.controller import CanaryController
from pilotfish.canary.endpoints import Target
from pilotfish.canary.objects import GENERATED_ANNOTATION
from pilotfish.config.store.base import Key, Put
from pilotfish.config.store.memory import MemoryStore
from pilotfish.config.validation import validate
from pilotfish.registry.vip import VipAllocator

NS = "test"


class FakeChecks:
    def __init__(self) -> None:
        self.values: dict[str, float | None] = {
            "request-success-rate": 100.0,
            "request-duration": 20.0,
        }
        self.hooks: list[tuple[str, str]] = []
        self.failing_hooks: set[str] = set()
        self.queries: list[str] = []

    async def query(self, query: Query) -> float:
        self.queries.append(query.promql)
        value = self.values.get(query.name)
        if value is None:
            raise MetricError("no values found")
        return value

    async def webhook(
        self, hook: CanaryWebhook, payload: dict[str, Any], target: Target
    ) -> str | None:
        self.hooks.append((hook.kind, payload["phase"]))
        return "500 boom" if hook.name in self.failing_hooks else None


def deployment(env: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": NS, "labels": {"app": "podinfo"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {
                    "containers": [
                        {
                            "name": "podinfod",
                            "command": ["python3", "samples/podinfo/podinfo.py"],
                            "env": [{"name": "PODINFO_VERSION", "value": env}],
                        }
                    ]
                },
            },
        },
    }


def canary(**analysis: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": NS, "uid": "u1"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {
                "interval": "2s",
                "threshold": 2,
                "maxWeight": 30,
                "stepWeight": 10,
                "metrics": [
                    {"name": "request-success-rate", "thresholdRange": {"min": 99}},
                    {"name": "request-duration", "thresholdRange": {"max": 500}},
                ],
                "webhooks": [
                    {"name": "acceptance", "type": "pre-rollout", "url": "http://lt.test/"},
                    {"name": "load", "url": "http://lt.test/"},
                ],
                **analysis,
            },
        },
    }
    return validate(body).body


def settle(store: MemoryStore) -> None:
    """Every Deployment rolled out and ready (what the runtime reports)."""
    for obj in store.list("Deployment"):
        replicas = int(obj.body["spec"].get("replicas", 1))
        body = copy.deepcopy(obj.body)
        body["status"] = {
            "observedGeneration": obj.body["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
        }
        store.commit([Put(body)])


class World:
    def __init__(self, **analysis: Any) -> None:
        self.store = MemoryStore()
        self.checks = FakeChecks()
        self.ctl = CanaryController(self.store, self.checks, vips=VipAllocator())
        self.store.commit([Put(deployment()), Put(canary(**analysis))])

    def step(self) -> dict[str, Any]:
        asyncio.run(self.ctl.reconcile(Key("Canary", NS, "podinfo")))
        settle(self.store)
        return self.status()

    def status(self) -> dict[str, Any]:
        obj = self.store.get(Key("Canary", NS, "podinfo"))
        assert obj is not None
        return dict(obj.body.get("status") or {})

    def body(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.store.get(Key(kind, NS, name))
        assert obj is not None, f"{kind} {name} missing"
        return obj.body

    def weights(self) -> tuple[int, int]:
        route = self.body("VirtualService", "podinfo")["spec"]["http"][-1]["route"]
        return route[0]["weight"], route[1]["weight"]

    def change_target(self, env: str) -> None:
        cur = self.body("Deployment", "podinfo")
        body = copy.deepcopy(cur)
        body["spec"]["template"] = deployment(env)["spec"]["template"]
        self.store.commit([Put(body)])

    def events(self) -> list[str]:
        return [e.body["message"] for e in self.store.list("Event", NS)]

    def initialized(self) -> None:
        assert self.step()["phase"] == "Initializing"
        assert self.step()["phase"] == "Initialized"


def test_initialization_creates_the_primary_services_and_routing_then_scales_the_target_down() -> (
    None
):
    w = World()
    w.initialized()
    assert w.body("Deployment", "podinfo")["spec"]["replicas"] == 1  # until the next interval
    assert w.step()["phase"] == "Initialized"
    primary = w.body("Deployment", "podinfo-primary")
    assert primary["spec"]["selector"]["matchLabels"] == {"app": "podinfo-primary"}
    assert primary["spec"]["template"]["metadata"]["labels"]["app"] == "podinfo-primary"
    assert w.body("Deployment", "podinfo")["spec"]["replicas"] == 0
    assert w.body("Service", "podinfo")["spec"]["selector"] == {"app": "podinfo-primary"}
    assert w.body("Service", "podinfo-primary")["spec"]["selector"] == {"app": "podinfo-primary"}
    assert w.body("Service", "podinfo-canary")["spec"]["selector"] == {"app": "podinfo"}
    assert w.body("Service", "podinfo-canary")["spec"]["clusterIP"]
    assert w.body("DestinationRule", "podinfo-canary")["spec"]["host"] == "podinfo-canary"
    assert w.weights() == (100, 0)
    assert "Initialization done! podinfo.test" in w.events()


def test_a_healthy_revision_advances_step_by_step_and_is_promoted() -> None:
    w = World()
    w.initialized()
    w.change_target("2")
    assert w.step()["phase"] == "Progressing"
    assert w.body("Deployment", "podinfo")["spec"]["replicas"] == 1
    seen = []
    for _ in range(12):
        st = w.step()
        seen.append((st["phase"], w.weights()[1]))
        if st["phase"] == "Succeeded":
            break
    assert [wt for ph, wt in seen if ph == "Progressing"] == [10, 20, 30]
    assert seen[-3:] == [("Promoting", 100), ("Finalising", 0), ("Succeeded", 0)]
    assert w.weights() == (100, 0)
    env = w.body("Deployment", "podinfo-primary")["spec"]["template"]["spec"]["containers"][0]
    assert env["env"] == [{"name": "PODINFO_VERSION", "value": "2"}]
    assert w.body("Deployment", "podinfo")["spec"]["replicas"] == 0
    st = w.status()
    assert st["failedChecks"] == 0
    assert st["lastPromotedSpec"] == st["lastAppliedSpec"]
    checks = [c for s in st["steps"] for c in s.get("checks", [])]
    assert {"name": "request-success-rate", "range": ">= 99", "value": 100.0, "ok": True} in checks
    assert ("pre-rollout", "Progressing") in w.checks.hooks
    assert 'destination_workload=~"podinfo"' in w.checks.queries[0]
    assert 'destination_workload_namespace="test"' in w.checks.queries[0]


def test_failed_checks_reach_the_threshold_and_roll_back() -> None:
    w = World()
    w.initialized()
    w.change_target("2")
    w.step()
    w.checks.values["request-success-rate"] = 80.0
    phases = [w.step()["phase"] for _ in range(5)]
    assert phases[-1] == "Failed", phases
    st = w.status()
    assert st["failedChecks"] == 2
    assert w.weights() == (100, 0)
    assert w.body("Deployment", "podinfo")["spec"]["replicas"] == 0
    # the primary kept the old template
    env = w.body("Deployment", "podinfo-primary")["spec"]["template"]["spec"]["containers"][0]
    assert env["env"] == [{"name": "PODINFO_VERSION", "value": "1"}]
    events = w.events()
    assert any("request-success-rate 80.00 < 99" in e for e in events), events
    assert "Canary failed! Scaling down podinfo.test" in events
    # a failed revision is not retried until the template changes again
    assert w.step()["phase"] == "Failed"
    w.change_target("3")
    assert w.step()["phase"] == "Progressing"


def test_no_values_count_as_a_failed_check() -> None:
    w = World()
    w.initialized()
    w.change_target("2")
    w.step()
    w.step()  # pre-rollout, first weight
    w.checks.values["request-duration"] = None
    st = w.step()
    assert st["failedChecks"] == 1
    assert "no values found for istio metric request-duration" in st["message"]


def test_a_failing_pre_rollout_webhook_counts_and_keeps_the_weight_at_zero() -> None:
    w = World()
    w.checks.failing_hooks.add("acceptance")
    w.initialized()
    w.change_target("2")
    w.step()
    st = w.step()
    assert st["failedChecks"] == 1 and st["canaryWeight"] == 0
    assert "pre-rollout webhook acceptance failed: 500 boom" in st["message"]


def test_ab_testing_routes_matching_requests_for_iterations_then_promotes() -> None:
    match = [{"headers": {"x-canary": {"exact": "insider"}}}]
    w = World(iterations=3, match=match, stepWeight=None, maxWeight=None)
    w.initialized()
    w.change_target("2")
    w.step()
    w.step()
    http = w.body("VirtualService", "podinfo")["spec"]["http"]
    assert http[0]["match"] == match
    assert [r["weight"] for r in http[0]["route"]] == [0, 100]
    assert [r["weight"] for r in http[1]["route"]] == [100, 0]
    phases = [w.step()["phase"] for _ in range(6)]
    assert phases[:4] == ["Progressing", "Progressing", "Promoting", "Finalising"], phases
    assert w.status()["iterations"] == 3
    assert len(w.body("VirtualService", "podinfo")["spec"]["http"]) == 1


def test_a_manual_edit_of_the_virtual_service_is_reported_not_overwritten() -> None:
    w = World()
    w.initialized()
    vs = copy.deepcopy(w.body("VirtualService", "podinfo"))
    vs["spec"]["http"][0]["route"][0]["weight"] = 50
    vs["spec"]["http"][0]["route"][1]["weight"] = 50
    w.store.commit([Put(vs)])
    w.change_target("2")
    st = w.step()
    assert st["phase"] == "Initialized"
    assert "VirtualService podinfo.test was edited outside the Canary" in st["message"]
    assert w.weights() == (50, 50)
    assert any("edited outside the Canary" in e for e in w.events())
    # deleting it lets the canary write it again and go on
    from pilotfish.config.store.base import Delete

    w.store.commit([Delete(Key("VirtualService", NS, "podinfo"))])
    assert w.step()["phase"] == "Progressing"
    assert GENERATED_ANNOTATION in w.body("VirtualService", "podinfo")["metadata"]["annotations"]


def test_an_existing_virtual_service_of_the_same_name_blocks_initialization() -> None:
    w = World()
    w.store.commit(
        [
            Put(
                {
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "VirtualService",
                    "metadata": {"name": "podinfo", "namespace": NS},
                    "spec": {"hosts": ["podinfo"], "http": [{"route": []}]},
                }
            )
        ]
    )
    st = w.step()
    assert st["phase"] == "Initializing"
    assert "is not owned by this Canary" in st["message"]
    assert w.store.get(Key("Deployment", NS, "podinfo-primary")) is None


@pytest.mark.parametrize(
    ("analysis", "weights"),
    [
        ({"stepWeight": 10, "maxWeight": 30}, [10, 20, 30]),
        ({"stepWeight": 20, "maxWeight": 50}, [20, 40, 50]),
        ({"stepWeights": [1, 5, 25, 60], "stepWeight": None, "maxWeight": None}, [1, 5, 25, 60]),
    ],
)
def test_step_weights(analysis: dict[str, Any], weights: list[int]) -> None:
    from pilotfish.api.flagger import Canary

    assert Canary.model_validate(canary(**analysis)).spec.the_analysis.weights() == weights


class LeasedStore(MemoryStore):
    """A store with leader leases (as PostgreSQL's), held by someone else."""

    def __init__(self) -> None:
        super().__init__()
        self.holder = "other"

    def try_lease(self, name: str, holder: str, ttl: float) -> bool:
        return holder == self.holder

    def release_lease(self, name: str, holder: str) -> None:
        pass


def test_only_the_lease_holder_runs_canaries() -> None:
    store = LeasedStore()
    store.commit([Put(deployment()), Put(canary())])
    ctl = CanaryController(store, FakeChecks(), vips=VipAllocator())

    async def one_pass() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(ctl.run(stop))
        await asyncio.sleep(0.2)
        stop.set()
        await task

    asyncio.run(one_pass())
    assert store.get(Key("Deployment", NS, "podinfo-primary")) is None
    store.holder = ctl.settings.holder
    asyncio.run(one_pass())
    assert store.get(Key("Deployment", NS, "podinfo-primary")) is not None


def test_a_canary_not_ready_within_the_progress_deadline_is_rolled_back() -> None:
    clock = [1000.0]
    w = World()
    w.ctl.clock = lambda: clock[0]
    w.initialized()
    w.change_target("2")
    asyncio.run(w.ctl.reconcile(Key("Canary", NS, "podinfo")))  # Progressing, pods not ready
    clock[0] += 601
    asyncio.run(w.ctl.reconcile(Key("Canary", NS, "podinfo")))
    assert w.status()["phase"] == "Failed"
    assert any("progress deadline exceeded" in e for e in w.events())


def test_event_webhooks_receive_every_event() -> None:
    hooks = [
        {"name": "acceptance", "type": "pre-rollout", "url": "http://lt.test/"},
        {"name": "notify", "type": "event", "url": "http://hooks.example.com/"},
    ]
    w = World(webhooks=hooks)
    w.initialized()
    assert ("event", "Initialized") in w.checks.hooks


def test_blue_green_with_mirroring_copies_requests_to_the_canary_for_iterations() -> None:
    w = World(iterations=2, mirror=True, stepWeight=None, maxWeight=None)
    w.initialized()
    w.change_target("2")
    w.step()
    w.step()
    http = w.body("VirtualService", "podinfo")["spec"]["http"]
    assert len(http) == 1
    assert [r["weight"] for r in http[0]["route"]] == [100, 0]
    assert http[0]["mirror"] == {"host": "podinfo-canary", "port": {"number": 9898}}
    phases = [w.step()["phase"] for _ in range(4)]
    assert phases[1:] == ["Promoting", "Finalising", "Succeeded"], phases
    assert "mirror" not in w.body("VirtualService", "podinfo")["spec"]["http"][0]


def test_skip_analysis_promotes_once_the_canary_is_ready() -> None:
    w = World()
    body = copy.deepcopy(w.body("Canary", "podinfo"))
    body["spec"]["skipAnalysis"] = True
    w.store.commit([Put(body)])
    w.initialized()
    w.change_target("2")
    phases = [w.step()["phase"] for _ in range(4)]
    assert phases == ["Progressing", "Promoting", "Finalising", "Succeeded"], phases
    assert w.checks.queries == []
