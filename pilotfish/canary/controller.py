"""The canary controller: Flagger's scheduler, run by the control plane over its own store.

Each Canary is looked at once per ``analysis.interval`` (a new one at once). What happens
depends on its phase, as in Flagger:

- ``Initializing``: create Deployment ``NAME-primary`` from the target, the apex, primary and
  canary Services, the DestinationRules and the VirtualService (100% primary); once the
  primary is ready, scale the target to zero -> ``Initialized``;
- ``Initialized`` / ``Succeeded`` / ``Failed``: when the target's pod template changed
  (its hash differs from ``lastAppliedSpec``), scale the target up -> ``Progressing``;
- ``Progressing``: wait for the canary's pods (rolling back after
  ``progressDeadlineSeconds``); on the first interval run the pre-rollout webhooks and shift
  the first step; then each interval run the rollout webhooks and every metric check: all
  pass -> the next step (``stepWeight``/``stepWeights``, or one more A/B iteration), one
  fails -> ``failedChecks + 1``; at ``threshold`` failed checks, roll back (100% primary,
  canary scaled to zero -> ``Failed``); after the last step -> ``Promoting``: copy the
  target's template to the primary, routing every request to the canary meanwhile (local
  pods stop without a grace period, so the primary's pods are not replaced under traffic);
- ``Promoting``: once the primary rolled out, route 100% to it -> ``Finalising``;
- ``Finalising`` (an interval later, once no proxy routes to the canary): scale the canary to
  zero -> ``Succeeded``, post-rollout webhooks.

A change of the target's template during an analysis restarts it. The generated
VirtualService and DestinationRules are the Canary's: when someone else edits one, the
controller reports it (a Warning event and ``status.message``) and halts the analysis rather
than overwrite the edit; deleting the edited object lets the controller write it again.

Status (``status``) carries Flagger's fields (``phase``, ``canaryWeight``, ``failedChecks``,
``iterations``, ``lastAppliedSpec``, ``lastPromotedSpec``, ``lastTransitionTime``,
``conditions``) plus ``steps``: each interval of the current analysis with the weight and
each check's measured value, for ``pilotfish describe canary``. Events (core/v1, reason
``Synced`` as Flagger writes them) tell the story.

With replicas sharing a PostgreSQL store, only the holder of the ``canary-controller`` lease
acts; with any other store the controller always runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pilotfish.api.flagger import Canary, CanaryWebhook
from pilotfish.api.mesh import DEFAULT_DOMAIN_SUFFIX, service_fqdn
from pilotfish.canary import endpoints, objects
from pilotfish.canary.checks import Checks, MetricError, build_query
from pilotfish.config.store.base import Key, Put, Store, StoredObject
from pilotfish.errors import AddressTakenError, StoreError
from pilotfish.registry.vip import VipAllocator

log = logging.getLogger("pilotfish.canary")

#: Kept in ``status.steps`` (the newest); older steps of a long analysis are dropped.
MAX_STEPS = 60
LEASE = "canary-controller"


@dataclass(frozen=True)
class ControllerSettings:
    #: Name of this replica for the leader lease (PostgreSQL stores).
    holder: str = "pilotfish"
    #: How often the controller looks for canaries whose interval is due.
    tick: float = 0.5
    lease_ttl: float = 15.0
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX


def now_rfc3339(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _deployment_ready(dep: StoredObject | None) -> bool:
    """The Deployment runs its replicas, all of its current template and ready."""
    if dep is None:
        return False
    spec, status = dep.body.get("spec") or {}, dep.body.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    generation = int((dep.body.get("metadata") or {}).get("generation") or 1)
    return (
        int(status.get("observedGeneration") or 0) >= generation
        and int(status.get("replicas") or 0) == wanted
        and int(status.get("updatedReplicas") or 0) >= wanted
        and int(status.get("readyReplicas") or 0) >= wanted
    )


def template_of(dep: StoredObject) -> dict[str, Any]:
    return dict((dep.body.get("spec") or {}).get("template") or {})


class CanaryController:
    """Runs every Canary of a store. :meth:`run` until stopped; tests call :meth:`reconcile`."""

    def __init__(
        self,
        store: Store,
        checks: Checks,
        settings: ControllerSettings | None = None,
        vips: VipAllocator | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.checks = checks
        self.settings = settings or ControllerSettings()
        self.vips = vips
        self.clock = clock
        self._due: dict[Key, float] = {}
        self._reported: dict[Key, str] = {}

    # -- the loop

    def leader(self) -> bool:
        try_lease = getattr(self.store, "try_lease", None)
        if try_lease is None:
            return True
        try:
            return bool(try_lease(LEASE, self.settings.holder, self.settings.lease_ttl))
        except StoreError as exc:
            log.warning("canary controller: lease not renewed: %s", exc)
            return False

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if self.leader():
                    await self.reconcile_due()
            except Exception:  # a bug in one pass must not stop the controller
                log.exception("canary controller pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.tick)
        release = getattr(self.store, "release_lease", None)
        if release is not None:
            with contextlib.suppress(StoreError):
                release(LEASE, self.settings.holder)

    async def reconcile_due(self) -> None:
        now = self.clock()
        seen = set()
        for stored in self.store.list("Canary"):
            seen.add(stored.key)
            if self._due.get(stored.key, 0.0) > now:
                continue
            canary = Canary.model_validate(stored.body)
            if canary.spec.suspend:
                continue
            await self.reconcile(stored.key)
            self._due[stored.key] = self.clock() + canary.spec.the_analysis.interval_seconds
        for key in set(self._due) - seen:
            self._due.pop(key, None)

    # -- one canary

    async def reconcile(self, key: Key) -> None:
        """One step of the canary at ``key`` (what one Flagger interval does)."""
        stored = self.store.get(key)
        if stored is None:
            return
        run = _Run(self, stored)
        try:
            await run.step()
        except StoreError as exc:  # a concurrent write: the next interval retries
            log.info("canary %s: %s (retrying next interval)", key, exc)
        run.save()
        await run.notify()


class _Run:
    """One reconcile of one canary: reads, decides, writes, and saves the status once."""

    def __init__(self, ctl: CanaryController, stored: StoredObject) -> None:
        self.ctl = ctl
        self.store = ctl.store
        self.stored = stored
        self.canary = Canary.model_validate(stored.body)
        self.ns = stored.namespace
        self.status: dict[str, Any] = copy.deepcopy(stored.body.get("status") or {})
        self.before = copy.deepcopy(self.status)
        self.analysis = self.canary.spec.the_analysis
        #: Events recorded by this reconcile, for the ``event`` webhooks.
        self.recorded: list[tuple[str, str]] = []

    # -- store helpers

    def get(self, kind: str, name: str) -> StoredObject | None:
        return self.store.get(Key(kind, self.ns, name))

    def put(self, body: dict[str, Any], current: StoredObject | None) -> None:
        """Write ``body``, keeping the stored ``status`` (the runtime's) and ``clusterIP``."""
        if current is not None:
            if "status" in current.body:
                body["status"] = copy.deepcopy(current.body["status"])
            meta = body["metadata"]
            old_meta = current.body.get("metadata") or {}
            for field in ("labels", "annotations"):
                merged = {**(old_meta.get(field) or {}), **(meta.get(field) or {})}
                if merged:
                    meta[field] = merged
        allocated = self._cluster_ip(body, current) if body["kind"] == "Service" else None
        expected = current.revision if current is not None else None
        put = Put(body, expected_revision=expected, create_only=current is None)
        for _ in range(16):
            try:
                self.store.commit([put])
                return
            except AddressTakenError as e:
                # Another control plane gave this address to a colliding hostname meanwhile.
                if allocated is None or self.ctl.vips is None:
                    raise
                holder = e.holder_host
                if e.holder.kind == "Service":
                    suffix = self.ctl.settings.domain_suffix
                    holder = service_fqdn(e.holder.name, e.holder.namespace, suffix)
                body["spec"]["clusterIP"] = self.ctl.vips.reassign(allocated, e.address, holder)
        self.store.commit([put])

    def _cluster_ip(self, body: dict[str, Any], current: StoredObject | None) -> str | None:
        """Keep the Service's address, or allocate one: the hostname allocated for, if so."""
        spec = body["spec"]
        old = ((current.body.get("spec") or {}).get("clusterIP")) if current else None
        if old:
            spec["clusterIP"] = old
            return None
        if self.ctl.vips is not None:
            fqdn = service_fqdn(body["metadata"]["name"], self.ns, self.ctl.settings.domain_suffix)
            spec["clusterIP"] = self.ctl.vips.allocate(fqdn)
            return fqdn
        return None

    def now(self) -> str:
        return now_rfc3339(self.ctl.clock)

    def event(self, message: str, warning: bool = False) -> None:
        """A core/v1 Event about the canary (repeats raise its count), and the log line."""
        name = self.canary.metadata.name
        (log.warning if warning else log.info)("canary %s/%s: %s", self.ns, name, message)
        digest = hashlib.sha256(message.encode()).hexdigest()[:10]
        key = Key("Event", self.ns, f"{name}.{digest}")
        current = self.store.get(key)
        now = self.now()
        count = int(current.body.get("count") or 1) + 1 if current is not None else 1
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": key.name, "namespace": self.ns},
            "involvedObject": {
                "kind": "Canary",
                "apiVersion": self.canary.apiVersion,
                "namespace": self.ns,
                "name": name,
                "uid": self.canary.metadata.uid or "",
            },
            "reason": "Synced",
            "message": message,
            "type": "Warning" if warning else "Normal",
            "count": count,
            "firstTimestamp": (current.body.get("firstTimestamp") if current else None) or now,
            "lastTimestamp": now,
            "source": {"component": "flagger"},
        }
        try:
            self.store.commit([Put(body)])
        except StoreError as exc:
            log.warning("event not recorded: %s", exc)
        self.recorded.append((message, "Warning" if warning else "Normal"))

    def set_phase(self, phase: str, message: str) -> None:
        if self.status.get("phase") != phase:
            self.status["lastTransitionTime"] = self.now()
        self.status["phase"] = phase
        self.status["message"] = message
        promoted = {
            "Initialized": ("True", "Initialized"),
            "Succeeded": ("True", "Succeeded"),
            "Failed": ("False", "Failed"),
        }.get(phase, ("Unknown", phase))
        conditions = [c for c in self.status.get("conditions") or [] if c.get("type") != "Promoted"]
        old: dict[str, Any] = next(
            (c for c in self.status.get("conditions") or [] if c.get("type") == "Promoted"), {}
        )
        conditions.append(
            {
                "type": "Promoted",
                "status": promoted[0],
                "reason": promoted[1],
                "message": message,
                "lastUpdateTime": self.now(),
                "lastTransitionTime": old.get("lastTransitionTime")
                if old.get("status") == promoted[0] and old.get("reason") == promoted[1]
                else self.now(),
            }
        )
        self.status["conditions"] = conditions

    def save(self) -> None:
        if self.status == self.before:
            return
        current = self.store.get(self.stored.key)
        if current is None:
            return
        # When the user changed the Canary meanwhile, their spec is kept with our status.
        body = copy.deepcopy(current.body)
        body["status"] = self.status
        try:
            self.store.commit([Put(body, expected_revision=current.revision)])
        except StoreError as exc:
            log.info("canary status not saved (next interval retries): %s", exc)

    # -- the step

    async def step(self) -> None:
        spec = self.canary.spec
        target = self.get("Deployment", spec.targetRef.name)
        if target is None:
            self.set_phase(
                self.status.get("phase") or "Initializing",
                f"Deployment {spec.targetRef.name}.{self.ns} not found",
            )
            self.report(f"Deployment {spec.targetRef.name}.{self.ns} not found", warning=True)
            return
        label = objects.selector_label(target.body)
        if label is None:
            message = (
                f"Deployment {spec.targetRef.name}.{self.ns} has no selector label "
                f"{' or '.join(objects.SELECTOR_LABELS)}"
            )
            self.set_phase(self.status.get("phase") or "Initializing", message)
            self.report(message, warning=True)
            return
        phase = self.status.get("phase") or ""
        if phase in ("", "Initializing"):
            await self.initialize(target, label)
            return
        if not self.routing_intact(label):
            return
        current_hash = objects.spec_hash(template_of(target))
        if phase in ("Initialized", "Succeeded", "Failed"):
            await self.idle(target, current_hash)
        elif phase == "Progressing":
            await self.progress(target, label, current_hash)
        elif phase == "Promoting":
            await self.promoting(target)
        elif phase == "Finalising":
            await self.finalising(target)

    def report(self, message: str, warning: bool = False) -> None:
        """An event once per distinct message (a condition that persists is not repeated)."""
        if self.ctl._reported.get(self.stored.key) == message:
            return
        self.ctl._reported[self.stored.key] = message
        self.event(message, warning)

    # -- Initializing

    async def initialize(self, target: StoredObject, label: tuple[str, str]) -> None:
        if not self.status.get("phase"):
            self.set_phase("Initializing", "New Canary detected")
        for kind, name in (
            ("VirtualService", self.canary.apex_name()),
            ("DestinationRule", objects.primary_service_name(self.canary)),
            ("DestinationRule", objects.canary_service_name(self.canary)),
        ):
            found = self.get(kind, name)
            if found is not None and not objects.owned_by(found.body, self.canary):
                message = (
                    f"{kind} {name}.{self.ns} exists and is not owned by this Canary: "
                    "delete it to let the Canary generate its routing"
                )
                self.status["message"] = message
                self.report(message, warning=True)
                return
        primary = self.get("Deployment", objects.primary_name(self.canary))
        replicas = int((target.body.get("spec") or {}).get("replicas", 1)) or 1
        if primary is None:
            self.put(objects.primary_deployment(self.canary, target.body, label, replicas), None)
            primary = self.get("Deployment", objects.primary_name(self.canary))
        if not _deployment_ready(primary):
            # Routing moves to the primary only once it serves, so an adopted Service never
            # points at nothing.
            self.status["message"] = (
                f"Waiting for {objects.primary_name(self.canary)}.{self.ns} to be ready"
            )
            return
        for svc in objects.services(self.canary, label):
            current = self.get("Service", svc["metadata"]["name"])
            if current is not None and not objects.owned_by(current.body, self.canary):
                self.event(
                    f"Service {svc['metadata']['name']}.{self.ns} adopted: it now selects "
                    f"{', '.join(f'{k}={v}' for k, v in svc['spec']['selector'].items())}"
                )
            if current is None or _differs(current.body, svc):
                self.put(svc, current)
        for dr in objects.destination_rules(self.canary):
            current = self.get("DestinationRule", dr["metadata"]["name"])
            if current is None or _differs(current.body, dr):
                self.put(dr, current)
        if not self.write_routes(0):
            return
        # The target is scaled to zero on the next interval (``idle``), once every proxy has
        # had time to route to the primary.
        self.status.update(
            canaryWeight=0,
            failedChecks=0,
            iterations=0,
            lastAppliedSpec=objects.spec_hash(template_of(target)),
            lastPromotedSpec=objects.spec_hash(template_of(target)),
        )
        self.set_phase("Initialized", "Deployment initialization completed.")
        self.event(f"Initialization done! {self.canary.metadata.name}.{self.ns}")

    # -- routing

    def write_routes(self, weight: int, ab_active: bool = False) -> bool:
        """Route ``weight`` percent to the canary; False when the VirtualService was edited
        by someone else (reported, not overwritten)."""
        want = objects.virtual_service(self.canary, weight, ab_active)
        current = self.get("VirtualService", want["metadata"]["name"])
        if current is not None and objects.edited(current.body):
            self.report_edit("VirtualService", want["metadata"]["name"])
            return False
        if current is None or _differs(current.body, want):
            self.put(want, current)
        return True

    def report_edit(self, kind: str, name: str) -> None:
        message = (
            f"{kind} {name}.{self.ns} was edited outside the Canary; Pilotfish does not "
            "overwrite it and the analysis is halted: delete it (the Canary writes it again) "
            "or restore it"
        )
        self.status["message"] = message
        self.report(message, warning=True)

    def routing_intact(self, label: tuple[str, str]) -> bool:
        """Re-create deleted generated objects; False (halt) when one was edited."""
        ok = True
        for dr in objects.destination_rules(self.canary):
            current = self.get("DestinationRule", dr["metadata"]["name"])
            if current is None:
                self.put(dr, None)
            elif objects.edited(current.body):
                self.report_edit("DestinationRule", dr["metadata"]["name"])
                ok = False
        vs = self.get("VirtualService", self.canary.apex_name())
        if vs is None:
            weight = int(self.status.get("canaryWeight") or 0)
            ab = self.status.get("phase") == "Progressing" and self.analysis.is_ab
            self.write_routes(weight, ab and bool(self.status.get("abActive")))
        elif objects.edited(vs.body):
            self.report_edit("VirtualService", self.canary.apex_name())
            ok = False
        for svc in objects.services(self.canary, label):
            if self.get("Service", svc["metadata"]["name"]) is None:
                self.put(svc, None)
        if ok and str(self.status.get("message") or "").endswith("or restore it"):
            self.status["message"] = "The generated routing is the Canary's again"
            self.event(self.status["message"])
        if ok and self.ctl._reported.get(self.stored.key, "").endswith("or restore it"):
            self.ctl._reported.pop(self.stored.key, None)
        return ok

    def scale(self, dep: StoredObject, replicas: int) -> None:
        current = self.get("Deployment", dep.name)
        if current is None:
            return
        if int((current.body.get("spec") or {}).get("replicas", 1)) == replicas:
            return
        body = copy.deepcopy(current.body)
        body["spec"]["replicas"] = replicas
        self.store.commit([Put(body, expected_revision=current.revision)])

    # -- idle: waiting for a new revision

    async def idle(self, target: StoredObject, current_hash: str) -> None:
        if current_hash == self.status.get("lastAppliedSpec"):
            self.scale(target, 0)  # the target only runs during an analysis
            return
        self.event(f"New revision detected! Scaling up {self.canary.spec.targetRef.name}.{self.ns}")
        self.start_analysis(target, current_hash)
        await self.hooks("confirm-rollout")

    def start_analysis(self, target: StoredObject, current_hash: str) -> None:
        primary = self.get("Deployment", objects.primary_name(self.canary))
        replicas = int(((primary.body if primary else {}).get("spec") or {}).get("replicas", 1))
        self.scale(target, max(replicas, 1))
        self.status.update(
            canaryWeight=0,
            failedChecks=0,
            iterations=0,
            lastAppliedSpec=current_hash,
            waitingSince=self.ctl.clock(),
            abActive=False,
            steps=[],
        )
        self.set_phase("Progressing", "New revision detected, progressing canary analysis.")

    # -- Progressing

    async def progress(self, target: StoredObject, label: tuple[str, str], h: str) -> None:
        name = f"{self.canary.spec.targetRef.name}.{self.ns}"
        if h != self.status.get("lastAppliedSpec"):
            self.event(f"New revision detected! Restarting analysis for {name}")
            if self.write_routes(0):
                self.start_analysis(target, h)
            return
        threshold = self.analysis.failure_threshold
        failed = int(self.status.get("failedChecks") or 0)
        if threshold and failed >= threshold:
            await self.rollback(
                target, f"Rolling back {name} failed checks threshold reached {failed}"
            )
            return
        if not _deployment_ready(self.get("Deployment", target.name)):
            waited = self.ctl.clock() - float(self.status.get("waitingSince") or self.ctl.clock())
            if waited > self.canary.spec.deadline_seconds:
                await self.rollback(
                    target,
                    f"Canary {name} progress deadline exceeded: not ready after "
                    f"{self.canary.spec.deadline_seconds}s",
                )
                return
            self.status["message"] = f"Waiting for {name} rollout to finish"
            self.report(f"canary deployment {name} not ready")
            return
        self.status["waitingSince"] = self.ctl.clock()
        if self.canary.spec.skipAnalysis:
            self.event(f"Skipping analysis for {name}: promoting")
            self.promote(target, label)
            return
        weight = int(self.status.get("canaryWeight") or 0)
        iterations = int(self.status.get("iterations") or 0)
        ab = self.analysis.is_ab
        if weight == 0 and iterations == 0 and not self.status.get("abActive"):
            self.event(f"Starting canary analysis for {name}")
            self.status["analysisStart"] = self.ctl.clock()
            problem = await self.hooks("pre-rollout")
            if problem:
                self.fail_check(problem, weight)
                return
            # Load tests (rollout webhooks) start now, so the canary has traffic to measure.
            await self.hooks("rollout")
            if ab:
                if self.write_routes(0, ab_active=True):
                    self.status["abActive"] = True
                    how = "Mirroring traffic to" if self.analysis.mirror else "Advance"
                    self.event(f"{how} {name} canary iteration 1/{self.analysis.iterations}")
                    self.record_step(0, iterations + 1, [], "started")
                return
            await self.advance(name, 0)
            return
        problem = await self.hooks("rollout")
        results: list[dict[str, Any]] = []
        if problem is None:
            problem, results = await self.run_metrics()
        if problem is not None:
            self.fail_check(problem, weight, results)
            return
        if ab:
            iterations += 1
            self.status["iterations"] = iterations
            self.record_step(0, iterations, results, "passed")
            if iterations >= (self.analysis.iterations or 0):
                await self.try_promote(target, label, name)
                return
            self.event(
                f"Advance {name} canary iteration {iterations + 1}/{self.analysis.iterations}"
            )
            return
        self.record_step(weight, 0, results, "passed")
        steps = self.analysis.weights()
        if not steps or weight >= steps[-1]:
            await self.try_promote(target, label, name)
            return
        await self.advance(name, weight)

    async def advance(self, name: str, weight: int) -> None:
        steps = self.analysis.weights()
        nxt = next((w for w in steps if w > weight), steps[-1] if steps else 100)
        if weight > 0:
            problem = await self.hooks("confirm-traffic-increase")
            if problem:
                self.status["message"] = f"Waiting for traffic increase approval: {problem}"
                return
        if self.write_routes(nxt):
            self.status["canaryWeight"] = nxt
            self.status["message"] = f"Advance {name} canary weight {nxt}"
            self.event(f"Advance {name} canary weight {nxt}")
            self.record_step(nxt, 0, [], "weight")

    async def try_promote(self, target: StoredObject, label: tuple[str, str], name: str) -> None:
        problem = await self.hooks("confirm-promotion")
        if problem:
            self.status["message"] = f"Waiting for promotion approval: {problem}"
            return
        self.event(f"Copying {name} template spec to {objects.primary_name(self.canary)}.{self.ns}")
        self.promote(target, label)

    def promote(self, target: StoredObject, label: tuple[str, str]) -> None:
        # While the primary's pods are replaced, every request goes to the canary: it runs the
        # new template already, was analysed, and has the primary's replicas. (Local pods stop
        # without a grace period, so a pod being replaced under traffic could fail requests.)
        if not self.write_routes(100):
            return
        self.status["canaryWeight"] = 100
        primary = self.get("Deployment", objects.primary_name(self.canary))
        replicas = int(((primary.body if primary else {}).get("spec") or {}).get("replicas", 1))
        body = objects.primary_deployment(self.canary, target.body, label, max(replicas, 1))
        self.put(body, primary)
        self.set_phase("Promoting", "Canary analysis completed, starting primary rolling update.")

    def fail_check(
        self, problem: str, weight: int, results: list[dict[str, Any]] | None = None
    ) -> None:
        failed = int(self.status.get("failedChecks") or 0) + 1
        self.status["failedChecks"] = failed
        self.status["message"] = problem
        self.record_step(weight, int(self.status.get("iterations") or 0), results or [], "failed")
        self.event(problem, warning=True)

    def record_step(
        self, weight: int, iteration: int, results: list[dict[str, Any]], outcome: str
    ) -> None:
        steps = list(self.status.get("steps") or [])
        step: dict[str, Any] = {"time": self.now(), "weight": weight, "outcome": outcome}
        if iteration:
            step["iteration"] = iteration
        if results:
            step["checks"] = results
        steps.append(step)
        self.status["steps"] = steps[-MAX_STEPS:]

    async def run_metrics(self) -> tuple[str | None, list[dict[str, Any]]]:
        """Every metric check; the first failure's message (or None) and all results."""
        results: list[dict[str, Any]] = []
        problem: str | None = None
        target = f"{self.canary.spec.targetRef.name}.{self.ns}"
        for metric in self.analysis.metrics:
            template = None
            if metric.templateRef is not None:
                ref = metric.templateRef
                stored = self.store.get(Key("MetricTemplate", ref.namespace or self.ns, ref.name))
                if stored is None:
                    msg = f"Metric template {ref.name}.{ref.namespace or self.ns} not found"
                    results.append({"name": metric.name, "error": msg})
                    problem = problem or msg
                    continue
                template = stored.body
            try:
                start = self.status.get("analysisStart")
                since = self.ctl.clock() - float(start) if start is not None else None
                query = build_query(self.canary, metric, template, since)
            except KeyError as exc:
                msg = f"Metric {metric.name}: templateVariables has no {exc}"
                results.append({"name": metric.name, "error": msg})
                problem = problem or msg
                continue
            result: dict[str, Any] = {"name": metric.name, "range": query.describe_range()}
            try:
                value = await self.ctl.checks.query(query)
            except MetricError as exc:
                result["error"] = str(exc)
                msg = (
                    f"Halt advancement no values found for istio metric {metric.name} "
                    f"probably {target} is not receiving traffic: {exc}"
                    if "no values" in str(exc)
                    else f"Metric query failed for {metric.name}: {exc}"
                )
                problem = problem or msg
                results.append(result)
                continue
            result["value"] = round(value, 3)
            result["ok"] = query.judge(value)
            results.append(result)
            if not result["ok"]:
                problem = problem or (
                    f"Halt {target} advancement {metric.name} {value:.2f} "
                    f"{'<' if query.min is not None and value < query.min else '>'} "
                    f"{query.min if query.min is not None and value < query.min else query.max:g}"
                )
        return problem, results

    async def hooks(self, kind: str) -> str | None:
        """Run the webhooks of ``kind``; the first failure's message, or None."""
        for hook in self.analysis.webhooks:
            if hook.kind != kind:
                continue
            problem = await self.ctl.checks.webhook(hook, self.payload(hook), self.target(hook))
            if problem is not None:
                return f"{kind} webhook {hook.name} failed: {problem}"
        return None

    def target(self, hook: CanaryWebhook) -> endpoints.Target:
        """The hook's URL, sent to a ready pod when it names a mesh Service."""
        services = {(o.namespace, o.name): o.body for o in self.store.list("Service")}
        pods = [o.body for o in self.store.list("Pod")]
        return endpoints.resolve(hook.url, self.ns, services, pods)

    async def notify(self) -> None:
        """Flagger's ``event`` webhooks: each event of this reconcile, as Flagger posts it."""
        hooks = [h for h in self.analysis.webhooks if h.kind == "event"]
        for message, kind in self.recorded if hooks else []:
            for hook in hooks:
                payload = {
                    "name": self.canary.metadata.name,
                    "namespace": self.ns,
                    "phase": self.status.get("phase") or "Initializing",
                    "metadata": {
                        "eventMessage": message,
                        "eventType": kind,
                        "timestamp": str(int(self.ctl.clock() * 1000)),
                    },
                }
                problem = await self.ctl.checks.webhook(hook, payload, self.target(hook))
                if problem is not None:
                    log.warning("event webhook %s failed: %s", hook.name, problem)

    def payload(self, hook: CanaryWebhook) -> dict[str, Any]:
        return {
            "name": self.canary.metadata.name,
            "namespace": self.ns,
            "phase": self.status.get("phase") or "Initializing",
            "checksum": str(self.status.get("lastAppliedSpec") or ""),
            "type": hook.kind,
            "metadata": dict(hook.metadata),
        }

    async def rollback(self, target: StoredObject, why: str) -> None:
        self.event(why, warning=True)
        self.write_routes(0)
        # The canary is scaled to zero on the next interval (``idle``), once every proxy
        # routes to the primary only.
        self.status.update(canaryWeight=0, abActive=False)
        self.set_phase("Failed", "Canary analysis failed, Deployment scaled to zero.")
        self.event(f"Canary failed! Scaling down {target.name}.{self.ns}", warning=True)
        await self.hooks("post-rollout")

    # -- Promoting, Finalising

    async def promoting(self, target: StoredObject) -> None:
        primary = self.get("Deployment", objects.primary_name(self.canary))
        if not _deployment_ready(primary):
            self.status["message"] = f"Waiting for {objects.primary_name(self.canary)} rollout"
            return
        if self.write_routes(0):
            self.status.update(canaryWeight=0, abActive=False)
            self.event("Routing all traffic to primary")
            self.set_phase(
                "Finalising", "Canary analysis completed, routing all traffic to primary."
            )

    async def finalising(self, target: StoredObject) -> None:
        self.scale(target, 0)
        self.status["lastPromotedSpec"] = self.status.get("lastAppliedSpec")
        self.set_phase("Succeeded", "Canary analysis completed successfully, promotion finished.")
        self.event(f"Promotion completed! Scaling down {target.name}.{self.ns}")
        await self.hooks("post-rollout")


def _differs(current: dict[str, Any], want: dict[str, Any]) -> bool:
    """The generated fields of ``want`` differ from ``current`` (spec, owner, labels added)."""
    if current.get("spec") != want.get("spec") and not _spec_contains(current, want):
        return True
    meta, want_meta = current.get("metadata") or {}, want.get("metadata") or {}
    if meta.get("ownerReferences") != want_meta.get("ownerReferences"):
        return True
    for field in ("labels", "annotations"):
        have = meta.get(field) or {}
        if any(have.get(k) != v for k, v in (want_meta.get(field) or {}).items()):
            return True
    return False


def _spec_contains(current: dict[str, Any], want: dict[str, Any]) -> bool:
    """A Service's spec equals the wanted one but for the fields the store filled."""
    have = dict(current.get("spec") or {})
    if current.get("kind") == "Service":
        have.pop("clusterIP", None)
    return have == want.get("spec")
