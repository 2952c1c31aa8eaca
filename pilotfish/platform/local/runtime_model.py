"""Pure logic of the local pod runtime: Deployments to Pod objects, statuses, service tables.

Nothing here does I/O. The runtime process (:mod:`.runtime`) lists Namespaces, Deployments,
Services and Pods through the control plane's HTTP API, and asks this module:

- :func:`plan_deployments` - which Pod objects to create and which to delete so that every
  Deployment has ``spec.replicas`` pods of its current template (names like Kubernetes':
  ``reviews-v1-<template hash>-<5 characters>``). A template change rolls: new pods are created
  at once, old ones are deleted as new ones become ready. Surplus pods go not-ready first, then
  newest first. Failed pods and pods whose Deployment is gone are deleted.
- :func:`pod_status` / :func:`deployment_status` - the ``status`` the runtime writes back.
- :func:`service_names` / :func:`service_endpoints` - the hosts-file entries and the
  kube-proxy style VIP table (ready pods selected by each Service) of pods without a sidecar.
- :func:`container_process` - the command line, environment and user of one container.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pilotfish.api.mesh import export_to
from pilotfish.api.proxy_annotation import proxy_config
from pilotfish.api.workloads import FIELD_REF_LABEL, FIELD_REF_PATHS, pod_target_port
from pilotfish.platform.local.hosts import EntryName, ServiceName
from pilotfish.platform.local.service_lb import Endpoint, ServicePort

__all__ = [
    "INJECTION_LABEL",
    "INJECT_ANNOTATION",
    "POD_TEMPLATE_HASH",
    "PROXY_CONTAINER",
    "SIDECAR_STATUS_ANNOTATION",
    "TEMPLATES_ANNOTATION",
    "WAIT_FOR_PROXY",
    "ContainerProcess",
    "DeploymentPlan",
    "container_process",
    "deployment_status",
    "holds_application",
    "is_gateway_template",
    "is_injected",
    "namespace_injected",
    "new_pod",
    "owner_deployment",
    "plan_deployments",
    "pod_is_ready",
    "pod_name",
    "pod_status",
    "random_suffix",
    "selector_matches",
    "service_endpoints",
    "service_names",
    "template_hash",
]

INJECTION_LABEL = "istio-injection"
#: Pod label or annotation that overrides the namespace (Istio's ``sidecar.istio.io/inject``).
INJECT_ANNOTATION = "sidecar.istio.io/inject"
#: Set on injected pods, as Istio's injector does; the registry reads it as "has a sidecar".
SIDECAR_STATUS_ANNOTATION = "sidecar.istio.io/status"
POD_TEMPLATE_HASH = "pod-template-hash"
PROXY_CONTAINER = "istio-proxy"
#: The proxy container's ``postStart`` hook when the pod holds its apps (Istio's).
WAIT_FOR_PROXY = ("pilot-agent", "wait")

#: Kubernetes' alphabet for generated names (no vowels, no confusable characters).
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# ---------------------------------------------------------------- small readers


def _meta(body: Mapping[str, Any]) -> dict[str, Any]:
    return dict(body.get("metadata") or {})


def _labels(body: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (_meta(body).get("labels") or {}).items()}


def _ns(body: Mapping[str, Any]) -> str:
    return str(_meta(body).get("namespace") or "default")


def _name(body: Mapping[str, Any]) -> str:
    return str(_meta(body).get("name") or "")


def namespace_injected(namespace: Mapping[str, Any] | None) -> bool:
    """Whether a Namespace object has ``istio-injection=enabled``."""
    return namespace is not None and _labels(namespace).get(INJECTION_LABEL) == "enabled"


#: Istio's injection template annotation; ``gateway`` makes the pod a gateway (the proxy is
#: the pod's only container, a router, without traffic capture), as Istio's gateway
#: injection does for a Deployment with an ``istio-proxy`` container of image ``auto``.
TEMPLATES_ANNOTATION = "inject.istio.io/templates"


def is_gateway_template(annotations: Mapping[str, Any]) -> bool:
    return str(annotations.get(TEMPLATES_ANNOTATION) or "").strip() == "gateway"


def is_injected(namespace: Mapping[str, Any] | None, template: Mapping[str, Any]) -> bool:
    """Istio's rule: the pod's ``sidecar.istio.io/inject`` label or annotation wins (``true`` /
    ``false``); otherwise the namespace's ``istio-injection`` label decides."""
    meta = template.get("metadata") or {}
    for source in (meta.get("labels") or {}, meta.get("annotations") or {}):
        value = str(source.get(INJECT_ANNOTATION, "")).lower()
        if value in ("true", "false"):
            return value == "true"
    return namespace_injected(namespace)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes ``LabelSelector`` (``matchLabels`` + ``matchExpressions``) against labels."""
    if not selector:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(str(k)) != str(v):
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op = str(expr.get("key")), str(expr.get("operator"))
        values = [str(v) for v in expr.get("values") or []]
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


# ---------------------------------------------------------------- names


def template_hash(template: Mapping[str, Any]) -> str:
    """A stable 10-character hash of a pod template (Kubernetes' ``pod-template-hash``)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    value = int.from_bytes(digest[:16], "big")
    out = []
    for _ in range(10):
        value, rem = divmod(value, len(_ALPHABET))
        out.append(_ALPHABET[rem])
    return "".join(out)


def random_suffix(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(5))


def pod_name(deployment: str, hash_: str, suffix: str) -> str:
    """``<deployment>-<hash>-<suffix>``, the deployment part shortened to fit 63 characters."""
    return f"{deployment[: 63 - len(hash_) - len(suffix) - 2]}-{hash_}-{suffix}"


def owner_deployment(pod: Mapping[str, Any]) -> str | None:
    """Name of the Deployment that owns ``pod`` (its controller owner reference), if any."""
    for ref in _meta(pod).get("ownerReferences") or []:
        if ref.get("kind") == "Deployment" and ref.get("controller", True):
            return str(ref.get("name"))
    return None


# ---------------------------------------------------------------- pods from deployments


def new_pod(
    deployment: Mapping[str, Any],
    name: str,
    hash_: str,
    injected: bool,
    hold_default: bool = False,
) -> dict[str, Any]:
    """The Pod object for one replica of ``deployment`` (status ``Pending``, no IP yet).

    Injected, its ``istio-proxy`` container goes after the app's; or, as Istio's injector puts
    it when the pod holds its apps until the proxy is ready (``holdApplicationUntilProxyStarts``
    in its ``proxy.istio.io/config`` annotation, else ``hold_default``: the mesh's
    ``defaultConfig``), first, with the ``postStart`` hook that waits for it (see
    :func:`holds_application`)."""
    template = copy.deepcopy((deployment.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    labels = {**(tmeta.get("labels") or {}), POD_TEMPLATE_HASH: hash_}
    annotations = dict(tmeta.get("annotations") or {})
    spec: dict[str, Any] = template.get("spec") or {}
    spec["nodeName"] = "local"
    if injected:
        gateway = is_gateway_template(annotations)
        annotations[SIDECAR_STATUS_ANNOTATION] = json.dumps(
            {"containers": [PROXY_CONTAINER], "initContainers": [] if gateway else ["istio-init"]},
            separators=(",", ":"),
        )
        given = [c for c in spec.get("containers") or [] if c.get("name") == PROXY_CONTAINER]
        containers = [c for c in spec.get("containers") or [] if c.get("name") != PROXY_CONTAINER]
        ports = [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}]
        if gateway and given:  # a gateway's own ports (8080, 8443, ...) stay declared
            ports = [*(given[0].get("ports") or []), *ports]
        proxy: dict[str, Any] = {
            "name": PROXY_CONTAINER,
            "image": "pilotfish/proxy",
            "args": ["proxy", "router" if gateway else "sidecar"],
            "ports": ports,
        }
        hold = proxy_config(annotations).hold_application
        if not gateway and (hold_default if hold is None else hold):
            proxy["lifecycle"] = {"postStart": {"exec": {"command": list(WAIT_FOR_PROXY)}}}
            containers.insert(0, proxy)
        else:
            containers.append(proxy)
        spec["containers"] = containers
    meta: dict[str, Any] = {
        "name": name,
        "namespace": _ns(deployment),
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": _name(deployment),
                "controller": True,
            }
        ],
    }
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": {"phase": "Pending"},
    }


def holds_application(pod: Mapping[str, Any]) -> bool:
    """Whether the pod's apps start only once its sidecar is ready: its ``istio-proxy``
    container has a ``postStart`` hook (how Istio's injector holds them: Kubernetes starts the
    next container once the hook, ``pilot-agent wait``, returns), or its
    ``proxy.istio.io/config`` says ``holdApplicationUntilProxyStarts: true``. Pure."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == PROXY_CONTAINER and ((c.get("lifecycle") or {}).get("postStart")):
            return True
    return proxy_config(_meta(pod).get("annotations") or {}).hold_application is True


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status")) == "True"
    return False


def _phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


@dataclass
class DeploymentPlan:
    """What the deployment controller wants done: Pod objects to create, pod keys to delete."""

    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)


def _replicas(spec: Mapping[str, Any]) -> int:
    value = spec.get("replicas")
    return 1 if value is None else int(value)


def _age_key(pod: Mapping[str, Any]) -> tuple[str, int]:
    meta = _meta(pod)
    return str(meta.get("creationTimestamp") or ""), int(meta.get("resourceVersion") or 0)


def _scaled(value: Any, replicas: int, default: str, round_up: bool) -> int:
    """``maxSurge``/``maxUnavailable``: a count, or a percentage of ``replicas`` (Kubernetes
    rounds a surge up and an unavailability down)."""
    if value is None:
        value = default
    text = str(value)
    if not text.endswith("%"):
        return max(0, int(text))
    share = replicas * int(text[:-1])
    return max(0, -(-share // 100) if round_up else share // 100)


def rolling_limits(spec: Mapping[str, Any], replicas: int) -> tuple[int, int]:
    """``(max surge, max unavailable)`` of a RollingUpdate Deployment, Kubernetes' defaults
    (25 % each) where unset; when both come to 0, one pod may be unavailable (as Kubernetes)."""
    rolling = ((spec.get("strategy") or {}).get("rollingUpdate")) or {}
    surge = _scaled(rolling.get("maxSurge"), replicas, "25%", round_up=True)
    unavailable = _scaled(rolling.get("maxUnavailable"), replicas, "25%", round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _recreate(spec: Mapping[str, Any]) -> bool:
    return (spec.get("strategy") or {}).get("type") == "Recreate"


def _new_to_create(
    spec: Mapping[str, Any],
    replicas: int,
    current: Sequence[Mapping[str, Any]],
    old: Sequence[Mapping[str, Any]],
) -> int:
    """New-template pods to create now: the missing ones, but during a rollout no more pods
    in all than ``replicas + maxSurge`` (none while old ones remain with ``Recreate``)."""
    missing = replicas - len(current)
    if missing <= 0 or not old:
        return max(0, missing)
    if _recreate(spec):
        return 0
    surge, _ = rolling_limits(spec, replicas)
    return max(0, min(missing, replicas + surge - len(current) - len(old)))


def _old_to_delete(
    spec: Mapping[str, Any],
    replicas: int,
    current: Sequence[Mapping[str, Any]],
    old: Sequence[Mapping[str, Any]],
) -> list[Mapping[str, Any]]:
    """Old-template pods to delete now, as Kubernetes' rolling update: never so many that
    fewer than ``replicas - maxUnavailable`` pods stay ready (deleted pods are gone from the
    list, so pods removed by earlier passes count as unavailable), not-ready ones first."""
    if not old:
        return []
    if replicas == 0 or _recreate(spec):
        return list(old)
    _, unavailable = rolling_limits(spec, replicas)
    min_available = replicas - unavailable
    new_unready = sum(1 for p in current if not pod_is_ready(p))
    ready_old = [p for p in old if pod_is_ready(p)]
    unready_old = [p for p in old if not pod_is_ready(p)]
    # Not-ready old pods serve nothing: removable as long as the rollout can go on.
    cleanup = max(0, len(current) + len(old) - min_available - new_unready)
    out = unready_old[:cleanup]
    ready_now = len(current) - new_unready + len(ready_old)
    out += ready_old[: max(0, ready_now - min_available)]
    return out


def plan_deployments(
    deployments: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    namespaces: Mapping[str, Mapping[str, Any]],
    rng: random.Random,
    hold_default: Callable[[], bool] = lambda: False,
) -> DeploymentPlan:
    """Pods to create and delete so that each Deployment runs its replicas. Pure but for ``rng``
    and ``hold_default`` (the mesh's ``holdApplicationUntilProxyStarts``, asked for only when an
    injected pod is created).

    ``namespaces`` maps a namespace name to its Namespace object (for the injection label).
    """
    plan = DeploymentPlan()
    by_owner: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    taken: set[tuple[str, str]] = set()
    for pod in pods:
        taken.add((_ns(pod), _name(pod)))
        owner = owner_deployment(pod)
        if owner is None:
            continue
        by_owner.setdefault((_ns(pod), owner), []).append(pod)
    known: set[tuple[str, str]] = set()
    for dep in deployments:
        ns, name = _ns(dep), _name(dep)
        known.add((ns, name))
        owned = by_owner.get((ns, name), [])
        spec = dep.get("spec") or {}
        replicas = _replicas(spec)
        hash_ = template_hash(spec.get("template") or {})
        failed = [p for p in owned if _phase(p) == "Failed"]
        live = [p for p in owned if _phase(p) != "Failed"]
        plan.delete += [(ns, _name(p)) for p in failed]
        current = [p for p in live if _labels(p).get(POD_TEMPLATE_HASH) == hash_]
        old = [p for p in live if _labels(p).get(POD_TEMPLATE_HASH) != hash_]
        if len(current) > replicas:
            # Scale down: not-ready pods first, then the newest.
            ordered = sorted(current, key=_age_key, reverse=True)
            ordered.sort(key=pod_is_ready)
            plan.delete += [(ns, _name(p)) for p in ordered[: len(current) - replicas]]
        for _ in range(_new_to_create(spec, replicas, current, old)):
            for _attempt in range(100):
                candidate = pod_name(name, hash_, random_suffix(rng))
                if (ns, candidate) not in taken:
                    break
            taken.add((ns, candidate))
            injected = is_injected(namespaces.get(ns), spec.get("template") or {})
            hold = injected and hold_default()
            plan.create.append(new_pod(dep, candidate, hash_, injected, hold))
        plan.delete += [(ns, _name(p)) for p in _old_to_delete(spec, replicas, current, old)]
    for (ns, owner), owned in by_owner.items():
        if (ns, owner) not in known:
            plan.delete += [(ns, _name(p)) for p in owned]
    return plan


# ---------------------------------------------------------------- statuses


def pod_status(
    *,
    phase: str,
    pod_ip: str | None,
    host_ip: str,
    start_time: str | None,
    containers: Sequence[tuple[Any, ...]],
    transition_time: str,
    message: str = "",
    reason: str = "",
) -> dict[str, Any]:
    """A Kubernetes-shaped pod ``status``.

    ``containers``: ``(name, ready, restart_count, state[, reason, message, last_exit_code])``
    with state ``running``, ``waiting`` or ``terminated``; a waiting container's ``reason``
    (``CrashLoopBackOff``) and ``message`` go in ``state.waiting`` as Kubernetes writes them,
    the exit code of its last run in ``lastState.terminated``. The pod is Ready when it is
    Running and every container is.
    """
    ready = phase == "Running" and bool(containers) and all(c[1] for c in containers)
    started = all(c[3] == "running" for c in containers) and bool(containers)
    conds = [
        ("PodScheduled", True),
        ("Initialized", phase != "Pending" or pod_ip is not None),
        ("ContainersReady", ready),
        ("Ready", ready),
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "hostIP": host_ip,
        "conditions": [
            {"type": t, "status": "True" if ok else "False", "lastTransitionTime": transition_time}
            for t, ok in conds
        ],
        "containerStatuses": [_container_status(c) for c in containers],
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if start_time:
        status["startTime"] = start_time
    if message:
        status["message"] = message
    if reason:
        status["reason"] = reason
    elif not started and phase == "Running":
        status["reason"] = "ContainersNotReady"
    return status


def _container_status(c: tuple[Any, ...]) -> dict[str, Any]:
    name, ready, restarts, state, *rest = c
    reason, message, last_exit = (*rest, "", "", None)[:3]
    detail = {k: v for k, v in (("reason", reason), ("message", message)) if v}
    out: dict[str, Any] = {
        "name": name,
        "ready": ready,
        "started": state == "running",
        "restartCount": restarts,
        "state": {state: detail},
    }
    if last_exit is not None:
        ended = "Completed" if last_exit == 0 else "Error"
        out["lastState"] = {"terminated": {"exitCode": last_exit, "reason": ended}}
    return out


def deployment_status(
    deployment: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """``status`` of a Deployment from the pods it owns (as ``kubectl get deploy`` reads it)."""
    spec = deployment.get("spec") or {}
    replicas_wanted = _replicas(spec)
    hash_ = template_hash(spec.get("template") or {})
    owned = [
        p
        for p in pods
        if owner_deployment(p) == _name(deployment)
        and _ns(p) == _ns(deployment)
        and _phase(p) != "Failed"
    ]
    ready = sum(1 for p in owned if pod_is_ready(p))
    updated = sum(1 for p in owned if _labels(p).get(POD_TEMPLATE_HASH) == hash_)
    available = ready >= replicas_wanted
    return {
        "observedGeneration": int(_meta(deployment).get("generation") or 1),
        "replicas": len(owned),
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": max(0, replicas_wanted - ready),
        "conditions": [
            {
                "type": "Available",
                "status": "True" if available else "False",
                "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
            }
        ],
    }


# ---------------------------------------------------------------- services


def _cluster_ip(svc: Mapping[str, Any]) -> str | None:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return str(ip) if ip and ip != "None" else None


def service_names(services: Iterable[Mapping[str, Any]]) -> list[ServiceName]:
    """Hosts-file entries: every Service that has a VIP."""
    out = []
    for svc in services:
        vip = _cluster_ip(svc)
        if vip:
            out.append(ServiceName(_name(svc), _ns(svc), vip))
    return out


def entry_names(entries: Iterable[Mapping[str, Any]]) -> list[EntryName]:
    """Hosts-file entries of ServiceEntry hosts: each non-wildcard host with the entry's first
    plain address, else the VIP the control plane wrote in ``status.addresses``."""
    out = []
    for se in entries:
        spec = se.get("spec") or {}
        plain = [str(a) for a in spec.get("addresses") or [] if "/" not in str(a)]
        assigned = {
            str(a.get("host")): str(a.get("value"))
            for a in (se.get("status") or {}).get("addresses") or []
            if isinstance(a, Mapping) and a.get("host") and a.get("value")
        }
        exported = export_to(spec.get("exportTo"))
        for host in spec.get("hosts") or []:
            host = str(host)
            vip = plain[0] if plain else assigned.get(host)
            if vip and not host.startswith("*"):
                out.append(EntryName(host, vip, _ns(se), exported))
    return out


def service_endpoints(
    services: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> list[ServicePort]:
    """The VIP table of pods without a sidecar: each TCP port of each Service with a VIP and a
    selector, with the ready pods it selects as endpoints (named target ports resolved)."""
    ready_pods = [p for p in pods if pod_is_ready(p) and (p.get("status") or {}).get("podIP")]
    out = []
    for svc in services:
        vip = _cluster_ip(svc)
        spec = svc.get("spec") or {}
        selector = spec.get("selector")
        if not vip or not selector:
            continue
        chosen = [
            p
            for p in ready_pods
            if _ns(p) == _ns(svc)
            and all(_labels(p).get(str(k)) == str(v) for k, v in selector.items())
        ]
        for port in spec.get("ports") or []:
            if str(port.get("protocol") or "TCP").upper() != "TCP":
                continue
            eps = []
            for p in chosen:
                target = pod_target_port(port, p)
                if target is not None:
                    eps.append(Endpoint(str(p["status"]["podIP"]), target))
            out.append(
                ServicePort(f"{_ns(svc)}/{_name(svc)}", vip, int(port["port"]), tuple(sorted(eps)))
            )
    return out


# ---------------------------------------------------------------- containers


@dataclass(frozen=True)
class ContainerProcess:
    """How to run one container of a pod: argv, environment, user, ports."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    uid: int
    gid: int
    ports: tuple[int, ...]
    #: containerPort by its name, for probes that name their port.
    named_ports: Mapping[str, int] = field(default_factory=dict)


def _python(argv0: str, pod_python: str) -> str:
    return pod_python if argv0 in ("python", "python3") else argv0


def _env_value(env: Mapping[str, Any], pod: Mapping[str, Any], pod_ip: str) -> str | None:
    if env.get("value") is not None:
        return str(env["value"])
    ref = ((env.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
    values = (
        _name(pod),
        _ns(pod),
        pod_ip,
        str((pod.get("spec") or {}).get("serviceAccountName") or ""),
        "local",
    )
    fields = dict(zip(FIELD_REF_PATHS, values, strict=True))
    if ref in fields:
        return fields[ref]
    if ref and str(ref).startswith(FIELD_REF_LABEL):
        return _labels(pod).get(str(ref)[len(FIELD_REF_LABEL) : -2], "")
    return "" if env.get("valueFrom") is not None else None


def container_process(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    pod_ip: str,
    default_uid: int,
    default_gid: int,
    pod_python: str,
) -> ContainerProcess:
    """What to run for ``container`` of ``pod``: ``command`` + ``args`` (``python3`` is the
    system interpreter every user can run), its ``env`` plus ``HOSTNAME``, as the pod's or
    container's ``securityContext.runAsUser``/``runAsGroup`` or else the app user.

    Raises ``ValueError`` naming the field when there is nothing to run.
    """
    name = str(container.get("name") or "")
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    argv = command + args
    if not argv:
        raise ValueError(
            f"Pod {_ns(pod)}/{_name(pod)}: spec.containers[{name}].command: Required value "
            "(the local runtime runs the container's command; images are not pulled)"
        )
    argv[0] = _python(argv[0], pod_python)
    env = {"HOSTNAME": _name(pod)}
    for item in container.get("env") or []:
        value = _env_value(item, pod, pod_ip)
        if value is not None and item.get("name"):
            env[str(item["name"])] = value
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    uid = default_uid if uid is None else int(str(uid))
    gid = (default_gid if uid == default_uid else uid) if gid is None else int(str(gid))
    # TCP ports only: without a probe a container is ready once they accept connections (a
    # UDP port never would).
    ports = tuple(
        int(p["containerPort"])
        for p in container.get("ports") or []
        if str(p.get("protocol") or "TCP").upper() == "TCP"
    )
    named = {str(p["name"]): int(p["containerPort"]) for p in container.get("ports") or []
             if p.get("name")}  # fmt: skip
    return ContainerProcess(name, tuple(argv), env, uid, gid, ports, named)
