"""CLI commands of the local mesh: ``up``, ``down``, ``status``, ``logs``, ``exec``, ``runtime``.

Self-contained click commands; the main group registers them with ``cli.add_command``. They
also run without it: ``python -m pilotfish.cli.runtime_cmds up`` (which is also how ``up``
starts the runtime process, so it never depends on the console script).

- ``pilotfish up``      control plane + pod runtime + ingress gateway in the background
- ``pilotfish down``    stop all of it and remove every pod namespace, veth, bridge and rule
- ``pilotfish status``  health of each part
- ``pilotfish logs POD [-c CONTAINER] [-f]``   a pod's container log (``-c istio-proxy``)
- ``pilotfish exec POD -- CMD...``             run CMD inside the pod's network namespace
- ``pilotfish runtime`` the runtime process itself (started by ``up``)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from pilotfish.api.mesh import DEFAULT_API_ADDRESS, XDS_PORT
from pilotfish.platform.local.process import pod_command, pod_env
from pilotfish.platform.local.runtime_mesh import (
    DEFAULT_GATEWAY_PORTS,
    MeshError,
    MeshSettings,
    Progress,
    load_mesh,
    mesh_down,
    mesh_status,
    mesh_up,
)
from pilotfish.platform.local.runtime_pod import read_pod_info, running_pods

__all__ = ["RUNTIME_COMMANDS", "down", "exec_cmd", "logs", "runtime", "runtime_cli", "status", "up"]

DEFAULT_DATA_DIR = Path.home() / ".pilotfish" / "data"
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _dirs(data_dir: Path | None, state_dir: Path | None) -> tuple[Path, Path]:
    """The mesh's directories: the flags, else those ``up`` recorded in the current CLI
    context (so every command finds the mesh ``get`` talks to), else the defaults."""
    if data_dir is None:
        from pilotfish.contextfile import load_context

        ctx = load_context()
        if ctx is not None and ctx.data_dir:
            data_dir = Path(ctx.data_dir)
            if state_dir is None and ctx.state_dir:
                state_dir = Path(ctx.state_dir)
    data = (data_dir or DEFAULT_DATA_DIR).expanduser().resolve()
    state = (state_dir or data.parent / "state").expanduser().resolve()
    return data, state


def _checked_documents(files: tuple[str, ...]) -> list[Any]:
    """The documents of ``files``, validated offline: a bad file starts nothing."""
    if not files:
        return []
    from pilotfish.config.loader import load_documents
    from pilotfish.config.validation import validate
    from pilotfish.errors import PilotfishError

    try:
        docs = list(load_documents(list(files), stdin=sys.stdin))
        for d in docs:
            validate(d.body, source=d.source)
    except PilotfishError as exc:
        _fail(f"{exc}\nnothing was started")
    return docs


def _apply_after_up(settings: MeshSettings, api: str, docs: list[Any]) -> None:
    """Apply what ``up -f`` was given, through the API, as one transaction per file."""
    from pilotfish.cli.client import ApiClient
    from pilotfish.errors import PilotfishError

    token = (settings.data_dir / "admin-token").read_text().strip()
    by_file: dict[str, list[Any]] = {}
    for d in docs:
        by_file.setdefault(d.source.file, []).append(d)
    with ApiClient(api, token) as client:
        for file, items in by_file.items():
            sources = [
                {"file": d.source.file, "document": d.source.document, "line": d.source.line}
                for d in items
            ]
            try:
                result = client.apply([d.body for d in items], sources, None, False)
            except PilotfishError as exc:
                _fail(f"the mesh is up, but {file} was not applied:\n{exc}")
            for warning in result.get("warnings") or []:
                click.echo(f"Warning: {warning}", err=True)
            for it in result["items"]:
                click.echo(f"{it['kind']} {it['namespace']}/{it['name']} {it['result']}")


def _remember_mesh(settings: MeshSettings, api: str) -> None:
    """Record the mesh's directories in the context of its API (see ``pilotfish.contextfile``)."""
    from pilotfish.contextfile import Context, load_context, save_context

    ctx = load_context()
    if ctx is None or ctx.server.rstrip("/") != api.rstrip("/"):
        token = (settings.data_dir / "admin-token").read_text().strip()
        ctx = Context("local", api, token)
    save_context(replace(ctx, data_dir=str(settings.data_dir), state_dir=str(settings.state_dir)))


def _fail(message: str) -> None:
    for line in message.splitlines() or [""]:
        click.echo(f"error: {line}", err=True)
    sys.exit(1)


def _data_dir_options(f: Any) -> Any:
    f = click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Logs, pids and pod state  [default: beside the data directory, .../state]",
    )(f)
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Config store, token, CA  [default: ~/.pilotfish/data]",
    )(f)


def _parse_gateway_port(text: str) -> tuple[int, int]:
    left, sep, right = text.partition(":")
    if not sep or not left.isdigit() or not right.isdigit():
        raise click.BadParameter(f"{text!r} is not PORT:LISTEN (e.g. --gateway-port 80:8080)")
    return int(left), int(right)


class _RichProgress(Progress):
    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        start = time.monotonic()
        with self.console.status(f"starting {text} ..."):
            try:
                yield
            except BaseException:
                self.console.print(f"[red]x[/red] {text}")
                raise
        self.console.print(f"[green]✓[/green] {text} [dim]({time.monotonic() - start:.1f}s)[/dim]")

    def note(self, text: str) -> None:
        self.console.print(text)


def _settings(data_dir: Path | None, state_dir: Path | None, **kw: Any) -> MeshSettings:
    from pilotfish.platform.local.network import PodNetworkSettings

    data, state = _dirs(data_dir, state_dir)
    net_kw = {
        k: v
        for k, v in {
            "prefix": kw.pop("prefix", None),
            "pod_cidr": kw.pop("pod_cidr", None),
        }.items()
        if v
    }
    try:
        network = PodNetworkSettings(**net_kw)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    return MeshSettings(data_dir=data, state_dir=state, network=network, **kw)


#: The operator ``pilotfish install`` last installed, in the data directory: ``up`` keeps its
#: components (see :mod:`pilotfish.api.profiles`).
INSTALLED_STATE = "installed-state.yaml"


def up_options(f: Any) -> Any:
    """The options ``up`` and ``install`` share (where the mesh's parts listen)."""
    options = [
        click.option("--listen", default=DEFAULT_API_ADDRESS, show_default=True,
                     help="The API's address."),
        click.option("--xds-port", type=click.IntRange(1, 65535), default=XDS_PORT,
                     show_default=True,
                     help="The control plane's xDS port (on the pod bridge's address)."),
        click.option("--gateway-bind", default="127.0.0.1", show_default=True,
                     help="Address the ingress gateway's ports bind."),
        click.option("--gateway-port", "gateway_ports", multiple=True, metavar="PORT:LISTEN",
                     help="A Gateway server port and the host port it binds (repeatable)  "
                     "[default: 80:8080 443:8443 8080:8080]"),
        click.option("--gateway-admin-port", type=int, default=15000, show_default=True),
        click.option("--gateway-agent-port", type=int, default=15020, show_default=True),
        click.option("--gateway-readiness-port", type=int, default=15021, show_default=True),
        click.option("--trace-query-port", type=click.IntRange(1, 65535), default=16686,
                     show_default=True, help="Jaeger query API port (127.0.0.1)."),
        click.option("--prometheus-port", type=click.IntRange(0, 65535), default=9090,
                     show_default=True, help="Prometheus' port on 127.0.0.1 (0: no Prometheus)."),
        click.option("--dashboard-port", type=click.IntRange(0, 65535), default=20001,
                     show_default=True, help="The dashboard's port on 127.0.0.1 (0: none)."),
        click.option("--prefix", default=None,
                     help="Name prefix of the mesh's host objects  [pf]"),
        click.option("--pod-cidr", default=None, help="Pod address range  [10.244.0.0/16]"),
        click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Working directory of pod commands  [default: the current one]"),
        click.option("--timeout", type=float, default=60.0, show_default=True,
                     help="Seconds each part may take to become ready."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return _data_dir_options(f)


def mesh_settings(components: dict[str, bool] | None = None, **opts: Any) -> MeshSettings:
    """The mesh's settings from the shared options and the install's ``components`` (the
    names of :class:`pilotfish.api.profiles.Components`; ``None``: every part)."""
    comp = components or {}
    ports = tuple(_parse_gateway_port(p) for p in opts["gateway_ports"]) or DEFAULT_GATEWAY_PORTS
    prometheus_port = opts["prometheus_port"] or None
    if not comp.get("prometheus", True):
        prometheus_port = None
    dashboard_port = opts["dashboard_port"] or None
    if not comp.get("dashboard", True):
        dashboard_port = None
    return _settings(
        opts["data_dir"],
        opts["state_dir"],
        prefix=opts["prefix"],
        pod_cidr=opts["pod_cidr"],
        api_listen=opts["listen"],
        xds_port=opts["xds_port"],
        gateway_bind=opts["gateway_bind"],
        gateway_ports=ports,
        gateway_admin_port=opts["gateway_admin_port"],
        gateway_agent_port=opts["gateway_agent_port"],
        gateway_readiness_port=opts["gateway_readiness_port"],
        prometheus_port=prometheus_port,
        trace_query_port=opts["trace_query_port"],
        dashboard_port=dashboard_port,
        workdir=(opts["workdir"] or Path.cwd()).resolve(),
        ready_timeout=opts["timeout"],
        ingress_gateway=comp.get("ingress_gateway", True),
        egress_gateway=comp.get("egress_gateway", False),
        trace_collector=comp.get("trace_collector", True),
    )


def installed_components(data_dir: Path | None, state_dir: Path | None) -> dict[str, bool] | None:
    """The components of the operator ``install`` last installed here (``None``: never)."""
    import yaml

    from pilotfish.api.profiles import components_of

    data, _ = _dirs(data_dir, state_dir)
    path = data / INSTALLED_STATE
    if not path.is_file():
        return None
    body = yaml.safe_load(path.read_text()) or {}
    return dict(components_of(body.get("spec") or {}).__dict__)


#: ``up``'s options of the running mesh, in its state directory: what a later reconcile that
#: is not given them (``pilotfish apply -f samples/addons``) starts the mesh's parts with.
UP_OPTIONS = "up-options.json"


def save_up_options(settings: MeshSettings, opts: dict[str, Any]) -> None:
    import json

    keep = {k: (str(v) if isinstance(v, Path) else v) for k, v in opts.items()}
    keep["data_dir"], keep["state_dir"] = str(settings.data_dir), str(settings.state_dir)
    keep["workdir"] = str(settings.workdir)
    (settings.state_dir / UP_OPTIONS).write_text(json.dumps(keep, indent=1) + "\n")


def load_up_options(state_dir: Path) -> dict[str, Any] | None:
    """The options the local mesh of ``state_dir`` was started with (``None``: no mesh runs
    there, or its options were not recorded)."""
    import json

    path = state_dir / UP_OPTIONS
    if load_mesh(state_dir) is None or not path.is_file():
        return None
    opts = dict(json.loads(path.read_text()))
    for key in ("data_dir", "state_dir", "workdir"):
        if opts.get(key):
            opts[key] = Path(opts[key])
    opts["gateway_ports"] = tuple(opts.get("gateway_ports") or ())
    return opts


def start_mesh(settings: MeshSettings) -> dict[str, Any]:
    """``mesh_up`` with the CLI's progress; records the mesh in the CLI context."""
    try:
        mesh = mesh_up(settings, _RichProgress())
    except MeshError as exc:
        _fail(str(exc))
        raise AssertionError from exc  # unreachable
    _remember_mesh(settings, str(mesh["api"]))
    return mesh


def mesh_summary(settings: MeshSettings, mesh: dict[str, Any]) -> str:
    components = mesh.get("components") or {}
    lines = [f"  API:             {mesh['api']}   (pilotfish get pods, pilotfish apply -f ...)"]
    if components.get("ingress gateway", True):
        lines.append(f"  ingress gateway: {mesh['gateway']}")
    if components.get("egress gateway"):
        lines.append("  egress gateway:  istio-system/istio-egressgateway (a pod)")
    if mesh.get("prometheus"):
        lines.append(f"  prometheus:      {mesh['prometheus_url']}")
    if components.get("trace collector", True):
        lines.append(f"  trace query API: http://127.0.0.1:{mesh.get('trace_query_port')}")
    if mesh.get("dashboard"):
        lines.append(f"  dashboard:       {mesh['dashboard']}   (pilotfish dashboard)")
    lines.append(f"  logs:            {settings.logs_dir}")
    return "\n".join(lines)


@click.command("up", context_settings=CONTEXT_SETTINGS)
@up_options
@click.option("-f", "--filename", "files", multiple=True,
              help="Config to apply once the control plane is up, e.g. an IstioOperator whose "
              "spec.meshConfig sets the mesh config (as `istioctl install -f`). Checked "
              "before anything starts.")  # fmt: skip
def up(files: tuple[str, ...], **opts: Any) -> None:
    """Start the local mesh in the background: control plane, pod runtime, ingress gateway
    and, when installed, Prometheus on 127.0.0.1:9090.

    Needs root (pods are network namespaces with iptables rules). Config and keys stay in the
    data directory across `pilotfish down` / `pilotfish up`. After `pilotfish install`, `up`
    runs the components of the installed profile.

    \b
    Examples:
      sudo pilotfish up
      sudo pilotfish up -f samples/operator/demo.yaml   # access logs on, 100% tracing
      sudo pilotfish up --data-dir /srv/mesh --prefix m2 --pod-cidr 10.245.0.0/16
    """
    docs = _checked_documents(files)
    components = installed_components(opts["data_dir"], opts["state_dir"])
    settings = mesh_settings(components, **opts)
    mesh = start_mesh(settings)
    save_up_options(settings, opts)
    if docs:
        _apply_after_up(settings, str(mesh["api"]), docs)
    click.echo(
        f"\nPilotfish is up.\n{mesh_summary(settings, mesh)}\nStop it with `pilotfish down`."
    )


@click.command("down", context_settings=CONTEXT_SETTINGS)
@_data_dir_options
def down(data_dir: Path | None, state_dir: Path | None) -> None:
    """Stop the local mesh and remove every pod, namespace, veth, bridge and iptables rule."""
    if os.geteuid() != 0:
        _fail("`pilotfish down` removes network namespaces and iptables rules: run it as root")
    settings = _settings(data_dir, state_dir)
    try:
        lines = mesh_down(settings)
    except MeshError as exc:
        _fail(f"Pilotfish is not fully down:\n{exc}")
        return
    for line in lines:
        click.echo(line)
    if not lines:
        click.echo(f"Nothing of the mesh of {settings.data_dir} was running.")
    click.echo("Pilotfish is down.")


@click.command("status", context_settings=CONTEXT_SETTINGS)
@_data_dir_options
def status(data_dir: Path | None, state_dir: Path | None) -> None:
    """Health of the control plane, the pod runtime and the ingress gateway."""
    parts = mesh_status(_settings(data_dir, state_dir))
    if not parts:
        click.echo("Pilotfish is not running here (start it with `pilotfish up`).")
        sys.exit(1)
    width = max(len(p.name) for p in parts)
    for p in parts:
        state = p.state or (
            "healthy" if p.healthy else ("running, not ready" if p.running else "stopped")
        )
        click.echo(f"{p.name:<{width}}  {state:<18}  {p.detail}")
    if not all(p.healthy for p in parts):
        sys.exit(1)


def _pod(state: Path, pod: str, namespace: str) -> dict[str, Any]:
    info = read_pod_info(state / "pods", namespace, pod)
    if info is None:
        names = [f"{p['namespace']}/{p['name']}" for p in running_pods(state / "pods")]
        hint = f" (running: {', '.join(names)})" if names else ""
        _fail(f'pod "{pod}" not found in namespace {namespace}{hint}')
        raise AssertionError  # unreachable
    return info


def local_pod_netns(namespace: str, pod: str) -> str | None:
    """The network namespace of ``pod`` if the local runtime of the current mesh runs it."""
    _, state = _dirs(None, None)
    info = read_pod_info(state / "pods", namespace, pod)
    netns = (info or {}).get("netns")
    return str(netns) if netns else None


def in_pod_netns(netns: str, argv: list[str]) -> list[str]:
    """``argv`` run inside the network namespace ``netns`` (the path ``pilotfish exec`` takes)."""
    return pod_command(netns, argv)


@click.command("logs", context_settings=CONTEXT_SETTINGS)
@click.argument("pod")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-c", "--container", help="Container (istio-proxy: the sidecar)  [default: first]")
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the log grows.")
@_data_dir_options
def logs(
    pod: str,
    namespace: str,
    container: str | None,
    follow: bool,
    data_dir: Path | None,
    state_dir: Path | None,
) -> None:
    """Print a pod container's log, as `kubectl logs`."""
    _, state = _dirs(data_dir, state_dir)
    info = _pod(state, pod, namespace)
    containers = list(info.get("containers") or [])
    name = container or (containers[0] if containers else "")
    if name not in containers:
        _fail(f'container "{name}" is not in pod {pod} (containers: {", ".join(containers)})')
    path = state / "pods" / namespace / pod / f"{name}.log"
    with open(path, "rb") if path.exists() else open(os.devnull, "rb") as f:
        while True:
            chunk = f.read(65536)
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                continue
            if not follow or not path.parent.exists():
                return
            time.sleep(0.2)


@click.command("exec", context_settings={**CONTEXT_SETTINGS, "ignore_unknown_options": True})
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-c", "--container", help="Run as this container's user (istio-proxy: the proxy).")
@click.option("--root", is_flag=True, help="Run as root instead of the container's user.")
@click.option(
    "-i", "--stdin", "stdin_", is_flag=True, help="kubectl's -i: the command always gets stdin."
)
@click.option(
    "-t", "--tty", is_flag=True, help="kubectl's -t: the command always gets this terminal."
)
@_data_dir_options
def exec_cmd(
    pod: str,
    command: tuple[str, ...],
    namespace: str,
    container: str | None,
    root: bool,
    stdin_: bool,
    tty: bool,
    data_dir: Path | None,
    state_dir: Path | None,
) -> None:
    """Run a command inside a pod's network namespace, as `kubectl exec POD -- CMD`.

    The command sees the pod's hosts file (service names) and its traffic is captured like
    the app's. It runs attached to this terminal, so kubectl's `-it` is accepted and changes
    nothing. Examples:

    \b
      pilotfish exec productpage-v1-... -- curl -s http://reviews:9080/
      pilotfish exec -it productpage-v1-... -c istio-proxy -- pilot-agent request GET stats
    """
    if os.geteuid() != 0:
        _fail("`pilotfish exec` enters a network namespace: run it as root")
    _, state = _dirs(data_dir, state_dir)
    info = _pod(state, pod, namespace)
    uid: int | None = int(info["uid"])
    gid: int | None = int(info["gid"])
    if root:
        uid = gid = None
    elif container == "istio-proxy":
        from pilotfish.platform.local.users import PROXY_USER, lookup_user

        proxy = lookup_user(PROXY_USER)
        if proxy is not None:
            uid, gid = proxy.uid, proxy.gid
    env = pod_env({"HOSTNAME": pod})
    if container == "istio-proxy":
        # The sidecar's tools (`pilot-agent request GET stats`), as Istio's proxy image has them.
        tools = Path(sys.executable).parent
        env["PATH"] = f"{tools}:{env['PATH']}"
        if command and command[0] == "pilot-agent" and uid is not None and gid is not None:
            from pilotfish.fsaccess import R, X, access_problem

            if access_problem(tools / "pilot-agent", uid, [gid], R | X) is not None:
                # A private checkout (e.g. under /root): the proxy user cannot run Pilotfish's
                # Python, so the tool runs as root; it only asks the pod's Envoy admin on
                # loopback, which the capture rules leave alone for every user.
                uid = gid = None
    argv = pod_command(str(info["netns"]), list(command), uid, gid)
    result = subprocess.run(argv, env=env, check=False)
    sys.exit(result.returncode)


@click.command("runtime", context_settings=CONTEXT_SETTINGS)
@click.option("--server", required=True, help="The control plane's API URL.")
@click.option("--token-file", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--state-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--prefix", default="pf", show_default=True)
@click.option("--pod-cidr", default="10.244.0.0/16", show_default=True)
@click.option("--service-cidr", default="10.96.0.0/16", show_default=True)
@click.option("--xds-address", required=True, help="HOST:PORT of xDS as pods reach it.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--pod-python", default="/usr/bin/python3", show_default=True,
              help="What `python3` in a container command runs.")  # fmt: skip
@click.option("--drain-seconds", type=float, default=2.0, show_default=True)
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))  # fmt: skip
@click.option("--lock-fd", type=int, default=None, hidden=True,
              help="An inherited descriptor holding the prefix lock (set by `up`).")  # fmt: skip
@click.option("--sidecar-processes", is_flag=True,
              help="Start each sidecar agent as a new Python process instead of forking it "
              "from the runtime's warm agent parent (more memory, slower pod start).")  # fmt: skip
def runtime(
    server: str,
    token_file: Path,
    state_dir: Path,
    prefix: str,
    pod_cidr: str,
    service_cidr: str,
    xds_address: str,
    workdir: Path,
    pod_python: str,
    drain_seconds: float,
    log_level: str,
    lock_fd: int | None,
    sidecar_processes: bool,
) -> None:
    """Run the local pod runtime in the foreground (`pilotfish up` starts it for you)."""
    from pilotfish.platform.local.network import PodNetworkSettings
    from pilotfish.platform.local.runtime_main import (
        RuntimeProcessSettings,
        default_proxy_argv,
        run_dir_for,
        run_runtime,
    )
    from pilotfish.platform.local.runtime_pod import PodRunnerSettings

    token = token_file.read_text().strip()
    network = PodNetworkSettings(prefix=prefix, pod_cidr=pod_cidr, service_cidr=service_cidr)
    pods = PodRunnerSettings(
        log_dir=state_dir.resolve() / "pods",
        run_dir=run_dir_for(prefix),
        workdir=workdir.resolve(),
        discovery_address=xds_address,
        proxy_argv=default_proxy_argv(),
        pod_python=pod_python,
        drain_seconds=drain_seconds,
    )
    settings = RuntimeProcessSettings(
        api_url=server,
        token=token,
        state_dir=state_dir.resolve(),
        network=network,
        pods=pods,
        log_level=log_level,
        lock_fd=lock_fd,
        sidecar_zygote=not sidecar_processes,
    )
    sys.exit(run_runtime(settings))


RUNTIME_COMMANDS = (up, down, status, logs, exec_cmd, runtime)


@click.group(context_settings=CONTEXT_SETTINGS)
def runtime_cli() -> None:
    """The local mesh's commands (also registered in `pilotfish`)."""


for _command in RUNTIME_COMMANDS:
    runtime_cli.add_command(_command)


if __name__ == "__main__":
    runtime_cli(prog_name="pilotfish")
