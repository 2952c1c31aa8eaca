"""The runtime's reconcile loop against a fake API and fake pods (no processes, no root)."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pilotfish.platform.local.runtime import ApiGone, Runtime, RuntimeSettings, Snapshot
from pilotfish.platform.local.runtime_model import SIDECAR_STATUS_ANNOTATION, pod_is_ready
from pilotfish.platform.local.runtime_pod import ContainerReport, NetworkView, PodEvent, PodReport


class FakeApi:
    """An in-memory store with the API's behaviour that matters: uids, 404s."""

    def __init__(self) -> None:
        self.hold = False
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._uids = itertools.count(1)
        self._revisions = itertools.count(1)
        self.writes: list[str] = []
        self.snapshots = 0

    def add(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        meta.setdefault("uid", f"u{next(self._uids)}")
        meta["resourceVersion"] = str(next(self._revisions))
        self.objects[(body["kind"], meta.get("namespace", ""), meta["name"])] = body

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, _, _), o in sorted(self.objects.items()) if k == kind]

    def snapshot(self) -> Snapshot:
        self.snapshots += 1
        return Snapshot(self.of("Namespace"), self.of("Deployment"), self.of("Service"),
                        self.of("Pod"))  # fmt: skip

    def create_pod(self, body: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(f"create {body['metadata']['name']}")
        stored = copy.deepcopy(body)
        self.add(stored)
        return copy.deepcopy(stored)

    def update_pod(self, body: dict[str, Any]) -> dict[str, Any]:
        key = ("Pod", body["metadata"]["namespace"], body["metadata"]["name"])
        if key not in self.objects:
            raise ApiGone("gone")
        expected = body["metadata"].get("resourceVersion")
        if expected and expected != self.objects[key]["metadata"]["resourceVersion"]:
            raise ApiGone("conflict")
        self.writes.append(f"status {key[2]} {body['status']['phase']}")
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self._revisions))
        self.objects[key] = stored
        return copy.deepcopy(stored)

    def delete_pod(self, namespace: str, name: str) -> None:
        if self.objects.pop(("Pod", namespace, name), None) is None:
            raise ApiGone("gone")
        self.writes.append(f"delete {name}")

    def record_event(self, body: dict[str, Any], new: bool) -> None:
        key = ("Event", body["metadata"]["namespace"], body["metadata"]["name"])
        if new == (key in self.objects):
            raise ApiGone("exists" if new else "gone")
        self.writes.append(f"event {body['reason']} {body['involvedObject']['name']}")
        self.objects[key] = copy.deepcopy(body)

    def list_events(self) -> list[dict[str, Any]]:
        return [o for k, o in self.objects.items() if k[0] == "Event"]

    def delete_event(self, namespace: str, name: str) -> None:
        if self.objects.pop(("Event", namespace, name), None) is None:
            raise ApiGone("gone")

    def wait_pushed(self, timeout: float) -> bool:
        self.writes.append("wait pushed")
        return True

    def mesh_config(self) -> dict[str, Any]:
        self.writes.append("mesh config")
        return {"defaultConfig": {"holdApplicationUntilProxyStarts": self.hold}}

    def update_deployment(self, body: dict[str, Any]) -> None:
        self.writes.append(f"deployment {body['metadata']['name']}")
        self.objects[("Deployment", body["metadata"]["namespace"], body["metadata"]["name"])] = (
            copy.deepcopy(body)
        )


class FakePod:
    def __init__(self, body: dict[str, Any], injected: bool, view: NetworkView,
                 on_change: Callable[[Any], None]) -> None:  # fmt: skip
        self.body = body
        self.injected = injected
        self.view = view
        self.on_change = on_change
        self.started = False
        self.stopped = False
        self._report = PodReport("Pending", None, ())

    def start(self) -> None:
        self.started = True

    def stop(self, wait: bool = True, before: Callable[[], None] | None = None) -> None:
        if before is not None:
            before()
        self.stopped = True

    def join(self, timeout: float | None = None) -> None:
        return None

    def set_view(self, view: NetworkView) -> None:
        self.view = view

    def report(self) -> PodReport:
        return self._report

    def become_ready(self, ip: str) -> None:
        names = [c["name"] for c in self.body["spec"]["containers"]]
        self._report = PodReport(
            "Running", ip, tuple(ContainerReport(n, True, 0, "running") for n in names)
        )
        self.on_change(self)


def setup(tmp_path: Path, api: FakeApi | None = None) -> tuple[FakeApi, Runtime, list[FakePod]]:
    api = api or FakeApi()
    made: list[FakePod] = []

    def factory(body: dict[str, Any], injected: bool, view: NetworkView,
                on_change: Callable[[Any], None]) -> FakePod:  # fmt: skip
        pod = FakePod(body, injected, view, on_change)
        made.append(pod)
        return pod

    runtime = Runtime(api, factory, RuntimeSettings(tmp_path, seed=7))
    api.add({"kind": "Namespace", "metadata": {"name": "default",
             "labels": {"istio-injection": "enabled"}}})  # fmt: skip
    api.add({"kind": "Namespace", "metadata": {"name": "legacy"}})
    return api, runtime, made


def dep(name: str, app: str, replicas: int, ns: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": app, "command": ["python3", "x.py"],
                                         "ports": [{"containerPort": 9080}]}]},
            },
        },
    }  # fmt: skip


def test_deployments_become_pod_objects_then_local_pods(tmp_path: Path) -> None:
    api, runtime, made = setup(tmp_path)
    api.add(dep("reviews-v1", "reviews", 2))
    api.add(dep("sleep", "sleep", 1, ns="legacy"))
    runtime.reconcile_once()
    assert len(api.of("Pod")) == 3
    # The pods start in the pass that created them, with the objects as stored.
    assert len(made) == 3 and all(p.started for p in made)
    assert {p.body["metadata"]["uid"] for p in made} == {
        p["metadata"]["uid"] for p in api.of("Pod")
    }
    assert runtime.dirty.is_set()  # and the next pass reads a fresh snapshot
    runtime.reconcile_once()
    assert len(made) == 3  # the next pass starts none again
    injected = {p.body["metadata"]["namespace"]: p.injected for p in made}
    assert injected == {"default": True, "legacy": False}
    for p in made:
        assert (SIDECAR_STATUS_ANNOTATION in p.body["metadata"].get("annotations", {})) == (
            p.injected
        )
    assert (tmp_path / "runtime.json").exists()


def test_statuses_are_written_when_pods_change_and_endpoints_follow(tmp_path: Path) -> None:
    api, runtime, made = setup(tmp_path)
    api.add(dep("reviews-v1", "reviews", 1))
    api.add({"kind": "Service", "metadata": {"name": "reviews", "namespace": "default"},
             "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "reviews"},
                      "ports": [{"port": 9080}]}})  # fmt: skip
    runtime.reconcile_once()
    runtime.reconcile_once()
    (pod,) = made
    assert pod.view.endpoints[0].endpoints == ()
    assert [n.name for n in pod.view.names] == ["reviews"]
    api.writes.clear()
    runtime.dirty.clear()
    pod.become_ready("10.244.0.2")
    assert runtime.dirty.is_set()  # a pod's change wakes the loop
    runtime.reconcile_once()
    assert any(w.endswith("Running") for w in api.writes)
    stored = api.of("Pod")[0]
    assert pod_is_ready(stored) and stored["status"]["podIP"] == "10.244.0.2"
    assert api.of("Deployment")[0]["status"]["readyReplicas"] == 1
    runtime.reconcile_once()  # the endpoint appears once the ready status is stored
    assert [(e.ip, e.port) for e in pod.view.endpoints[0].endpoints] == [("10.244.0.2", 9080)]
    api.writes.clear()
    runtime.reconcile_once()
    assert api.writes == []  # nothing changed: nothing written


class _SnapshotWatcher(FakeApi):
    """Records, at each snapshot, whether the pod's status was already written."""

    def __init__(self) -> None:
        super().__init__()
        self.ready_at_snapshot: list[bool] = []

    def snapshot(self) -> Snapshot:
        self.ready_at_snapshot += [pod_is_ready(p) for p in self.of("Pod")]
        return super().snapshot()


def test_a_pod_turning_ready_is_written_before_the_next_snapshot(tmp_path: Path) -> None:
    api = _SnapshotWatcher()
    _, runtime, made = setup(tmp_path, api)
    api.add(dep("reviews-v1", "reviews", 1))
    runtime.reconcile_once()
    (pod,) = made
    pod.become_ready("10.244.0.2")
    api.ready_at_snapshot.clear()
    runtime.reconcile_once()
    assert api.ready_at_snapshot == [True]  # written first, then the fresh snapshot


def test_a_ready_status_never_overwrites_a_pod_changed_meanwhile(tmp_path: Path) -> None:
    api, runtime, made = setup(tmp_path)
    api.add(dep("reviews-v1", "reviews", 1))
    runtime.reconcile_once()
    (pod,) = made
    stored = api.of("Pod")[0]
    stored["metadata"]["labels"]["team"] = "blue"  # a label added by someone else
    api.add(stored)
    pod.become_ready("10.244.0.2")
    runtime.reconcile_once()
    (now,) = api.of("Pod")
    assert pod_is_ready(now) and now["metadata"]["labels"]["team"] == "blue"


def test_deleted_pod_is_stopped_and_replaced(tmp_path: Path) -> None:
    api, runtime, made = setup(tmp_path)
    api.add(dep("reviews-v1", "reviews", 1))
    runtime.reconcile_once()
    runtime.reconcile_once()
    (first,) = made
    api.delete_pod("default", first.body["metadata"]["name"])
    runtime.reconcile_once()  # the controller creates a replacement, the kubelet stops the old
    assert first.stopped
    runtime.reconcile_once()
    assert len(made) == 2 and made[1].started and not made[1].stopped
    assert made[1].body["metadata"]["name"] != first.body["metadata"]["name"]


def test_scaling_down_stops_pods_and_deleting_the_deployment_removes_all(tmp_path: Path) -> None:
    api, runtime, made = setup(tmp_path)
    d = dep("reviews-v1", "reviews", 3)
    api.add(d)
    runtime.reconcile_once()
    runtime.reconcile_once()
    assert len(made) == 3
    d["spec"]["replicas"] = 1
    api.add(d)
    runtime.reconcile_once()
    assert sum(p.stopped for p in made) == 2 and len(api.of("Pod")) == 1
    del api.objects[("Deployment", "default", "reviews-v1")]
    runtime.reconcile_once()
    assert all(p.stopped for p in made) and api.of("Pod") == []


def test_shutdown_stops_every_pod_and_deletes_their_objects(tmp_path: Path) -> None:
    api, runtime, made = setup(tmp_path)
    api.add(dep("reviews-v1", "reviews", 2))
    runtime.reconcile_once()
    runtime.reconcile_once()
    runtime.shutdown()
    assert all(p.stopped for p in made) and api.of("Pod") == []


def test_stale_pod_objects_of_an_earlier_run_are_cleared(tmp_path: Path) -> None:
    api, runtime, _ = setup(tmp_path)
    api.add(dep("reviews-v1", "reviews", 2))
    runtime.reconcile_once()
    assert runtime.clear_stale_pods() == 2 and api.of("Pod") == []


def test_pod_events_are_recorded_once_and_repeats_raise_the_count(tmp_path: Path) -> None:
    api, runtime, made = setup(tmp_path)
    api.add(dep("reviews-v1", "reviews", 1))
    runtime.reconcile_once()
    runtime.reconcile_once()
    (pod,) = made
    event = PodEvent("BackOff", "Back-off restarting failed container reviews (exit code 1)")
    runtime.record("default", pod.body["metadata"]["name"], "uid-1", event)
    assert runtime.dirty.is_set()
    runtime.reconcile_once()
    runtime.record("default", pod.body["metadata"]["name"], "uid-1", event)
    runtime.reconcile_once()
    (stored,) = api.list_events()
    assert stored["reason"] == "BackOff" and stored["type"] == "Warning"
    assert stored["count"] == 2
    assert stored["involvedObject"] == {
        "kind": "Pod", "namespace": "default", "name": pod.body["metadata"]["name"], "uid": "uid-1"
    }  # fmt: skip
    assert stored["firstTimestamp"] <= stored["lastTimestamp"]


def test_a_failing_pod_is_named_in_the_runtime_status_file(tmp_path: Path) -> None:
    api, runtime, made = setup(tmp_path)
    api.add(dep("reviews-v1", "reviews", 1))
    runtime.reconcile_once()
    runtime.reconcile_once()
    (pod,) = made
    crash = ContainerReport("reviews", False, 3, "waiting", "CrashLoopBackOff", "back-off 4s", 1)
    pod._report = PodReport("Running", "10.244.0.2", (crash,))
    runtime.reconcile_once()
    info = json.loads((tmp_path / "runtime.json").read_text())
    assert info["problems"] == [
        f"pod default/{pod.body['metadata']['name']}: CrashLoopBackOff (reviews): back-off 4s"
    ]
    (stored,) = api.of("Pod")
    (status,) = stored["status"]["containerStatuses"]
    assert status["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 4s"}}
    assert status["lastState"] == {"terminated": {"exitCode": 1, "reason": "Error"}}


def test_a_deleted_ready_pod_stops_only_after_its_endpoint_is_pushed(tmp_path: Path) -> None:
    api, runtime, made = setup(tmp_path)
    api.add(dep("reviews-v1", "reviews", 2))
    runtime.reconcile_once()
    runtime.reconcile_once()
    ready, pending = made
    ready.become_ready("10.244.0.2")
    runtime.reconcile_once()
    api.writes.clear()
    for pod in (ready, pending):
        meta = pod.body["metadata"]
        del api.objects[("Pod", meta["namespace"], meta["name"])]
    api.objects.pop(("Deployment", "default", "reviews-v1"))
    runtime.reconcile_once()
    assert ready.stopped and pending.stopped
    # Only the pod that served traffic waited for the proxies to drop its endpoint.
    assert api.writes.count("wait pushed") == 1
