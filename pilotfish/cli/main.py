"""The ``pilotfish`` command: kubectl/istioctl-style verbs over the control-plane API.

Every verb that talks to a control plane finds it through the context file (see
``pilotfish.contextfile``); ``--server``/``--token``/``--context`` override it. Errors are one
clear line each on stderr and a non-zero exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar

import click

from pilotfish import __version__
from pilotfish.api import kinds
from pilotfish.api.duration import parse_duration
from pilotfish.api.kinds import KindInfo
from pilotfish.api.mesh import DEFAULT_API_ADDRESS, DEFAULT_XDS_ADDRESS
from pilotfish.api.objects import ResourceKey
from pilotfish.cli import output
from pilotfish.contextfile import config_path, load_context
from pilotfish.errors import PilotfishError, ValidationError

if TYPE_CHECKING:
    from pilotfish.cli.client import ApiClient

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(message: str, code: int = 1) -> NoReturn:
    for line in str(message).splitlines() or [""]:
        click.echo(f"error: {line}", err=True)
    sys.exit(code)


class Globals:
    def __init__(self, server: str | None, token: str | None, context: str | None) -> None:
        self.server = server
        self.token = token
        self.context = context

    def client(self) -> ApiClient:
        from pilotfish.cli.client import ApiClient

        ctx = load_context(self.context)
        server = self.server or (ctx.server if ctx else None)
        token = self.token or (ctx.token if ctx else None)
        if not server:
            fail(
                f"no control plane configured: {config_path()} has no current context. "
                "Start one with `pilotfish server` (or `pilotfish up`), "
                "or pass --server and --token."
            )
        # The context's CA verifies its own server only (not one given with --server).
        ca_file = ctx.ca_file if ctx and server == ctx.server else ""
        return ApiClient(server, token or "", ca_file=ca_file)


pass_globals = click.make_pass_decorator(Globals)


class LazyCommand(NamedTuple):
    """A command defined in its own module: where it is, and its short help for ``--help``."""

    target: str  # "module:attribute"
    short_help: str


#: Commands defined in their own modules, imported only when used (a sidecar agent started
#: as `pilotfish proxy` should not pay for the analyzers' or the runtime's imports). Their short
#: help is kept here so that `pilotfish --help` imports none of them (a unit test checks it
#: matches each command's own).
LAZY_COMMANDS = {
    "analyze": LazyCommand(
        "pilotfish.cli.analyze_cmd:analyze_cmd",
        "Find problems across resources, with Istio's codes, as `istioctl analyze`.",
    ),
    "bug-report": LazyCommand(
        "pilotfish.cli.bugreport_cmd:bug_report",
        "Collect config, proxy state, config dumps and logs into one archive, secrets left out.",
    ),
    "dashboard": LazyCommand(
        "pilotfish.cli.dashboard_cmd:dashboard_cmd",
        "Open the web dashboard, the mesh's Prometheus or a proxy's Envoy admin.",
    ),
    "down": LazyCommand(
        "pilotfish.cli.runtime_cmds:down",
        "Stop the local mesh and remove every pod, namespace, veth, bridge and iptables rule.",
    ),
    "exec": LazyCommand(
        "pilotfish.cli.runtime_cmds:exec_cmd",
        "Run a command inside a pod's network namespace, as `kubectl exec POD -- CMD`.",
    ),
    "install": LazyCommand(
        "pilotfish.cli.install_cmd:install",
        "Install or reconcile the local mesh with a profile, as `istioctl install`.",
    ),
    "ca": LazyCommand(
        "pilotfish.cli.ca_cmd:ca",
        "The mesh CA: its roots, and rotating the root under load (`ca rotate-root`).",
    ),
    "logs": LazyCommand(
        "pilotfish.cli.runtime_cmds:logs", "Print a pod container's log, as `kubectl logs`."
    ),
    "port-forward": LazyCommand(
        "pilotfish.cli.portforward_cmd:port_forward_cmd",
        "Forward local ports to a pod, as `kubectl port-forward`.",
    ),
    "profile": LazyCommand(
        "pilotfish.cli.install_cmd:profile",
        "Install profiles, as `istioctl profile`: list, dump.",
    ),
    "proxy": LazyCommand(
        "pilotfish.cli.proxy_cmd:proxy",
        "Run an Envoy sidecar (or gateway) for one workload until SIGTERM.",
    ),
    "proxy-config": LazyCommand(
        "pilotfish.cli.proxy_config:proxy_config",
        "Show one proxy's Envoy config, as `istioctl proxy-config`.",
    ),
    "rollout": LazyCommand(
        "pilotfish.cli.rollout_cmd:rollout",
        "Manage the rollout of a Deployment, as `kubectl rollout`: restart, status.",
    ),
    "runtime": LazyCommand(
        "pilotfish.cli.runtime_cmds:runtime",
        "Run the local pod runtime in the foreground (`pilotfish up` starts it for you).",
    ),
    "status": LazyCommand(
        "pilotfish.cli.runtime_cmds:status",
        "Health of the control plane, the pod runtime and the ingress gateway.",
    ),
    "token": LazyCommand(
        "pilotfish.cli.token_cmd:token",
        "API tokens with a role, and workload tokens for sidecars outside the local runtime.",
    ),
    "audit": LazyCommand(
        "pilotfish.cli.token_cmd:audit",
        "The audit log: every change made through the API, who made it, when, at which revision.",
    ),
    "wait": LazyCommand(
        "pilotfish.cli.wait_cmd:wait_cmd",
        "Wait until every proxy has acknowledged a config revision.",
    ),
    "verify-install": LazyCommand(
        "pilotfish.cli.verify_cmd:verify_install",
        "Check every part of the installed mesh, as `istioctl verify-install`.",
    ),
    "x": LazyCommand(
        "pilotfish.cli.describe_cmd:x_group",
        "Experimental commands, as `istioctl x`: describe, explain, workload entry configure.",
    ),
    "up": LazyCommand(
        "pilotfish.cli.runtime_cmds:up",
        "Start the local mesh in the background: control plane, pod runtime, ingress gateway "
        "and, when installed, Prometheus on 127.0.0.1:9090.",
    ),
}


class PilotfishGroup(click.Group):
    """Loads command modules on demand; turns Pilotfish errors into one-line messages."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in LAZY_COMMANDS:
            return found
        import importlib

        module, _, attr = LAZY_COMMANDS[cmd_name].target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, with the lazy commands' help from the table."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(n) for n in names), default=0)
        rows = []
        for name in names:
            lazy = LAZY_COMMANDS.get(name)
            if lazy is not None and name not in self.commands:
                rows.append((name, _short(lazy.short_help, limit)))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PilotfishError as e:
            fail(str(e))


@click.group(cls=PilotfishGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--server", envvar="PILOTFISH_SERVER", help="Control-plane API URL (overrides the context)."
)
@click.option("--token", envvar="PILOTFISH_TOKEN", help="Bearer token (overrides the context).")
@click.option("--context", "context_name", help="Context of the config file to use.")
@click.pass_context
def cli(
    ctx: click.Context, server: str | None, token: str | None, context_name: str | None
) -> None:
    """Pilotfish: Istio's configuration, a real Envoy data plane, no Kubernetes needed.

    \b
    Start a control plane, then use it like kubectl/istioctl:
      pilotfish server &                     # or: pilotfish up (control plane + pods + gateway)
      pilotfish apply -f samples/bookinfo/networking/virtual-service-all-v1.yaml
      pilotfish get virtualservices          # short names work: vs, dr, gw, se, pa, ap, ra
      pilotfish get vs reviews -o yaml
      pilotfish delete -f samples/bookinfo/networking/virtual-service-all-v1.yaml
      pilotfish validate -f my-config.yaml   # offline, no server needed
      pilotfish proxy-status                 # every connected Envoy and its xDS state

    The CLI finds the control plane through ~/.pilotfish/config (or $PILOTFISH_CONFIG),
    which `pilotfish server` writes on start.
    """
    ctx.obj = Globals(server, token, context_name)


# ---------------------------------------------------------------------------- helpers


def _short(text: str, limit: int) -> str:
    """``text`` cut at ``limit`` characters the way click cuts a command's short help."""
    return click.Command(None, help=text).get_short_help_str(limit)


def _kind_label(info: KindInfo, name: str) -> str:
    return f"{info.singular}.{info.group}/{name}" if info.group else f"{info.singular}/{name}"


def _load(files: tuple[str, ...]) -> list[Any]:
    from pilotfish.config.loader import load_documents

    if not files:
        fail("must specify one of -f and -k: pilotfish apply -f FILE|DIR|-")
    return list(load_documents(list(files), stdin=sys.stdin))


def _namespace_opt(f: F) -> F:
    return click.option(
        "-n", "--namespace", default=None, help="Namespace (default: the object's, else `default`)."
    )(f)


# ---------------------------------------------------------------------------- verbs


@cli.command()
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    help="File, directory (*.yaml, *.yml, *.json) or - for stdin. Repeatable.",
)
@_namespace_opt
@click.option(
    "--dry-run",
    type=click.Choice(["none", "client", "server"]),
    default="none",
    is_flag=False,
    flag_value="server",
    help="server: validate on the control plane and report, store nothing (a bare --dry-run "
    "means server); client: validate offline, send nothing; none: apply.",
)
@click.option(
    "--diff",
    is_flag=True,
    help="With --dry-run=server: for each proxy the change reaches, the diff of its Envoy "
    "clusters, listeners and routes, computed by the control plane.",
)
@click.option(
    "--wait",
    "wait",
    is_flag=True,
    help="Then wait until every proxy acknowledged the change (see `pilotfish wait`).",
)
@click.option("--timeout", default="30s", show_default=True, help="With --wait: how long to wait.")
@pass_globals
def apply(
    g: Globals,
    files: tuple[str, ...],
    namespace: str | None,
    dry_run: str,
    diff: bool,
    wait: bool,
    timeout: str,
) -> None:
    """Create or update resources from files, as `kubectl apply -f`.

    Each file is one transaction: if any resource in it is invalid, nothing from that file is
    stored, and every problem is reported with its file, document, field path and reason.

    \b
    Examples:
      pilotfish apply -f samples/bookinfo/networking/destination-rule-all.yaml
      pilotfish apply -f ./istio-config/ -n staging
      cat vs.yaml | pilotfish apply -f -
      pilotfish apply -f reviews-v2.yaml --wait --timeout 1m   # until every Envoy ACKed it
      pilotfish apply -f reviews-v2.yaml --dry-run=server --diff  # what each Envoy would get
      sudo pilotfish apply -f samples/addons       # start Prometheus, tracing, the dashboard

    The files of samples/addons (IstioOperators that set only spec.addonComponents) start
    those parts in the running local mesh, as `pilotfish install` would (root needed);
    `pilotfish delete -f` stops them.

    With --wait, exits 1 naming each proxy that rejected the change (with Envoy's error) or
    did not acknowledge it within --timeout.
    """
    from pilotfish.cli.wait_cmd import parse_timeout, wait_for_sync

    if diff and dry_run != "server":
        raise click.UsageError("--diff needs --dry-run=server (the control plane computes it)")
    if wait and dry_run != "none":
        raise click.UsageError("--wait waits for an applied change: not with --dry-run")
    if dry_run == "client":
        _client_dry_run(files, namespace)
        return
    from pilotfish.cli.addons_cmd import apply_addons, is_addon_operator

    seconds = parse_timeout(timeout) if wait else 0.0
    revision = 0
    docs_by_file: dict[str, list[Any]] = {}
    addons: list[dict[str, Any]] = []
    for d in _load(files):
        if is_addon_operator(d.body):  # samples/addons: parts of the local mesh
            addons.append(d.body)
        else:
            docs_by_file.setdefault(d.source.file, []).append(d)
    if addons:
        apply_addons(addons, enable=True, dry_run=dry_run == "server")
        if not docs_by_file:
            return
    failed = False
    with g.client() as client:
        for docs in docs_by_file.values():
            items = [d.body for d in docs]
            sources = [
                {"file": d.source.file, "document": d.source.document, "line": d.source.line}
                for d in docs
            ]
            try:
                result = client.apply(items, sources, namespace, dry_run == "server", diff=diff)
            except PilotfishError as e:
                for line in str(e).splitlines():
                    click.echo(f"error: {line}", err=True)
                failed = True
                continue
            suffix = " (server dry run)" if dry_run == "server" else ""
            revision = max(revision, int(result.get("revision") or 0))
            for warning in result.get("warnings") or []:
                click.echo(f"Warning: {warning}", err=True)
            for it in result["items"]:
                info = kinds.by_kind(it["kind"])
                click.echo(f"{_kind_label(info, it['name'])} {it['result']}{suffix}")
            if diff:
                _print_preview(result.get("proxies") or [])
        if wait and revision:
            code = wait_for_sync(client, revision, seconds)
            if code:
                sys.exit(code)
    if failed:
        sys.exit(1)


def _print_preview(proxies: list[dict[str, Any]]) -> None:
    """The per-proxy diffs of ``apply --dry-run=server --diff``."""
    changed = [p for p in proxies if p.get("diffs")]
    same = [p["proxy"] for p in proxies if not p.get("diffs")]
    for p in changed:
        for text in p["diffs"].values():
            click.echo(text.rstrip("\n"))
    names = ", ".join(p["proxy"] for p in changed)
    click.echo(
        f"{len(changed)} prox{'y' if len(changed) == 1 else 'ies'} would change"
        + (f": {names}" if names else "")
    )
    if same:
        click.echo(f"reached, config unchanged: {', '.join(same)}")


def _client_dry_run(files: tuple[str, ...], namespace: str | None) -> None:
    """``apply --dry-run=client``: the files validated offline, nothing sent (as kubectl's,
    which does not ask the server either)."""
    from pilotfish.cli.addons_cmd import is_addon_operator
    from pilotfish.config.validation import validate as validate_one

    problems = 0
    for d in _load(files):
        try:
            v = validate_one(d.body, source=d.source, default_namespace=namespace or "default")
        except ValidationError as e:
            problems += 1
            click.echo(f"error: {e.with_source(d.source) if e.source is None else e}", err=True)
            continue
        except PilotfishError as e:
            problems += 1
            click.echo(f"error: {d.source}: {e}", err=True)
            continue
        addon = is_addon_operator(d.body)  # samples/addons: apply starts it, no warning
        for w in v.warnings:
            if not (addon and w.path.startswith("spec.addonComponents")):
                click.echo(f"Warning: {d.source}: {w}", err=True)
        click.echo(f"{_kind_label(v.info, v.body['metadata']['name'])} valid (client dry run)")
    if problems:
        sys.exit(1)


@cli.command()
@click.argument("kind")
@click.argument("names", nargs=-1)
@_namespace_opt
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["wide", "yaml", "json", "name"]),
    help="Output format.",
)
@click.option("-l", "--selector", help="Label selector, e.g. app=reviews,version!=v1.")
@click.option("-w", "--watch", is_flag=True, help="After listing, watch for changes.")
@pass_globals
def get(
    g: Globals,
    kind: str,
    names: tuple[str, ...],
    namespace: str | None,
    all_namespaces: bool,
    fmt: str | None,
    selector: str | None,
    watch: bool,
) -> None:
    """List resources or show some, as `kubectl get`.

    KIND is a kind, plural or short name: vs, dr, gw, se, we, pa, ap, ra, svc, deploy, pods,
    ns, sa, secrets, telemetry, sidecars, envoyfilters; several separated by commas.

    \b
    Examples:
      pilotfish get vs
      pilotfish get dr reviews -o yaml
      pilotfish get pods -A -o wide
      pilotfish get vs,dr,gw -A
      pilotfish get meshconfig          # the mesh config in force (IstioOperator meshConfig)
    """
    if kind.lower() in ("meshconfig", "mesh-config", "meshconfigs"):
        with g.client() as client:
            mesh = client.mesh_config()
        click.echo(output.dump(mesh, "json" if fmt == "json" else "yaml"))
        return
    infos = [kinds.lookup(k) for k in kind.split(",") if k]
    if len(infos) > 1 and (names or watch):
        fail("a list of kinds (vs,dr) takes no names and no --watch")
    ns = None if all_namespaces else (namespace or "default")
    with g.client() as client:
        collected: list[tuple[KindInfo, list[dict[str, Any]]]] = []
        for info in infos:
            if names:
                items = [client.get(info, ns or "default", n) for n in names]
            else:
                items = list(client.list_objects(info, ns, selector).get("items") or [])
            collected.append((info, items))
        if fmt in ("yaml", "json"):
            everything = [o for _, items in collected for o in items]
            doc: Any = everything[0] if len(names) == 1 else output.as_list(everything)
            click.echo(output.dump(doc, fmt))
        elif fmt == "name":
            for info, items in collected:
                for o in items:
                    click.echo(_kind_label(info, o["metadata"]["name"]))
        else:
            tables = [
                output.resource_table(
                    info.kind, items, all_namespaces and info.namespaced, fmt == "wide"
                )
                for info, items in collected
                if items
            ]
            if tables:
                click.echo("\n\n".join(tables))
            else:
                namespaced = any(i.namespaced for i in infos)
                where = "" if not namespaced or all_namespaces else f" in {ns} namespace"
                click.echo(f"No resources found{where}.", err=True)
        if watch:
            for ev in client.watch(infos[0], ns):
                o = ev["object"]
                click.echo(
                    f"{ev['type']:<9} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
                )


@cli.command()
@click.argument("args", nargs=-1)
@click.option(
    "-f", "--filename", "files", multiple=True, help="Delete the resources in these files."
)
@_namespace_opt
@click.option("--ignore-not-found", is_flag=True, help="Treat absent resources as deleted.")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted; delete nothing.")
@pass_globals
def delete(
    g: Globals,
    args: tuple[str, ...],
    files: tuple[str, ...],
    namespace: str | None,
    ignore_not_found: bool,
    dry_run: bool,
) -> None:
    """Delete resources by file or by kind and name, as `kubectl delete`.

    \b
    Examples:
      pilotfish delete -f samples/bookinfo/networking/virtual-service-all-v1.yaml
      pilotfish delete vs reviews
      pilotfish delete dr reviews ratings -n default
    """
    from pilotfish.cli.addons_cmd import apply_addons, is_addon_operator

    items: list[dict[str, str]] = []
    if files:
        docs = _load(files)
        addons = [d.body for d in docs if is_addon_operator(d.body)]
        if addons:  # samples/addons: stop those parts of the local mesh
            apply_addons(addons, enable=False, dry_run=dry_run)
            docs = [d for d in docs if not is_addon_operator(d.body)]
            if not docs:
                return
        for d in docs:
            meta = d.body.get("metadata") or {}
            items.append(
                {
                    "kind": str(d.body.get("kind")),
                    "namespace": meta.get("namespace") or namespace or "default",
                    "name": str(meta.get("name")),
                }
            )
    elif len(args) >= 2:
        info = kinds.lookup(args[0])
        items = [
            {"kind": info.kind, "namespace": namespace or "default", "name": n} for n in args[1:]
        ]
    else:
        fail("specify -f FILE or KIND NAME..., e.g. pilotfish delete vs reviews")
    with g.client() as client:
        result = client.delete(items, namespace, ignore_not_found, dry_run)
    suffix = " (dry run)" if dry_run else ""
    for it in result["items"]:
        click.echo(f"{_kind_label(kinds.by_kind(it['kind']), it['name'])} deleted{suffix}")


@cli.command()
@click.argument("kind")
@click.argument("name")
@_namespace_opt
@pass_globals
def describe(g: Globals, kind: str, name: str, namespace: str | None) -> None:
    """Show one resource in detail, as `kubectl describe`."""
    info = kinds.lookup(kind)
    with g.client() as client:
        o = client.get(info, namespace or "default", name)
    meta = o.get("metadata") or {}
    lines = [
        f"Name:         {meta.get('name')}",
        *([f"Namespace:    {meta.get('namespace')}"] if info.namespaced else []),
        "Labels:       "
        + (
            "\n              ".join(f"{k}={v}" for k, v in (meta.get("labels") or {}).items())
            or "<none>"
        ),
        "Annotations:  "
        + (
            "\n              ".join(f"{k}: {v}" for k, v in (meta.get("annotations") or {}).items())
            or "<none>"
        ),
        f"API Version:  {o.get('apiVersion')}",
        f"Kind:         {o.get('kind')}",
        f"Created:      {meta.get('creationTimestamp')}",
        f"Revision:     {meta.get('resourceVersion')}",
    ]
    click.echo("\n".join(lines))
    for section in ("spec", "data", "status"):
        value = o.get(section)
        if value and info.kind == "Canary" and section == "status":
            value = {k: v for k, v in value.items() if k != "steps"}
        if value:
            click.echo(f"{section.capitalize()}:")
            click.echo("  " + output.dump(value, "yaml").replace("\n", "\n  "))
    if info.kind == "Canary":
        click.echo("\n".join(output.canary_steps(o)))
    if info.kind in ("Pod", "Deployment", "Service", "Canary"):
        with g.client() as client:
            events = client.list_objects(kinds.by_kind("Event"), meta.get("namespace") or "default")
        mine = [
            e
            for e in events.get("items") or []
            if (e.get("involvedObject") or {}).get("name") == meta.get("name")
            and (e.get("involvedObject") or {}).get("kind") == info.kind
        ]
        click.echo("\n".join(output.event_lines(mine)))


@cli.command()
@click.argument("kind")
@click.argument("name")
@click.argument("labels", nargs=-1, required=True)
@_namespace_opt
@click.option("--overwrite", is_flag=True, help="Allow changing a label that already has a value.")
@pass_globals
def label(
    g: Globals,
    kind: str,
    name: str,
    labels: tuple[str, ...],
    namespace: str | None,
    overwrite: bool,
) -> None:
    """Set or remove labels, as `kubectl label`.

    \b
    Examples:
      pilotfish label namespace default istio-injection=enabled
      pilotfish label namespace default istio-injection-      # remove it
    """
    info = kinds.lookup(kind)
    with g.client() as client:
        o = client.get(info, namespace or "default", name)
        current = dict(o["metadata"].get("labels") or {})
        for item in labels:
            if item.endswith("-") and "=" not in item:
                current.pop(item[:-1], None)
                continue
            if "=" not in item:
                fail(f"invalid label {item!r}: use key=value, or key- to remove")
            k, v = item.split("=", 1)
            if k in current and current[k] != v and not overwrite:
                fail(f"'{k}' already has a value ({current[k]}), and --overwrite is false")
            current[k] = v
        o["metadata"]["labels"] = current
        client.put(info, o)
    click.echo(f"{_kind_label(info, name)} labeled")


@cli.group()
def create() -> None:
    """Create a resource from the command line (namespace)."""


@create.command("namespace")
@click.argument("name")
@pass_globals
def create_namespace(g: Globals, name: str) -> None:
    """Create a namespace, as `kubectl create namespace`."""
    info = kinds.by_kind("Namespace")
    with g.client() as client:
        client.create(info, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    click.echo(f"namespace/{name} created")


@cli.command()
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    help="File, directory or - for stdin. Repeatable.",
)
@_namespace_opt
def validate(files: tuple[str, ...], namespace: str | None) -> None:
    """Check files offline (no server): schema and Istio's semantic rules.

    Prints each problem with its file, document, resource, field path and reason;
    exits non-zero when any is found.
    """
    from pilotfish.config.validation import validate as validate_one

    problems = 0
    count = 0
    for d in _load(files):
        count += 1
        try:
            v = validate_one(d.body, source=d.source, default_namespace=namespace or "default")
            meta = v.body["metadata"]
            ref = ResourceKey.of(v.info.kind, meta.get("namespace"), meta["name"])
            for w in v.warnings:
                click.echo(f"Warning: {d.source}: {ref}: {w}", err=True)
        except ValidationError as e:
            problems += 1
            click.echo(str(e.with_source(d.source) if e.source is None else e), err=True)
        except PilotfishError as e:
            problems += 1
            click.echo(f"{d.source}: {e}", err=True)
    if problems:
        fail(f"{problems} of {count} resources are invalid")
    click.echo(f"{count} resources valid")


@cli.command()
@click.option("--client", "client_only", is_flag=True, help="Only the CLI's version.")
@pass_globals
def version(g: Globals, client_only: bool) -> None:
    """Print the client and control-plane versions."""
    click.echo(f"client version: {__version__}")
    if client_only:
        return
    try:
        with g.client() as client:
            v = client.request("GET", "/version")
        click.echo(
            f"control plane version: {v.get('version')} (config revision {v.get('revision')})"
        )
    except (PilotfishError, SystemExit):
        click.echo("control plane version: unavailable (no control plane reachable)")


@cli.command("proxy-status")
@click.argument("pod", required=False)
@click.option("-n", "--namespace", default=None, help="The proxy's namespace (or POD.NAMESPACE).")
@click.option(
    "-o", "--output", "fmt", type=click.Choice(["wide", "json", "yaml"]), help="Output format."
)
@click.option(
    "-f", "--file", "file", help="With POD: compare with a saved config dump, not the Envoy."
)
@pass_globals
def proxy_status(
    g: Globals, pod: str | None, namespace: str | None, fmt: str | None, file: str | None
) -> None:
    """Every connected Envoy and its xDS state, as `istioctl proxy-status`.

    \b
    SYNCED    the proxy acknowledged the last config sent
    STALE     sent, not acknowledged yet
    NACKED    the proxy rejected the last config (the error is printed below the table;
              it keeps running the previous version, and the rejected config is not resent
              until something changes)
    NOT SENT  nothing of that type was sent (normal when the Envoy asked for none: a
              gateway that no Gateway selects has no routes, so RDS is NOT SENT, as in
              istioctl; a note below the table says so)

    A proxy whose config the control plane failed to generate keeps its previous config;
    the failure is printed below the table (and in `-o json` as generation_error).

    `-o wide` adds the acknowledged version of each type.

    With POD (POD.NAMESPACE, or POD with -n): what differs between the config the control
    plane would send that proxy now and what its Envoy runs (read from its config dump, as
    `pilotfish proxy-config dump` does): a unified diff per type (clusters, listeners,
    routes; "- " lines are the control plane's, "+ " lines the Envoy's), or "Clusters Match".

    \b
    Examples:
      pilotfish proxy-status
      pilotfish proxy-status -o wide
      pilotfish proxy-status productpage-v1-6b7f6c9d8-x2xkq.default
      pilotfish proxy-status productpage-v1-6b7f6c9d8-x2xkq -n default -f dump.json
    """
    if pod is not None:
        _proxy_diff(g, pod, namespace, file)
        return
    if file is not None:
        raise click.UsageError("--file compares one proxy: give POD")
    with g.client() as client:
        items = client.proxy_status()
    if fmt in ("json", "yaml"):
        click.echo(output.dump(output.as_list(items), fmt))
        return
    # As istioctl's columns: ECDS carries the extension configs of EnvoyFilter
    # EXTENSION_CONFIG patches (NOT SENT, without a note, on every proxy that uses none).
    types = ("CDS", "LDS", "EDS", "RDS", "ECDS")
    header = ["NAME", "CLUSTER", *types, "PROTOCOL"]
    if fmt == "wide":
        header += [f"{t}-VERSION" for t in types]
    rows = [header]
    errors: list[str] = []
    notes: list[str] = []
    for p in sorted(items, key=lambda p: (p.get("namespace", ""), p.get("pod_name", ""))):
        name = f"{p.get('pod_name')}.{p.get('namespace')}"
        per_type = p.get("types") or {}
        row = [name, str(p.get("cluster", ""))]
        versions = []
        for t in types:
            st = per_type.get(t) or {}
            vhds = per_type.get("VHDS") if t == "RDS" else None
            if vhds and vhds.get("state") not in (None, "SYNCED"):
                # Virtual hosts over VHDS are part of the routes: a VHDS rejection or a
                # pending VHDS push shows in the RDS column.
                st = {**st, "state": vhds.get("state"), "last_nack": vhds.get("last_nack")}
            row.append(str(st.get("state") or "NOT SENT"))
            note = not_sent_note(name, t, st)
            if note:
                notes.append(note)
            versions.append(str(st.get("acked_version") or "-"))
            nack = st.get("last_nack")
            if nack:
                errors.append(f"{name} {t} rejected (NACK): {nack.get('error')}")
        row.append(str(p.get("protocol", "")))
        failed = p.get("generation_error")
        if failed:
            errors.append(
                f"{name}: the control plane could not generate its config "
                f"({failed.get('error')}); it keeps running its previous config"
            )
        if fmt == "wide":
            row += versions
        rows.append(row)
    if len(rows) == 1:
        click.echo("No proxies connected.", err=True)
        return
    click.echo(output.table(rows))
    for e in errors:
        click.echo(e)
    for n in notes:
        click.echo(n)


#: What a type's resources hang off, for a proxy that asked for none of them.
_NOTHING_ASKED = {
    "RDS": "its listeners use no routes (a gateway that no Gateway selects has none)",
    "EDS": "its clusters take no endpoints from the control plane",
}


def not_sent_note(name: str, short: str, st: dict[str, Any]) -> str | None:
    """Why ``short`` is ``NOT SENT`` for proxy ``name`` when that is expected: its Envoy never
    asked for resources of that type (istioctl shows ``NOT SENT`` as well). ``None`` when
    something was sent, or the proxy asked for resources that did not come (a real problem).
    Pure."""
    if st.get("sent_nonce") or short not in _NOTHING_ASKED:
        return None
    if st and (st.get("wildcard") or st.get("subscribed")):
        return None
    return (
        f"{name}: {short} NOT SENT: {_NOTHING_ASKED[short]}, so its Envoy asks for none "
        "(expected, not a problem)"
    )


def _proxy_diff(g: Globals, pod: str, namespace: str | None, file: str | None) -> None:
    import json

    from pilotfish.api.kinds import proxy_config_path
    from pilotfish.cli.envoy_admin import find_admin
    from pilotfish.cli.proxy_config import split_target, sync_diff

    ns, name = split_target(pod, namespace)
    with g.client() as client:
        try:
            want = client.request("GET", proxy_config_path(ns, name))
        except PilotfishError as exc:
            fail(f"{name}.{ns}: {exc}")
        if file is not None:
            with click.open_file(file) as f:
                dump = json.load(f)
        else:
            admin = find_admin(ns, name, client.proxy_status())
            dump = json.loads(admin.request("GET", "/config_dump"))
    text, _ = sync_diff(want, dump)
    click.echo(text.rstrip("\n"))


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where config and keys live (default ~/.pilotfish/data).",
)
@click.option(
    "--listen", default=DEFAULT_API_ADDRESS, show_default=True, help="Address of the HTTP API."
)
@click.option(
    "--xds-listen",
    default=DEFAULT_XDS_ADDRESS,
    show_default=True,
    help="Address of the xDS (ADS) gRPC server.",
)
@click.option(
    "--store",
    "store_url",
    default=None,
    help="Config store: a SQLite path (default <data-dir>/config.db), memory://, or "
    "postgresql://USER@HOST:PORT/DATABASE shared by several control-plane replicas "
    "(password in ~/.pgpass or PGPASSWORD).",
)
@click.option(
    "--context-name",
    default="local",
    show_default=True,
    help="Context written to the CLI config file for this server.",
)
@click.option(
    "--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"])
)
@click.option(
    "--ca-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Plug-in CA: Istio's cacerts files (ca-cert.pem, ca-key.pem, root-cert.pem, "
    "cert-chain.pem). Default: a self-signed mesh root in <data-dir>/ca.",
)
@click.option(
    "--xds-san",
    "xds_sans",
    multiple=True,
    metavar="NAME|IP",
    help="An extra DNS name or IP for the xDS serving certificate, e.g. the name agents on "
    "other hosts dial (repeatable).",
)
@click.option(
    "--trace-collector/--no-trace-collector",
    default=True,
    show_default=True,
    help="Run the built-in trace collector: OTLP (4317 gRPC, 4318 HTTP) and Zipkin (9411) "
    "on the --xds-listen address, known in the mesh as zipkin.istio-system; Jaeger's query "
    "API on 127.0.0.1 (--trace-query-port).",
)
@click.option("--trace-query-port", type=click.IntRange(1, 65535), default=16686,
              show_default=True, help="The trace collector's Jaeger query API port.")  # fmt: skip
@click.option("--dashboard-listen", default="127.0.0.1:20001", show_default=True,
              help="Address of the web dashboard (empty: no dashboard).")  # fmt: skip
@click.option(
    "--prometheus-url",
    default="http://127.0.0.1:9090",
    show_default=True,
    help="The mesh's Prometheus, which the canary controller queries for Flagger's metrics "
    "and the dashboard for its graph and charts (`pilotfish up` passes the one it runs).",
)
@click.option(
    "--xds-plaintext",
    is_flag=True,
    help="Serve xDS and the CA without TLS, for tests and trusted loopback setups (agents "
    "then pass --plaintext unless they dial a loopback address). Workload tokens cross the "
    "wire in clear.",
)
@click.option(
    "--max-connection-age",
    default="30m",
    show_default=True,
    metavar="DURATION",
    help="Close xDS/CA connections after this long so proxies spread over control-plane "
    "replicas again (0: never); as Istio's 30 min.",
)
@click.option(
    "--max-connection-age-grace",
    default="10s",
    show_default=True,
    metavar="DURATION",
    help="After --max-connection-age, how long open streams may go on before the connection "
    "is closed (the proxy reconnects and keeps its config meanwhile).",
)
@click.option(
    "--workload-entry-cleanup-grace",
    default="30s",
    show_default=True,
    metavar="DURATION",
    help="How long a WorkloadEntry auto-registered through a replica that is gone (killed, "
    "restarted) is kept for its agent to reconnect before it is deleted.",
)
@click.option(
    "--api-tls",
    is_flag=True,
    help="Serve the HTTP API over HTTPS with a certificate from the mesh CA (the same names "
    "as xDS's); the context written for the CLI verifies it with the mesh roots.",
)
@click.option(
    "--api-tls-cert",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Serve the HTTP API over HTTPS with this certificate chain (PEM) instead.",
)
@click.option(
    "--api-tls-key",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The private key (PEM) of --api-tls-cert.",
)
@click.option(
    "--api-worker/--no-api-worker",
    default=True,
    show_default=True,
    help="Serve the HTTP API from a worker process of its own, which answers reads of "
    "config from the store and forwards the rest here, so the API answers while xDS is "
    "busy (a memory:// store is always served in this process).",
)
def server(
    data_dir: Path | None,
    listen: str,
    xds_listen: str,
    store_url: str | None,
    context_name: str,
    log_level: str,
    ca_dir: Path | None,
    xds_sans: tuple[str, ...],
    trace_collector: bool,
    trace_query_port: int,
    dashboard_listen: str,
    prometheus_url: str,
    xds_plaintext: bool,
    max_connection_age: str,
    max_connection_age_grace: str,
    workload_entry_cleanup_grace: str,
    api_tls: bool,
    api_tls_cert: Path | None,
    api_tls_key: Path | None,
    api_worker: bool,
) -> None:
    """Run the control plane in the foreground (HTTP API, config store, xDS).

    On first start it creates an admin token in the data directory and writes a context for
    itself to the CLI config file, so other `pilotfish` commands find it.

    xDS and the CA are served over TLS with a certificate from the mesh CA; agents verify it
    with the mesh roots (`pilotfish proxy --ca-file <data-dir>/ca/mesh-roots.pem`). The
    certificate names localhost, 127.0.0.1, the --xds-listen address (every address of
    this host for 0.0.0.0), this host's name, pilotfish.istio-system.svc and
    istiod.istio-system.svc, plus each --xds-san; an agent dialling anything else passes
    one of these names as --xds-server-name.
    """
    from pilotfish.server import ServerSettings, run_server

    ages: dict[str, float] = {}
    for option, text in (
        ("--max-connection-age", max_connection_age),
        ("--max-connection-age-grace", max_connection_age_grace),
        ("--workload-entry-cleanup-grace", workload_entry_cleanup_grace),
    ):
        try:
            ages[option] = parse_duration(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from exc
    settings = ServerSettings.build(
        data_dir=data_dir,
        listen=listen,
        xds_listen=xds_listen,
        store_url=store_url,
        context_name=context_name,
        log_level=log_level,
        ca_dir=ca_dir,
        xds_tls=not xds_plaintext,
        xds_sans=xds_sans,
        trace_collector=trace_collector,
        trace_query_port=trace_query_port,
        dashboard_listen=dashboard_listen or None,
        prometheus_url=prometheus_url,
        max_connection_age=ages["--max-connection-age"],
        max_connection_age_grace=ages["--max-connection-age-grace"],
        workload_entry_cleanup_grace=ages["--workload-entry-cleanup-grace"],
        api_tls=api_tls,
        api_tls_cert=api_tls_cert,
        api_tls_key=api_tls_key,
        api_worker=api_worker,
    )
    if (api_tls_cert is None) != (api_tls_key is None):
        raise click.UsageError("--api-tls-cert and --api-tls-key go together")
    run_server(settings)


def main() -> None:
    cli(prog_name="pilotfish")


if __name__ == "__main__":
    main()
