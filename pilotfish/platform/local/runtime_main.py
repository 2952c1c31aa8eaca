"""Composition of the runtime process: settings in, pods running until SIGTERM.

:func:`run_runtime` is what ``pilotfish runtime`` (started in the background by
``pilotfish up``) runs: it removes what a crashed earlier run left (namespaces, veths, rules of
its prefix), sets up the bridge, makes sure the proxy and app users exist, deletes stale Pod
objects, watches the API and reconciles until SIGTERM/SIGINT, then stops every pod and removes
the whole pod network again. It refuses to start without the mesh roots its sidecars verify
the control plane with (``<run dir>/mesh-roots.pem``, copied there by ``pilotfish up``).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.agent.launch import PROXY_MODULE
from pilotfish.api.kinds import CA_PATH
from pilotfish.platform.local.commands import IptablesTools
from pilotfish.platform.local.exposure import stage_envoy, workdir_plan
from pilotfish.platform.local.hostmeshes import PrefixBusy, PrefixLock
from pilotfish.platform.local.network import PodNetwork, PodNetworkSettings, cleanup_all
from pilotfish.platform.local.runtime import (
    ENVOY_FILTERS_PATH,
    PATHS,
    HttpRuntimeApi,
    Runtime,
    RuntimeSettings,
    write_status_file,
)
from pilotfish.platform.local.runtime_pod import (
    MESH_ROOTS_FILE,
    LocalPod,
    NetworkView,
    PodEvent,
    PodRunnerSettings,
)
from pilotfish.platform.local.supervisor import ControlPlaneSupervisor
from pilotfish.platform.local.tokens import SharedTokens
from pilotfish.platform.local.users import MeshUsers, ensure_mesh_users
from pilotfish.platform.local.zygote import Zygote

__all__ = [
    "RuntimeProcessSettings",
    "default_proxy_argv",
    "mesh_roots_path",
    "run_dir_for",
    "run_runtime",
]

log = logging.getLogger("pilotfish.runtime")


def default_proxy_argv() -> tuple[str, ...]:
    """``pilotfish proxy`` through this interpreter (independent of the console script)."""
    return (sys.executable, "-P", "-m", PROXY_MODULE, "proxy")


def run_dir_for(prefix: str) -> Path:
    """Agent work directories of a runtime: under ``/run``, readable by the proxy user."""
    return Path("/run/pilotfish") / prefix


def mesh_roots_path(prefix: str) -> Path:
    """Where ``pilotfish up`` puts the mesh roots for the runtime's sidecars (and Envoy, as
    the proxy user, can read them)."""
    return run_dir_for(prefix) / MESH_ROOTS_FILE


@dataclass(frozen=True)
class RuntimeProcessSettings:
    api_url: str
    token: str
    state_dir: Path
    network: PodNetworkSettings
    pods: PodRunnerSettings
    resync_seconds: float = 5.0
    log_level: str = "info"
    #: A descriptor that holds the prefix lock already (``pilotfish up`` passes its own).
    lock_fd: int | None = None
    #: Fork sidecar agents from one warm parent (see :mod:`.zygote`); False: one new Python
    #: process per sidecar.
    sidecar_zygote: bool = True


def _factory(
    network: PodNetwork,
    users: MeshUsers,
    settings: PodRunnerSettings,
    tools: IptablesTools,
    api: HttpRuntimeApi,
    on_event: Callable[[LocalPod, PodEvent], None],
) -> Any:
    tokens = SharedTokens(api.issue_token)

    def make(body: dict[str, Any], injected: bool, view: NetworkView, on_change: Any) -> LocalPod:
        return LocalPod(
            body,
            injected=injected,
            network=network,
            users=users,
            settings=settings,
            tools=tools,
            view=view,
            on_change=on_change,
            token_source=tokens,
            on_event=on_event,
            bootstrap_filters=api.bootstrap_filters() if injected else None,
        )

    return make


def _reachable(pods: PodRunnerSettings, users: MeshUsers) -> PodRunnerSettings:
    """``pods`` with an Envoy the proxy user can execute and a working directory the app user
    can reach, wherever Pilotfish is installed (see :mod:`.exposure`)."""
    binary = pods.envoy_binary or envoy_binary()
    staged = stage_envoy(binary, users.proxy)
    if staged != binary:
        log.info("the proxy user cannot execute %s; sidecars run a copy: %s", binary, staged)
    plan = workdir_plan(pods.workdir, users.app, pods.run_dir / "workdir")
    if plan.bind is not None:
        plan.bind[1].mkdir(mode=0o755, exist_ok=True)
        log.info("apps reach %s through a bind mount on %s in their own mount namespace",
                 pods.workdir, plan.bind[1])  # fmt: skip
    if plan.problem:
        log.error("pods cannot start: %s", plan.problem)
    return replace(pods, envoy_binary=staged, app_workdir=plan)


def run_runtime(settings: RuntimeProcessSettings, stop: threading.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop``); returns the exit code."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not settings.pods.ca_file.is_file():
        log.error(
            "the mesh roots that sidecars verify the control plane with are missing at %s: "
            "start the runtime with `pilotfish up`, which copies them there from "
            "<data-dir>/ca/mesh-roots.pem",
            settings.pods.ca_file,
        )
        return 2
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    prefix = settings.network.prefix
    try:
        if settings.lock_fd is not None:
            lock = PrefixLock.adopt(prefix, settings.lock_fd)
        else:
            lock = PrefixLock.acquire(prefix)
    except (PrefixBusy, OSError) as exc:
        log.error("%s: another pod runtime owns it; not starting (nothing was changed)", exc)
        return 3
    tools = IptablesTools.default()
    report = cleanup_all(settings.network, tools)
    if report.namespaces or report.links:
        log.info("removed leftovers of an earlier run: %s", report)
    network = PodNetwork(settings.network, tools)
    network.setup()
    users = ensure_mesh_users(settings.pods.proxy_user)
    shutil.rmtree(settings.pods.log_dir, ignore_errors=True)
    settings.pods.run_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    pods = _reachable(settings.pods, users)
    zygote = Zygote(pods.run_dir / "zygote.sock") if settings.sidecar_zygote else None
    if zygote is not None and zygote.start():
        pods = replace(pods, zygote_socket=zygote.socket_path)
        threading.Thread(
            target=zygote.keep_running, args=(stop,), name="zygote", daemon=True
        ).start()
    api = HttpRuntimeApi(settings.api_url, settings.token)

    def on_event(pod: LocalPod, event: PodEvent) -> None:
        uid = str((pod.body.get("metadata") or {}).get("uid") or "")
        runtime.record(pod.namespace, pod.name, uid, event)

    runtime = Runtime(
        api,
        _factory(network, users, pods, tools, api, on_event),
        RuntimeSettings(settings.state_dir, settings.resync_seconds),
        host_ip=str(settings.network.gateway_ip),
    )
    watchers = [
        threading.Thread(
            target=api.watch_forever,
            args=(path, runtime.dirty.set, stop),
            name=f"watch-{kind}",
            daemon=True,
        )
        for kind, path in PATHS.items()
    ]
    watchers.append(
        threading.Thread(
            target=api.watch_forever,
            args=(ENVOY_FILTERS_PATH, api.envoy_filters_changed, stop),
            name="watch-EnvoyFilter",
            daemon=True,
        )
    )
    try:
        removed = runtime.clear_stale_pods()
        if removed:
            log.info("deleted %d pod objects of an earlier run", removed)
        for w in watchers:
            w.start()

        def wake_on_stop() -> None:
            stop.wait()
            runtime.dirty.set()

        stopper = threading.Thread(target=wake_on_stop, daemon=True)
        stopper.start()
        ControlPlaneSupervisor(settings.state_dir, stop).start()
        threading.Thread(
            target=follow_mesh_roots,
            args=(settings.api_url, settings.token, settings.pods.ca_file, stop),
            name="mesh-roots",
            daemon=True,
        ).start()
        log.info("runtime ready: pods on %s (bridge %s)", settings.network.pod_cidr,
                 settings.network.bridge_name)  # fmt: skip
        runtime.run(stop)
    finally:
        runtime.shutdown()
        if zygote is not None:
            zygote.stop()
        api.close()
        cleanup_all(settings.network, tools)
        shutil.rmtree(settings.pods.run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            write_status_file(settings.state_dir, {"ready": False, "pods": 0, "ready_pods": 0})
        lock.release()
    return 0


def follow_mesh_roots(
    api_url: str, token: str, path: Path, stop: threading.Event, every: float = 2.0
) -> None:
    """Keep the sidecars' copy of the mesh roots (their ``--ca-file``) equal to the CA's trust
    bundle, so that pods started after a root rotation step trust what the control plane
    then serves (``pilotfish ca rotate-root``)."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=5) as http:
        while not stop.wait(every):
            try:
                resp = http.get(CA_PATH)
                bundle = resp.json().get("trustBundle") if resp.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                continue  # the control plane is restarting: next time
            if not isinstance(bundle, str) or "BEGIN CERTIFICATE" not in bundle:
                continue
            try:
                if path.read_text() == bundle:
                    continue
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(bundle)
                tmp.chmod(0o644)
                tmp.replace(path)
            except OSError as exc:
                log.warning("mesh roots not updated at %s: %s", path, exc)
                continue
            log.info("mesh roots at %s updated (%d root(s))", path,
                     bundle.count("BEGIN CERTIFICATE"))  # fmt: skip
