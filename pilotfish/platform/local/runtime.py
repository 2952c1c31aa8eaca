"""The local runtime process (``pilotfish runtime``): a deployment controller and a kubelet.

It talks to the control plane only through its HTTP API, with the admin token:

- it watches Namespaces, Deployments, Services, ServiceEntries and Pods; any event (or every
  ``resync_seconds``) runs :meth:`Runtime.reconcile_once`;
- the controller half creates and deletes Pod objects so that each Deployment has its replicas
  (:func:`~.runtime_model.plan_deployments`) and writes each Deployment's ``status``;
- the kubelet half runs every Pod object as a :class:`~.runtime_pod.LocalPod` (network
  namespace, sidecar when the pod was injected, apps), stops pods whose object is gone, writes
  each pod's ``status`` (``podIP``, phase, readiness) as soon as it changes, and keeps every
  pod's hosts file and VIP rules in step with Services and ready endpoints.

Pod objects do not outlive a runtime: on start it deletes those a previous run left (their
processes died with it) and the controller creates fresh ones. On SIGTERM it stops every pod
(apps first, then the sidecar drains) and deletes their objects.

The API (:class:`RuntimeApi`) and the pods (:data:`PodFactory`) are seams: unit tests drive
:meth:`Runtime.reconcile_once` with fakes of both.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from pilotfish.api.bootstrap_patch import has_bootstrap_patch
from pilotfish.api.kinds import MESH_CONFIG_PATH, PROXY_STATUS_PATH, by_kind, token_path
from pilotfish.api.proxy_annotation import HOLD_APPLICATION
from pilotfish.platform.local.prometheus import PrometheusLayout, pod_targets, write_targets
from pilotfish.platform.local.runtime_model import (
    SIDECAR_STATUS_ANNOTATION,
    deployment_status,
    entry_names,
    plan_deployments,
    pod_status,
    service_endpoints,
    service_names,
)
from pilotfish.platform.local.runtime_pod import (
    BootstrapFilters,
    NetworkView,
    PodEvent,
    PodReport,
)

__all__ = [
    "HttpRuntimeApi",
    "PodHandle",
    "Runtime",
    "RuntimeApi",
    "RuntimeSettings",
    "Snapshot",
    "now_rfc3339",
]

log = logging.getLogger("pilotfish.runtime")

#: What the runtime reads and watches: every object of these kinds, in all namespaces.
PATHS = {
    k: by_kind(k).api_path() for k in ("Namespace", "Deployment", "Service", "Pod", "ServiceEntry")
}
#: EnvoyFilters: watched apart, their BOOTSTRAP patches go into starting sidecars' bootstraps.
ENVOY_FILTERS_PATH = by_kind("EnvoyFilter").api_path()


def pod_problem(report: PodReport) -> str:
    """Why a pod cannot run or keeps failing, in one line (empty when there is no such
    reason: running, or just starting). Pure."""
    if report.reason:
        return f"{report.reason}: {report.message}"
    for c in report.containers:
        if c.reason == "CrashLoopBackOff":
            return f"{c.reason} ({c.name}): {c.message}"
    return ""


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Snapshot:
    """The objects one reconcile works from."""

    namespaces: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    #: ServiceEntries: their hosts go in the pods' hosts files with their VIPs.
    service_entries: list[dict[str, Any]] = field(default_factory=list)


class RuntimeApi(Protocol):
    """What the runtime needs from the control plane."""

    def snapshot(self) -> Snapshot: ...
    def create_pod(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def update_pod(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def delete_pod(self, namespace: str, name: str) -> None: ...
    def update_deployment(self, body: dict[str, Any]) -> None: ...
    def record_event(self, body: dict[str, Any], new: bool) -> None: ...
    def list_events(self) -> list[dict[str, Any]]: ...
    def delete_event(self, namespace: str, name: str) -> None: ...
    def wait_pushed(self, timeout: float) -> bool: ...
    def mesh_config(self) -> dict[str, Any]: ...


class PodHandle(Protocol):
    """A pod the runtime runs (a :class:`~.runtime_pod.LocalPod` outside tests)."""

    def start(self) -> None: ...
    def stop(self, wait: bool = True, before: Callable[[], None] | None = None) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...
    def set_view(self, view: NetworkView) -> None: ...
    def report(self) -> PodReport: ...


#: ``(pod_body, injected, view, on_change) -> PodHandle`` (not started yet).
PodFactory = Callable[[dict[str, Any], bool, NetworkView, Callable[[Any], None]], PodHandle]

#: A pod whose object is deleted keeps running until every proxy has the config without its
#: endpoint (or this many seconds passed): then its apps stop and its sidecar drains.
ENDPOINT_PUSH_TIMEOUT = 5.0

#: How long events are kept (Kubernetes' default event TTL).
EVENT_TTL_SECONDS = 3600.0


class ApiGone(Exception):
    """The object is not there (any more): 404 or 409 on a write."""


class HttpRuntimeApi:
    """:class:`RuntimeApi` over the control plane's HTTP API."""

    def __init__(self, server: str, token: str, timeout: float = 10.0) -> None:
        self.server = server.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self._http = httpx.Client(base_url=self.server, headers=self.headers, timeout=timeout)
        self._token_lock = threading.Lock()
        self._token_http: httpx.Client | None = None
        self._bootstrap_lock = threading.Lock()
        self._bootstrap_stale = threading.Event()
        self._bootstrap: BootstrapFilters | None = None

    def close(self) -> None:
        self._http.close()
        with self._token_lock:
            if self._token_http is not None:
                self._token_http.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        resp = self._http.request(method, path, json=body)
        if resp.status_code in (404, 409):
            raise ApiGone(f"{method} {path}: {resp.status_code} {resp.text[:200]}")
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content else None

    def snapshot(self) -> Snapshot:
        lists = {k: list(self._call("GET", p).get("items") or []) for k, p in PATHS.items()}
        return Snapshot(
            lists["Namespace"],
            lists["Deployment"],
            lists["Service"],
            lists["Pod"],
            lists["ServiceEntry"],
        )

    def create_pod(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create the Pod object; returns it as stored (uid, resourceVersion)."""
        ns = body["metadata"]["namespace"]
        return dict(self._call("POST", by_kind("Pod").api_path(ns), body))

    def update_pod(self, body: dict[str, Any]) -> dict[str, Any]:
        """Replace the Pod object (only if unchanged since ``metadata.resourceVersion``, when
        the body has one); returns it as stored."""
        meta = body["metadata"]
        path = by_kind("Pod").api_path(meta["namespace"], meta["name"])
        return dict(self._call("PUT", path, body))

    def delete_pod(self, namespace: str, name: str) -> None:
        self._call("DELETE", by_kind("Pod").api_path(namespace, name))

    def update_deployment(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        path = by_kind("Deployment").api_path(meta["namespace"], meta["name"])
        self._call("PUT", path, body)

    def record_event(self, body: dict[str, Any], new: bool) -> None:
        meta = body["metadata"]
        base = f"/api/v1/namespaces/{meta['namespace']}/events"
        if new:
            self._call("POST", base, body)
        else:
            self._call("PUT", f"{base}/{meta['name']}", body)

    def list_events(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/v1/events").get("items") or [])

    def delete_event(self, namespace: str, name: str) -> None:
        self._call("DELETE", f"/api/v1/namespaces/{namespace}/events/{name}")

    def wait_pushed(self, timeout: float) -> bool:
        """Wait until every connected proxy runs config generated from the store's current
        revision (or a later one) with nothing in flight to it; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        try:
            revision = int(self._call("GET", "/version")["revision"])
            while True:
                items = self._call("GET", PROXY_STATUS_PATH).get("items") or []
                if all(
                    int(p.get("config_revision") or 0) >= revision and p.get("synced")
                    for p in items
                ):
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
        except (httpx.HTTPError, RuntimeError, ApiGone, ValueError, KeyError) as exc:
            log.info("could not tell whether proxies have the new endpoints: %s", exc)
            return False

    def mesh_config(self) -> dict[str, Any]:
        """The mesh config in force (``pilotfish get meshconfig``)."""
        return dict(self._call("GET", MESH_CONFIG_PATH) or {})

    def envoy_filters_changed(self) -> None:
        """An EnvoyFilter changed (its watch, on the watch's thread): list them again now, so
        the next pod to start finds them read."""
        self._bootstrap_stale.set()
        self.bootstrap_filters()

    def bootstrap_filters(self) -> BootstrapFilters:
        """The EnvoyFilters with BOOTSTRAP patches and the root namespace, listed again only
        after an EnvoyFilter changed: a starting pod pays no round trip for them."""
        with self._bootstrap_lock:
            if self._bootstrap_stale.is_set() or self._bootstrap is None:
                self._bootstrap_stale.clear()
                try:
                    items = self._call("GET", ENVOY_FILTERS_PATH).get("items") or []
                    found = tuple(b for b in items if has_bootstrap_patch(b))
                    root = "istio-system"
                    if found:
                        root = str(self.mesh_config().get("rootNamespace") or root)
                    self._bootstrap = BootstrapFilters(root, found)
                except (httpx.HTTPError, RuntimeError, ApiGone) as exc:
                    self._bootstrap_stale.set()
                    log.warning("EnvoyFilter BOOTSTRAP patches not read (%s)", exc)
                    return self._bootstrap or BootstrapFilters()
            return self._bootstrap

    def issue_token(self, namespace: str, service_account: str, ttl_seconds: int) -> str:
        """A workload token for ``namespace``/``service_account`` (Kubernetes TokenRequest)."""
        path = token_path(namespace, service_account)
        # One client kept for tokens (pods ask from their own threads): a new one costs
        # ~10 ms of TLS context set-up on every pod's start.
        with self._token_lock:
            if self._token_http is None:
                self._token_http = httpx.Client(
                    base_url=self.server, headers=self.headers, timeout=10
                )
            resp = self._token_http.post(path, json={"spec": {"expirationSeconds": ttl_seconds}})
        if resp.status_code >= 400:
            raise RuntimeError(
                f"ServiceAccount {namespace}/{service_account}: token request failed: "
                f"HTTP {resp.status_code}: {resp.text[:300]}"
            )
        return str(resp.json()["status"]["token"])

    def watch_forever(self, path: str, on_event: Callable[[], None], stop: threading.Event) -> None:
        """Call ``on_event`` for every event of the watch on ``path``; reconnect on errors."""
        while not stop.is_set():
            try:
                with (
                    httpx.Client(base_url=self.server, headers=self.headers, timeout=None) as c,
                    c.stream("GET", path, params={"watch": "true"}) as resp,
                ):
                    if resp.status_code >= 400:
                        raise RuntimeError(f"watch {path}: HTTP {resp.status_code}")
                    for line in resp.iter_lines():
                        if stop.is_set():
                            return
                        if line.strip():
                            on_event()
            except Exception as exc:
                log.debug("watch %s: %s; reconnecting", path, exc)
            on_event()
            stop.wait(0.5)


@dataclass(frozen=True)
class RuntimeSettings:
    """Where the runtime keeps its status file, and its loop timings."""

    state_dir: Path
    resync_seconds: float = 5.0
    #: Seed for pod name suffixes (tests); ``None``: random.
    seed: int | None = None


@dataclass
class _Running:
    handle: PodHandle
    uid: str
    written: PodReport | None = None


def _key(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name"))


def _uid(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("uid") or "")


def _status_of(report: PodReport, host_ip: str, start_time: str) -> dict[str, Any]:
    return pod_status(
        phase=report.phase,
        pod_ip=report.ip,
        host_ip=host_ip,
        start_time=start_time,
        containers=[
            (c.name, c.ready, c.restarts, c.state, c.reason, c.message, c.last_exit)
            for c in report.containers
        ],
        transition_time=now_rfc3339(),
        message=report.message,
        reason=report.reason,
    )


def event_name(pod: str, reason: str, message: str) -> str:
    """One Event per pod, reason and message (repeats raise its ``count``). Pure."""
    digest = hashlib.sha256(f"{reason}\0{message}".encode()).hexdigest()[:10]
    return f"{pod}.{digest}"


def event_body(
    namespace: str, pod: str, uid: str, event: PodEvent, count: int, first: str, last: str
) -> dict[str, Any]:
    """A core/v1 Event about a pod, as a kubelet writes it. Pure."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name(pod, event.reason, event.message), "namespace": namespace},
        "involvedObject": {"kind": "Pod", "namespace": namespace, "name": pod, "uid": uid},
        "reason": event.reason,
        "message": event.message,
        "type": event.type,
        "count": count,
        "firstTimestamp": first,
        "lastTimestamp": last,
        "source": {"component": "pilotfish-runtime"},
    }


class Runtime:
    """The reconcile loop. :meth:`run` until ``stop`` is set; tests call :meth:`reconcile_once`."""

    def __init__(
        self,
        api: RuntimeApi,
        pods: PodFactory,
        settings: RuntimeSettings,
        host_ip: str = "10.244.0.1",
    ) -> None:
        self.api = api
        self.pod_factory = pods
        self.settings = settings
        self.host_ip = host_ip
        self.pods: dict[tuple[str, str], _Running] = {}
        self.dirty = threading.Event()
        #: A pod's report changed since the last pass (set from the pods' threads).
        self._reported = threading.Event()
        #: The Pod objects as the last pass left them (with the statuses it wrote).
        self._last_pods: list[dict[str, Any]] = []
        self._rng = random.Random(settings.seed)
        self._stopping: list[PodHandle] = []
        self._start_times: dict[tuple[str, str], str] = {}
        self._last_status_file: dict[str, Any] = {}
        self._last_targets: list[dict[str, Any]] | None = None
        self._events_lock = threading.Lock()
        self._pending_events: list[tuple[str, str, str, PodEvent]] = []
        #: Event name -> (count, firstTimestamp) of the events this runtime wrote.
        self._events: dict[str, tuple[int, str]] = {}
        self._events_pruned_at = 0.0

    # ------------------------------------------------------------------ events

    def record(self, namespace: str, pod: str, uid: str, event: PodEvent) -> None:
        """Queue an event about a pod (any thread); the reconcile loop writes it."""
        with self._events_lock:
            self._pending_events.append((namespace, pod, uid, event))
        self.dirty.set()

    def _flush_events(self) -> None:
        with self._events_lock:
            pending, self._pending_events = self._pending_events, []
        for namespace, pod, uid, event in pending:
            name = event_name(pod, event.reason, event.message)
            now = now_rfc3339()
            count, first = self._events.get(name, (0, now))
            body = event_body(namespace, pod, uid, event, count + 1, first, now)
            try:
                self.api.record_event(body, new=count == 0)
            except ApiGone:  # deleted (or written) meanwhile: write it anew
                with contextlib.suppress(ApiGone):
                    self.api.record_event(body, new=count != 0)
            except Exception as exc:
                log.warning("event %s about pod %s/%s not recorded: %s", event.reason,
                            namespace, pod, exc)  # fmt: skip
                continue
            self._events[name] = (count + 1, first)
        if time.monotonic() - self._events_pruned_at >= 60:
            self._events_pruned_at = time.monotonic()
            self._prune_events()

    def _prune_events(self) -> None:
        cutoff = datetime.now(UTC).timestamp() - EVENT_TTL_SECONDS
        for ev in self.api.list_events():
            last = str(ev.get("lastTimestamp") or "")
            try:
                when = datetime.strptime(last, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            except ValueError:
                continue
            if when.timestamp() < cutoff:
                meta = ev.get("metadata") or {}
                with contextlib.suppress(ApiGone):
                    self.api.delete_event(str(meta.get("namespace")), str(meta.get("name")))
                self._events.pop(str(meta.get("name")), None)

    # ------------------------------------------------------------------ one pass

    def reconcile_once(self) -> None:
        if self._reported.is_set():
            # A pod's news first (a pod turning Ready is what everyone waits for), on the
            # objects the last pass left, written only if nobody changed them since.
            self._reported.clear()
            self._write_statuses(self._last_pods, if_unchanged=True)
        snap = self.api.snapshot()
        namespaces = {str(n["metadata"]["name"]): n for n in snap.namespaces}
        plan = plan_deployments(
            snap.deployments, snap.pods, namespaces, self._rng, functools.cache(self._hold_default)
        )
        deleted = set()
        for ns, name in plan.delete:
            with contextlib.suppress(ApiGone):
                self.api.delete_pod(ns, name)
            deleted.add((ns, name))
        created = []
        for body in plan.create:
            with contextlib.suppress(ApiGone):
                created.append(self.api.create_pod(body))
        if plan.create or plan.delete:
            self.dirty.set()  # a fresh snapshot next: what others changed meanwhile
        # The pods just created start in this pass, as stored, not one snapshot later.
        pods = [p for p in snap.pods if _key(p) not in deleted] + created
        self._sync_pods(pods, self._view(snap.services, pods, snap.service_entries))
        pods = self._write_statuses(pods)
        self._last_pods = pods
        self._write_targets(pods)
        view = self._view(snap.services, pods, snap.service_entries)
        for running in self.pods.values():
            running.handle.set_view(view)
        self._write_deployment_statuses(snap.deployments, pods)
        self._write_status_file()
        self._flush_events()

    def _hold_default(self) -> bool:
        """The mesh's ``defaultConfig.holdApplicationUntilProxyStarts`` (false if unset)."""
        default = self.api.mesh_config().get("defaultConfig") or {}
        return default.get(HOLD_APPLICATION) is True

    @staticmethod
    def _view(
        services: list[dict[str, Any]],
        pods: list[dict[str, Any]],
        entries: list[dict[str, Any]] = [],  # noqa: B006 - never mutated
    ) -> NetworkView:
        return NetworkView(
            names=tuple(sorted(service_names(services), key=lambda s: (s.namespace, s.name))),
            entries=tuple(sorted(entry_names(entries), key=lambda e: (e.host, e.namespace))),
            endpoints=tuple(
                sorted(service_endpoints(services, pods), key=lambda s: (s.vip, s.port))
            ),
        )

    def _sync_pods(self, pods: list[dict[str, Any]], view: NetworkView) -> None:
        wanted = {
            _key(p): p
            for p in pods
            if str((p.get("status") or {}).get("phase") or "Pending") not in ("Succeeded", "Failed")
            or _key(p) in self.pods
        }
        for key, running in list(self.pods.items()):
            body = wanted.get(key)
            if body is None or (_uid(body) and running.uid and _uid(body) != running.uid):
                log.info("stopping pod %s/%s", *key)
                # A pod that served traffic stops once its endpoint is gone from every proxy.
                before = self._until_pushed if running.handle.report().ready else None
                running.handle.stop(wait=False, before=before)
                self._stopping.append(running.handle)
                del self.pods[key]
                self._start_times.pop(key, None)
        for key, body in wanted.items():
            if key in self.pods:
                continue
            if str((body.get("status") or {}).get("phase")) in ("Succeeded", "Failed"):
                continue
            annotations = (body.get("metadata") or {}).get("annotations") or {}
            injected = SIDECAR_STATUS_ANNOTATION in annotations
            log.info("starting pod %s/%s%s", *key, " with a sidecar" if injected else "")
            handle = self.pod_factory(body, injected, view, self._on_report)
            self.pods[key] = _Running(handle, _uid(body))
            self._start_times[key] = now_rfc3339()
            handle.start()
        self._stopping = [h for h in self._stopping if not _joined(h)]

    def _on_report(self, _pod: object) -> None:
        self._reported.set()
        self.dirty.set()

    def _until_pushed(self) -> None:
        if not self.api.wait_pushed(ENDPOINT_PUSH_TIMEOUT):
            log.info("proxies did not confirm the removed endpoint within %gs; stopping the "
                     "pod anyway", ENDPOINT_PUSH_TIMEOUT)  # fmt: skip

    def _write_statuses(
        self, pods: list[dict[str, Any]], if_unchanged: bool = False
    ) -> list[dict[str, Any]]:
        """Write changed pod statuses; returns ``pods`` with the statuses now stored.
        ``if_unchanged``: only where the object is still the one in ``pods`` (else the next
        pass writes it on the object as it is then)."""
        bodies = {_key(p): p for p in pods}
        for key, running in self.pods.items():
            report = running.handle.report()
            if report == running.written or key not in bodies:
                continue
            body = dict(bodies[key])
            body["status"] = _status_of(report, self.host_ip, self._start_times.get(key, ""))
            meta = dict(body.get("metadata") or {})
            if not if_unchanged:
                meta.pop("resourceVersion", None)
            elif not meta.get("resourceVersion"):
                continue
            body["metadata"] = meta
            try:
                body = self.api.update_pod(body)
            except ApiGone:
                continue
            if report.ready and not (running.written and running.written.ready):
                log.info("pod %s/%s: status Ready written (t=%.3f)", *key, time.time())
            running.written = report
            bodies[key] = body
        return list(bodies.values())

    def _write_deployment_statuses(
        self, deployments: list[dict[str, Any]], pods: list[dict[str, Any]]
    ) -> None:
        for dep in deployments:
            status = deployment_status(dep, pods)
            if dep.get("status") == status:
                continue
            body = {**dep, "status": status}
            with contextlib.suppress(ApiGone):  # changed meanwhile: the next pass retries
                self.api.update_deployment(body)

    def _write_targets(self, pods: list[dict[str, Any]]) -> None:
        """Prometheus' pod targets (``file_sd``): rewritten when pods come, go or move."""
        targets = pod_targets(pods, SIDECAR_STATUS_ANNOTATION)
        if targets == self._last_targets:
            return
        try:
            write_targets(PrometheusLayout.under(self.settings.state_dir).pod_targets, targets)
        except OSError as exc:
            log.warning("prometheus targets not written: %s", exc)
            return
        self._last_targets = targets

    def _write_status_file(self) -> None:
        reports = {key: r.handle.report() for key, r in self.pods.items()}
        info = {
            "pid": os.getpid(),
            "ready": True,
            "pods": len(reports),
            "ready_pods": sum(1 for r in reports.values() if r.ready),
            "problems": [
                f"pod {ns}/{name}: {problem}"
                for (ns, name), report in sorted(reports.items())
                if (problem := pod_problem(report))
            ][:10],
        }
        if info != self._last_status_file:
            write_status_file(self.settings.state_dir, info)
            self._last_status_file = info

    # ------------------------------------------------------------------ lifetime

    def clear_stale_pods(self) -> int:
        """Delete every Pod object (left by an earlier runtime: its pods are gone)."""
        count = 0
        for pod in self.api.snapshot().pods:
            with contextlib.suppress(ApiGone):
                self.api.delete_pod(*_key(pod))
                count += 1
        return count

    def run(self, stop: threading.Event) -> None:
        """Reconcile on every event until ``stop``; then stop every pod and delete its object."""
        while not stop.is_set():
            try:
                self.reconcile_once()
            except Exception as exc:
                log.warning("reconcile failed: %s", exc)
                stop.wait(0.5)
                self.dirty.set()
            self.dirty.wait(self.settings.resync_seconds)
            self.dirty.clear()
        self.shutdown()

    def shutdown(self) -> None:
        handles = [r.handle for r in self.pods.values()]
        keys = list(self.pods)
        for h in handles:
            h.stop(wait=False)
        for h in [*handles, *self._stopping]:
            h.join()
        for key in keys:
            with contextlib.suppress(Exception):
                self.api.delete_pod(*key)
        self.pods.clear()
        self._stopping.clear()


def _joined(handle: PodHandle) -> bool:
    handle.join(0)
    thread = getattr(handle, "_thread", None)
    return thread is None or not thread.is_alive()


STATUS_FILE = "runtime.json"


def write_status_file(state_dir: Path, info: Mapping[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / (STATUS_FILE + ".tmp")
    tmp.write_text(json.dumps({**info, "time": time.time()}) + "\n")
    tmp.replace(state_dir / STATUS_FILE)


def read_status_file(state_dir: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((state_dir / STATUS_FILE).read_text())
        return data if isinstance(data, dict) else None
    return None
