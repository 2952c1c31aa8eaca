"""One running pod of the local runtime: its network, sidecar, app processes and readiness.

A :class:`LocalPod` lives in its own thread from :meth:`LocalPod.start` to :meth:`LocalPod.stop`:

1. network namespace, veth and address (:class:`~.network.PodNetwork`), the pod's hosts file
   and resolv.conf (a sidecar's agent starts once the namespace exists, while its address
   and routes are made);
2. injected pods: istio-init style capture (:mod:`.capture`), then the agent
   (``pilotfish proxy --type sidecar --interception-mode REDIRECT``, run as root with the
   proxy user's group inside the namespace, Envoy as the proxy user; with a workload token
   from the control plane so it gets a mesh certificate, and the mesh roots to verify the
   control plane's TLS xDS/CA port with); the apps start only once
   ``:15021/healthz/ready`` answers 200. Pods without a sidecar get kube-proxy style VIP
   rules (:mod:`.service_lb`) and their apps start at once;
3. then it watches: a container that exits is restarted with a doubling back-off, readiness is
   re-checked (app ports accept connections inside the pod, or its ``readinessProbe``), and
   service changes rewrite the hosts file and VIP rules (:meth:`LocalPod.set_view`);
4. on stop the apps get SIGTERM first (then SIGKILL after the grace period), then the agent,
   which drains Envoy; then the namespace is deleted with whatever is left in it.

Every change of what :meth:`LocalPod.report` returns calls the ``on_change`` callback, so the
runtime can write the pod's status back to the control plane at once. Logs go to
``<log_dir>/<namespace>/<pod>/<container>.log`` (the sidecar's to ``istio-proxy.log``) and a
``pod.json`` there tells ``pilotfish exec``/``logs`` where the pod is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from pilotfish.agent.envoy_binary import ENV_OVERRIDE as ENVOY_ENV
from pilotfish.agent.launch import agent_argv
from pilotfish.agent.settings import (
    AgentSettings,
    AppMetrics,
    HostPort,
    IdentitySettings,
    LogLevel,
    XdsTls,
)
from pilotfish.api.bootstrap_patch import BOOTSTRAP_PATCHES_FILE, bootstrap_patches
from pilotfish.api.mesh import AGENT_PORT, GATEWAY_PORTS, READINESS_PORT
from pilotfish.api.node import NodeInfo
from pilotfish.api.proxy_annotation import proxy_config
from pilotfish.platform.local.capture import CaptureSettings, apply_capture
from pilotfish.platform.local.commands import IptablesTools, PlatformError
from pilotfish.platform.local.exposure import WorkdirPlan
from pilotfish.platform.local.hosts import (
    EntryName,
    ServiceName,
    render_hosts,
    render_resolv_conf,
    write_in_place,
    write_pod_dns,
)
from pilotfish.platform.local.network import PodNet, PodNetwork
from pilotfish.platform.local.nsprobe import http_get, http_status, tcp_open
from pilotfish.platform.local.process import PodProcess, pod_env, start_in_pod
from pilotfish.platform.local.prometheus import pod_scrape
from pilotfish.platform.local.runtime_model import (
    PROXY_CONTAINER,
    ContainerProcess,
    container_process,
    holds_application,
    is_gateway_template,
    owner_deployment,
)
from pilotfish.platform.local.service_lb import ServicePort, apply_service_lb
from pilotfish.platform.local.tokens import IssuedToken, SharedTokens, TokenSource
from pilotfish.platform.local.users import MeshUsers
from pilotfish.platform.local.zygote import SpawnRequest, ZygoteClient, ZygoteProcess

__all__ = [
    "MESH_ROOTS_FILE",
    "ContainerReport",
    "LocalPod",
    "NetworkView",
    "PodConfigError",
    "PodEvent",
    "PodReport",
    "PodRunnerSettings",
]

log = logging.getLogger("pilotfish.runtime.pod")

#: What a pod's start does beside its own thread (its workload token while its network is made).
_BACKGROUND = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pod-start")

#: The mesh roots' file name in the runtime's run directory (see ``PodRunnerSettings``).
MESH_ROOTS_FILE = "mesh-roots.pem"


@dataclass(frozen=True)
class PodRunnerSettings:
    """How the runtime runs pods (shared by every pod)."""

    #: ``<log_dir>/<namespace>/<pod>/``: container logs and ``pod.json``.
    log_dir: Path
    #: Per-pod agent work directories (bootstraps); must be readable by the proxy user.
    run_dir: Path
    #: Working directory of app processes (the repository root for the Bookinfo sample).
    workdir: Path
    #: ``host:port`` of the control plane's xDS server as pods reach it.
    discovery_address: str
    #: How to start ``pilotfish proxy`` (e.g. ``[python, -m, pilotfish.cli.main, proxy]``).
    proxy_argv: tuple[str, ...]
    #: The interpreter ``python3`` in a container command stands for (readable by every user).
    pod_python: str = "/usr/bin/python3"
    proxy_user: str = "pilotfish-proxy"
    drain_seconds: float = 2.0
    #: Longest SIGTERM -> SIGKILL grace of an app (``terminationGracePeriodSeconds`` if lower).
    app_stop_grace: float = 5.0
    proxy_log_level: str = "warning"
    restart_backoff_initial: float = 1.0
    restart_backoff_max: float = 30.0
    #: Poll period while the pod is not ready yet, and once it is.
    fast_poll: float = 0.01
    slow_poll: float = 0.5
    #: Workload tokens (the sidecar's proof of namespace/service account to the mesh CA) are
    #: asked for with this lifetime and replaced at half of it.
    token_ttl_seconds: int = 24 * 3600
    #: The mesh roots every sidecar verifies the control plane's xDS/CA port with (its
    #: ``--ca-file``; Envoy, run as the proxy user, reads it too). ``None``:
    #: ``<run_dir>/mesh-roots.pem``, where ``pilotfish up`` copies them.
    xds_ca_file: Path | None = None
    #: The Envoy binary sidecars run (one the proxy user can execute; see
    #: :func:`~.exposure.stage_envoy`). ``None``: the agent finds it.
    envoy_binary: Path | None = None
    #: How apps reach ``workdir`` (see :func:`~.exposure.workdir_plan`). ``None``: directly.
    app_workdir: WorkdirPlan | None = None
    #: How often a sidecar that is not ready is asked why (its agent's readiness reason).
    reason_poll: float = 0.5
    #: The sidecar zygote's socket (see :mod:`.zygote`): agents are forked from one warm
    #: parent instead of started as new Python processes. ``None``, or a zygote that does not
    #: answer: ``proxy_argv`` as a process.
    zygote_socket: Path | None = None

    @property
    def ca_file(self) -> Path:
        return self.xds_ca_file or self.run_dir / MESH_ROOTS_FILE


class PodConfigError(ValueError):
    """The pod cannot run as written or as set up here (it stays Pending with the reason, as
    an image that cannot be pulled would). ``reason`` is Kubernetes' waiting reason."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PodEvent:
    """Something that happened to a pod, recorded as a Kubernetes Event by the runtime."""

    reason: str
    message: str
    type: str = "Warning"


@dataclass(frozen=True)
class NetworkView:
    """What every pod's network reflects: names in the hosts file, VIPs and their endpoints."""

    names: tuple[ServiceName, ...] = ()
    endpoints: tuple[ServicePort, ...] = ()
    #: ServiceEntry hosts with their VIPs (the app's hosts file only; see ``proxy_hosts``).
    entries: tuple[EntryName, ...] = ()


@dataclass(frozen=True)
class BootstrapFilters:
    """The stored EnvoyFilters that have BOOTSTRAP patches, and the mesh's root namespace:
    what a starting sidecar's bootstrap patches are chosen from."""

    root_namespace: str = "istio-system"
    envoy_filters: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class ContainerReport:
    name: str
    ready: bool
    restarts: int
    state: str  # running | waiting | terminated
    #: Kubernetes' reason of a waiting container (``CrashLoopBackOff``, ``PodInitializing``).
    reason: str = ""
    message: str = ""
    #: Exit code of the last run that ended (``lastState.terminated``).
    last_exit: int | None = None


@dataclass(frozen=True)
class PodReport:
    """The pod as the runtime reports it; compared to decide whether to write a new status."""

    phase: str
    ip: str | None
    containers: tuple[ContainerReport, ...]
    message: str = ""
    #: Why a pod that could not start did not (``CreateContainerConfigError``, ...).
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.phase == "Running" and all(c.ready for c in self.containers)


@dataclass
class _Container:
    spec: ContainerProcess
    probe: Mapping[str, Any] | None
    proc: PodProcess | None = None
    restarts: int = 0
    ready: bool = False
    exited_at: float | None = None
    backoff: float = 0.0
    last_exit: int | None = None
    #: The last line the container wrote before it exited.
    last_words: str = ""


@dataclass
class _Sidecar:
    proc: PodProcess | ZygoteProcess | None = None
    restarts: int = 0
    ready: bool = False
    exited_at: float | None = None
    backoff: float = 0.0
    argv: list[str] = field(default_factory=list)
    #: The ``pilotfish proxy`` options alone (what the zygote gets).
    options: list[str] = field(default_factory=list)
    last_exit: int | None = None
    #: The agent's reason for not being ready, and its short code (``EnvoyCrashLoop``).
    reason: str = ""
    code: str = ""
    asked_at: float = 0.0


class LocalPod:
    """A pod run from its Pod object. Create, :meth:`start`, later :meth:`stop`."""

    def __init__(
        self,
        body: Mapping[str, Any],
        *,
        injected: bool,
        network: PodNetwork,
        users: MeshUsers,
        settings: PodRunnerSettings,
        tools: IptablesTools,
        view: NetworkView,
        on_change: Callable[[LocalPod], None] = lambda pod: None,
        token_source: TokenSource | SharedTokens | None = None,
        on_event: Callable[[LocalPod, PodEvent], None] = lambda pod, event: None,
        bootstrap_filters: BootstrapFilters | None = None,
    ) -> None:
        meta = body.get("metadata") or {}
        self.name = str(meta["name"])
        self.namespace = str(meta.get("namespace") or "default")
        self.body = body
        self.injected = injected
        #: Istio's gateway injection template: the proxy is the pod, a router.
        self.gateway = injected and is_gateway_template(meta.get("annotations") or {})
        self.network = network
        self.users = users
        self.settings = settings
        self.tools = tools
        self.on_change = on_change
        self.on_event = on_event
        self.token_source = token_source
        #: Where the workload token comes from (shared by the runtime's pods).
        self.tokens: SharedTokens | None = (
            token_source
            if isinstance(token_source, SharedTokens)
            else SharedTokens(token_source)
            if token_source is not None
            else None
        )
        self._token_at: float | None = None
        self.pod_id = f"{self.name}.{self.namespace}"
        self.netns = network.settings.netns_name(self.pod_id)
        self.log_dir = settings.log_dir / self.namespace / self.name
        self.net: PodNet | None = None
        self.containers: list[_Container] = []
        self.sidecar: _Sidecar | None = _Sidecar() if injected else None
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self.created_at = time.monotonic()
        #: When each step of the pod's start happened (``time.time()``), logged once Ready.
        self.timeline: dict[str, float] = {"start": time.time()}
        self._view = view
        #: The EnvoyFilters with BOOTSTRAP patches when the pod was started (its sidecar's
        #: bootstrap takes those that select it; a change needs a restart, as in Istio).
        self.bootstrap_filters = bootstrap_filters
        self._applied_names: tuple[tuple[ServiceName, ...], tuple[EntryName, ...]] | None = None
        self._applied_endpoints: tuple[ServicePort, ...] | None = None
        self._apps_started = False
        self._error = ""
        self._error_reason = ""
        self._failed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._before_stop: Callable[[], None] | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._report: PodReport = PodReport("Pending", None, ())

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"pod-{self.pod_id}", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True, before: Callable[[], None] | None = None) -> None:
        """Stop the apps, then drain the sidecar, then remove the namespace; ``before`` runs
        first, on the pod's thread (the runtime waits there for its endpoint's removal to
        reach every proxy)."""
        self._before_stop = before
        self._stop.set()
        self._wake.set()
        if wait:
            self.join()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def set_view(self, view: NetworkView) -> None:
        with self._lock:
            self._view = view
        self._wake.set()

    def report(self) -> PodReport:
        with self._lock:
            return self._report

    # ------------------------------------------------------------------ the pod's thread

    def _run(self) -> None:
        try:
            try:
                self._setup()
            except Exception as exc:
                log.warning("pod %s/%s failed to start: %s", self.namespace, self.name, exc)
                # A pod that cannot be run as written stays Pending with the reason (as an
                # unpullable image would); a failure of the host is Failed, and is replaced.
                self._failed = not isinstance(exc, ValueError)
                self._error = str(exc)
                self._error_reason = (
                    exc.reason
                    if isinstance(exc, PodConfigError)
                    else "CreateContainerConfigError"
                    if isinstance(exc, ValueError)
                    else "StartError"
                )
                self._event(self._error_reason, self._error)
                self._publish()
                return
            while not self._stop.is_set():
                try:
                    self._tick()
                except Exception as exc:  # keep the pod supervised whatever one tick hit
                    log.warning("pod %s/%s: %s", self.namespace, self.name, exc)
                self._publish()
                ready = self._report.ready
                self._wake.wait(self.settings.slow_poll if ready else self.settings.fast_poll)
                self._wake.clear()
        finally:
            self._teardown()

    def _setup(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        plan = self.settings.app_workdir
        if plan is not None and plan.problem:
            raise PodConfigError(plan.problem)
        # The workload token is asked for while the network is made (a round trip to the
        # control plane, unless a pod of the same service account got one recently).
        token = _BACKGROUND.submit(self._fetch_token) if self.sidecar is not None else None
        self.net = self.network.begin_pod_netns(self.pod_id)
        self._mark("netns")
        if self.sidecar is None or token is None:
            self._finish_network()
        self.started_at = time.monotonic()
        self._apply_view(force=True)
        app = self.users.app
        spec = self.body.get("spec") or {}
        for c in spec.get("containers") or []:
            if c.get("name") == PROXY_CONTAINER and self.injected:
                continue
            process = container_process(
                self.body,
                c,
                pod_ip=self.net.ip,
                default_uid=app.uid,
                default_gid=app.gid,
                pod_python=self.settings.pod_python,
            )
            self.containers.append(_Container(process, c.get("readinessProbe")))
        self._write_pod_json()
        if self.sidecar is None or token is None:
            self._start_apps()
            return
        self._write_token(token.result())
        self._mark("token")
        # The agent first: Envoy's start and first configuration are the longest step, and
        # neither needs the capture rules (the proxy's own traffic is never captured, and
        # nothing reaches a pod before it is Ready).
        self.sidecar.options = self._agent_options()
        self.sidecar.argv = [*self.settings.proxy_argv, *self.sidecar.options]
        self._start_sidecar()
        self._mark("agent")
        # The pod's address and routes while the agent starts Envoy (which needs neither for
        # its first ~0.1 s); the agent waits for the route before it calls the CA.
        self._finish_network()
        if not self.gateway:  # a gateway is addressed directly: nothing to capture
            proxy = self.users.proxy
            apply_capture(self.netns, CaptureSettings(proxy.uid, proxy.gid), self.tools)
            self._mark("capture")
        # As istio-init runs before every container: apps start once the rules are in. They
        # start alongside the sidecar unless the pod holds them until it is ready (Istio's
        # holdApplicationUntilProxyStarts); the pod is Ready when both are, either way.
        if not self.holds_apps:
            self._start_apps()

    def _finish_network(self) -> None:
        self.network.finish_pod_netns(self.pod_id)
        self._mark("network")

    def _tick(self) -> None:
        self._apply_view()
        now = time.monotonic()
        sidecar = self.sidecar
        refresh = self.settings.token_ttl_seconds / 2
        if self._token_at is not None and now - self._token_at >= refresh:
            self._write_token(self._fetch_token())
        if sidecar is not None:
            proc = sidecar.proc
            if proc is not None and proc.poll() is not None:
                code = proc.poll()
                log.warning("pod %s: sidecar exited with %s", self.pod_id, code)
                sidecar.proc, sidecar.ready, sidecar.exited_at = None, False, now
                sidecar.last_exit = code
                sidecar.backoff = _next_backoff(sidecar.backoff, self.settings)
                self._event(
                    "BackOff",
                    f"Back-off restarting failed container {PROXY_CONTAINER} (exit code "
                    f"{code}; next start in {sidecar.backoff:g}s): {_last_line(proc)}",
                )
            if sidecar.proc is None and _due(sidecar.exited_at, sidecar.backoff, now):
                sidecar.restarts += 1
                self._start_sidecar()
            sidecar.ready = (
                sidecar.proc is not None
                and http_status(self.netns, READINESS_PORT, "/healthz/ready") == 200
            )
            self._ask_sidecar_why(sidecar, now)
            if sidecar.ready and "sidecar_ready" not in self.timeline:
                self._mark("sidecar_ready")
            if sidecar.ready and not self._apps_started:
                self._start_apps()
        for c in self.containers:
            if c.proc is not None and c.proc.poll() is not None:
                code = c.proc.poll()
                log.info("pod %s: container %s exited with %s", self.pod_id, c.spec.name, code)
                last = _last_line(c.proc)
                c.proc, c.ready, c.exited_at, c.last_exit = None, False, now, code
                c.last_words = last
                c.backoff = _next_backoff(c.backoff, self.settings)
                self._event(
                    "BackOff",
                    f"Back-off restarting failed container {c.spec.name} (exit code {code}; "
                    f"next start in {c.backoff:g}s)" + (f": {last}" if last else ""),
                )
            if c.proc is None and self._apps_started and _due(c.exited_at, c.backoff, now):
                c.restarts += 1
                self._start_container(c)
            c.ready = c.proc is not None and self._container_ready(c)
        if self.containers and all(c.ready for c in self.containers):
            self._mark("apps_ready")

    def _mark(self, step: str) -> None:
        self.timeline.setdefault(step, time.time())

    def _event(self, reason: str, message: str, type_: str = "Warning") -> None:
        try:
            self.on_event(self, PodEvent(reason, message, type_))
        except Exception as exc:  # an event is a record; never let it stop the pod
            log.debug("pod %s: event %s not recorded: %s", self.pod_id, reason, exc)

    def _ask_sidecar_why(self, sidecar: _Sidecar, now: float) -> None:
        """While the sidecar is not ready, ask its agent why (at most every ``reason_poll``)."""
        if sidecar.ready or sidecar.proc is None:
            sidecar.reason, sidecar.code = "", ""
            return
        if now - sidecar.asked_at < self.settings.reason_poll:
            return
        sidecar.asked_at = now
        answer = http_get(self.netns, AGENT_PORT, "/healthz/ready")
        if answer is None or answer[0] == 200:
            return
        reason = answer[2].strip().removeprefix("not ready: ")
        code = answer[1].get("x-pilotfish-reason", "")
        if code == "EnvoyCrashLoop" and sidecar.code != code:
            self._event("BackOff", f"Back-off restarting Envoy in {PROXY_CONTAINER}: {reason}")
        sidecar.reason, sidecar.code = reason, code

    def _teardown(self) -> None:
        before = self._before_stop
        if before is not None:
            try:
                before()
            except Exception as exc:  # the pod stops whatever the wait hit
                log.warning("pod %s/%s: before stopping: %s", self.namespace, self.name, exc)
        grace = self._stop_grace()
        procs = [c.proc for c in self.containers if c.proc is not None]
        threads = [threading.Thread(target=p.stop, args=(grace,)) for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.sidecar is not None and self.sidecar.proc is not None:
            self.sidecar.proc.stop(self.settings.drain_seconds + 5.0)
        try:
            self.network.delete_pod_netns(self.pod_id)
        except PlatformError as exc:
            log.warning("pod %s: removing its network failed: %s", self.pod_id, exc)
        shutil.rmtree(self.settings.run_dir / self.pod_id, ignore_errors=True)
        shutil.rmtree(self.log_dir, ignore_errors=True)
        if not self._error:
            with self._lock:
                self._report = PodReport("Succeeded", None, self._report.containers, "stopped")

    # ------------------------------------------------------------------ pieces

    def _apply_view(self, force: bool = False) -> None:
        if self.net is None:
            return
        with self._lock:
            view = self._view
        if force or (view.names, view.entries) != self._applied_names:
            spec = self.body.get("spec") or {}
            aliases = [
                (str(a.get("ip")), [str(h) for h in a.get("hostnames") or []])
                for a in spec.get("hostAliases") or []
                if isinstance(a, dict) and a.get("ip")
            ]
            hosts = render_hosts(
                self.name, self.net.ip, self.namespace, view.names,
                entries=view.entries, aliases=aliases,
            )  # fmt: skip
            if self.sidecar is not None:
                # The sidecar resolves ServiceEntry hosts (resolution: DNS) through the pod's
                # name servers, never to the VIPs the app's hosts file gives them (as Envoy
                # under Istio's DNS proxy asks the upstream resolver, not the proxy).
                write_in_place(
                    self.proxy_hosts,
                    render_hosts(
                        self.name, self.net.ip, self.namespace, view.names, aliases=aliases
                    ),
                )
            write_pod_dns(
                self.netns,
                hosts,
                render_resolv_conf(
                    self.namespace,
                    dns_config=spec.get("dnsConfig"),
                    dns_policy=spec.get("dnsPolicy"),
                ),
                self.network.settings.etc_netns,
            )
            self._applied_names = (view.names, view.entries)
        if self.sidecar is None and (force or view.endpoints != self._applied_endpoints):
            apply_service_lb(self.netns, list(view.endpoints), self.tools)
            self._applied_endpoints = view.endpoints

    @property
    def holds_apps(self) -> bool:
        """Whether the apps wait for the sidecar to be ready before they start."""
        return self.sidecar is not None and holds_application(self.body)

    @property
    def proxy_hosts(self) -> Path:
        """The hosts file the sidecar sees as ``/etc/hosts`` (without ServiceEntry VIPs)."""
        return self.settings.run_dir / self.pod_id / "proxy-hosts"

    @property
    def token_path(self) -> Path:
        return self.settings.run_dir / self.pod_id / "token"

    def _service_account(self) -> str:
        return str((self.body.get("spec") or {}).get("serviceAccountName") or "default")

    def _fetch_token(self) -> IssuedToken | None:
        if self.tokens is None:
            return None
        return self.tokens.get(
            self.namespace, self._service_account(), self.settings.token_ttl_seconds
        )

    def _write_token(self, issued: IssuedToken | None) -> None:
        """The pod's workload token (root-only file the agent reads), as a kubelet projects a
        service account token."""
        if issued is None:
            return
        path = self.token_path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(issued.token + "\n")
        self._token_at = issued.issued_at

    def _agent_argv(self) -> list[str]:
        """The command that starts this pod's agent as a process."""
        return [*self.settings.proxy_argv, *self._agent_options()]

    def _agent_options(self) -> list[str]:
        """The ``pilotfish proxy`` options of this pod's agent."""
        assert self.net is not None
        meta = self.body.get("metadata") or {}
        node = NodeInfo(
            proxy_type="router" if self.gateway else "sidecar",
            ip=self.net.ip,
            pod_name=self.name,
            namespace=self.namespace,
            labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            service_account=self._service_account(),
            workload_name=owner_deployment(self.body) or self.name,
            interception_mode="NONE" if self.gateway else "REDIRECT",
            # A gateway binds its servers' ports as Istio's gateway Services map them
            # (80 -> 8080, 443 -> 8443, others as written), on every address of the pod.
            gateway_ports=dict(GATEWAY_PORTS) if self.gateway else {},
        )
        identity = None
        if self.token_source is not None:
            # Istio's per-pod SECRET_TTL (``proxy.istio.io/config``): the certificate lifetime.
            ttl = proxy_config(meta.get("annotations") or {}).secret_ttl
            identity = IdentitySettings(token_file=self.token_path)
            if ttl is not None:
                identity = replace(identity, cert_ttl=timedelta(seconds=ttl))
        agent = AgentSettings(
            node=node,
            work_dir=self.settings.run_dir / self.pod_id,
            discovery_address=HostPort.parse(self.settings.discovery_address),
            xds_tls=XdsTls(self.settings.ca_file),
            identity=identity,
            drain_seconds=self.settings.drain_seconds,
            log_level=cast(LogLevel, self.settings.proxy_log_level),
            envoy_user=self.settings.proxy_user,
            # As Istio's injector hands the pod's prometheus.io/* annotations to pilot-agent:
            # the agent merges the app's metrics into its own /stats/prometheus.
            app_metrics=_app_metrics(meta.get("annotations") or {}),
            bootstrap_patches=self._write_bootstrap_patches(node),
        )
        return agent_argv(agent)

    def _write_bootstrap_patches(self, node: NodeInfo) -> Path | None:
        """The file of the EnvoyFilter BOOTSTRAP patches that select this pod's proxy (see
        ``api.bootstrap_patch``), written into its run directory; None when none does."""
        found = self.bootstrap_filters
        if found is None or not found.envoy_filters:
            return None
        patches = bootstrap_patches(
            found.envoy_filters,
            root_namespace=found.root_namespace,
            namespace=node.namespace,
            labels=node.labels,
            router=node.proxy_type == "router",
            metadata=node.metadata(),
        )
        if not patches:
            return None
        path = self.settings.run_dir / self.pod_id / BOOTSTRAP_PATCHES_FILE
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        path.write_text(json.dumps(patches))
        return path

    def _start_sidecar(self) -> None:
        assert self.sidecar is not None
        (self.settings.run_dir / self.pod_id).mkdir(parents=True, exist_ok=True, mode=0o755)
        # The agent stays root (it starts Envoy as the proxy user) but runs with the proxy
        # user's group, so the capture rules (``--gid-owner``) let its own connections to
        # the control plane (certificates) through, as they do Envoy's.
        gid = self.users.proxy.gid
        argv = ["setpriv", f"--regid={gid}", "--clear-groups", "--", *self.sidecar.argv]
        # Its own hosts file over /etc/hosts, in the private mount namespace ``ip netns
        # exec`` gives the sidecar alone.
        argv = ["/bin/sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
                str(self.proxy_hosts), *argv]  # fmt: skip
        envoy = self.settings.envoy_binary
        # Envoy (the proxy user) writes its access log to its stdout, this file, by opening
        # /dev/stdout again: the proxy group may write it (its owner stays root).
        log_path = self.log_dir / f"{PROXY_CONTAINER}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o664)
        try:
            os.fchown(fd, -1, gid)
            os.fchmod(fd, 0o664)
        finally:
            os.close(fd)
        env = {ENVOY_ENV: str(envoy)} if envoy is not None else None
        self.sidecar.proc = self._fork_sidecar(gid, env, log_path) or start_in_pod(
            self.netns,
            argv,
            env=env,
            cwd=self.settings.workdir,
            log_path=log_path,
        )
        self.sidecar.exited_at = None

    def _fork_sidecar(
        self, gid: int, env: Mapping[str, str] | None, log_path: Path
    ) -> ZygoteProcess | None:
        """The agent forked by the zygote (same options, namespace, hosts file, group and
        log as the process ``_start_sidecar`` would start); None when there is no zygote."""
        assert self.sidecar is not None
        socket_path = self.settings.zygote_socket
        if socket_path is None:
            return None
        request = SpawnRequest(
            argv=tuple(self.sidecar.options),
            netns=self.netns,
            log_path=str(log_path),
            gid=gid,
            env=pod_env(env),
            cwd=str(self.settings.workdir),
            binds=((str(self.proxy_hosts), "/etc/hosts"),),
        )
        try:
            return ZygoteClient(socket_path).spawn(request)
        except OSError as exc:
            log.warning("pod %s: the sidecar zygote did not answer (%s); starting the "
                        "agent as a process", self.pod_id, exc)  # fmt: skip
            return None

    def _start_apps(self) -> None:
        self._apps_started = True
        for c in self.containers:
            self._start_container(c)
        self._mark("apps")

    def _start_container(self, c: _Container) -> None:
        spec = c.spec
        plan = self.settings.app_workdir
        c.proc = start_in_pod(
            self.netns,
            spec.argv,
            uid=spec.uid,
            gid=spec.gid,
            env=spec.env,
            cwd=self.settings.workdir,
            log_path=self.log_dir / f"{spec.name}.log",
            bind=plan.bind if plan is not None else None,
        )
        c.exited_at = None

    def _container_ready(self, c: _Container) -> bool:
        probe = c.probe or {}
        http = probe.get("httpGet")
        tcp = probe.get("tcpSocket")
        if http:
            port = _resolve_port(http.get("port"), c)
            code = http_status(self.netns, port, str(http.get("path") or "/")) if port else None
            return code is not None and 200 <= code < 400
        if tcp:
            port = _resolve_port(tcp.get("port"), c)
            return port is not None and tcp_open(self.netns, port)
        return all(tcp_open(self.netns, port) for port in c.spec.ports)

    def _stop_grace(self) -> float:
        spec_grace = (self.body.get("spec") or {}).get("terminationGracePeriodSeconds")
        grace = self.settings.app_stop_grace
        return min(grace, float(spec_grace)) if spec_grace is not None else grace

    def _publish(self) -> None:
        report = self._compute_report()
        with self._lock:
            changed = report != self._report
            self._report = report
        if report.ready and self.ready_at is None:
            self.ready_at = time.monotonic()
            self._mark("ready")
            start = self.timeline["start"]
            log.info(
                "pod %s/%s ready in %.0f ms: %s (timeline %s)",
                self.namespace,
                self.name,
                (self.timeline["ready"] - start) * 1000,
                ", ".join(f"{k} +{(t - start) * 1000:.0f}" for k, t in self.timeline.items()),
                json.dumps(self.timeline),
            )
        if changed:
            self.on_change(self)

    def _compute_report(self) -> PodReport:
        ip = self.net.ip if self.net is not None else None
        if self._error:
            phase = "Failed" if self._failed else "Pending"
            return PodReport(phase, None, (), self._error, self._error_reason)
        containers = [self._container_report(c) for c in self.containers]
        message = ""
        if self.sidecar is not None:
            s = self.sidecar
            containers.append(self._sidecar_report(s))
            if not self._apps_started:
                message = "waiting for the sidecar to be ready before starting the app"
                if s.reason:
                    message += f" ({PROXY_CONTAINER}: {s.reason})"
        phase = "Running" if self._apps_started else "Pending"
        return PodReport(phase, ip, tuple(containers), message)

    def _container_report(self, c: _Container) -> ContainerReport:
        name, ready, restarts = c.spec.name, c.ready, c.restarts
        if c.proc is not None:
            return ContainerReport(name, ready, restarts, "running", last_exit=c.last_exit)
        if c.exited_at is not None:
            return ContainerReport(
                name,
                False,
                restarts,
                "waiting",
                "CrashLoopBackOff",
                f"back-off {c.backoff:g}s restarting failed container {name} "
                f"(exit code {c.last_exit})" + (f": {c.last_words}" if c.last_words else ""),
                c.last_exit,
            )
        return ContainerReport(name, False, restarts, "waiting", "PodInitializing")

    def _sidecar_report(self, s: _Sidecar) -> ContainerReport:
        name = PROXY_CONTAINER
        if s.proc is None and s.exited_at is not None:
            message = f"back-off {s.backoff:g}s restarting failed container {name}"
            return ContainerReport(
                name, False, s.restarts, "waiting", "CrashLoopBackOff", message, s.last_exit
            )
        if s.proc is None:
            return ContainerReport(name, False, s.restarts, "waiting", "ContainerCreating")
        if s.code == "EnvoyCrashLoop":
            # The agent runs but its Envoy keeps exiting: Istio's istio-proxy would crash-loop.
            return ContainerReport(
                name, False, s.restarts, "waiting", "CrashLoopBackOff", s.reason, s.last_exit
            )
        return ContainerReport(name, s.ready, s.restarts, "running", "", s.reason, s.last_exit)

    def _write_pod_json(self) -> None:
        assert self.net is not None
        first = self.containers[0].spec if self.containers else None
        info = {
            "name": self.name,
            "namespace": self.namespace,
            "netns": self.netns,
            "ip": self.net.ip,
            "uid": first.uid if first else self.users.app.uid,
            "gid": first.gid if first else self.users.app.gid,
            "injected": self.injected,
            #: a gateway pod (Istio's gateway injection template): its proxy captures nothing
            "gateway": self.gateway,
            "containers": [c.spec.name for c in self.containers]
            + ([PROXY_CONTAINER] if self.injected else []),
        }
        path = self.log_dir / "pod.json"
        path.write_text(json.dumps(info, indent=2) + "\n")


def _last_line(proc: PodProcess | ZygoteProcess) -> str:
    """The last non-empty line of a process's log (what it said before it exited)."""
    if proc.log_path is None:
        return ""
    with contextlib.suppress(OSError):
        with open(proc.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines()]
        return next((ln for ln in reversed(lines) if ln), "")[:500]
    return ""


def _app_metrics(annotations: Mapping[str, Any]) -> AppMetrics | None:
    scrape = pod_scrape(annotations)
    return AppMetrics(scrape.port, scrape.path) if scrape is not None else None


def _resolve_port(port: Any, c: _Container) -> int | None:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    return c.spec.named_ports.get(str(port))


def _next_backoff(current: float, settings: PodRunnerSettings) -> float:
    if current <= 0:
        return settings.restart_backoff_initial
    return min(current * 2, settings.restart_backoff_max)


def _due(exited_at: float | None, backoff: float, now: float) -> bool:
    return exited_at is not None and now - exited_at >= backoff


def read_pod_info(log_dir: Path, namespace: str, name: str) -> dict[str, Any] | None:
    """The ``pod.json`` a running pod wrote (``None`` if there is no such pod here)."""
    path = log_dir / namespace / name / "pod.json"
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else None
    return None


def running_pods(log_dir: Path) -> Sequence[dict[str, Any]]:
    """Every ``pod.json`` under ``log_dir``."""
    out = []
    if log_dir.is_dir():
        for path in sorted(log_dir.glob("*/*/pod.json")):
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(path.read_text()))
    return out
