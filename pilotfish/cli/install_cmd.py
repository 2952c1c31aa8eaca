"""``pilotfish install`` and ``pilotfish profile``, as ``istioctl install`` / ``istioctl profile``.

``install`` is ``up`` with a profile: it builds the ``installed-state`` IstioOperator (profile,
``-f`` files over it, then ``--set``; see :mod:`pilotfish.api.profiles`), checks it offline
(nothing starts when it is wrong), starts or reconciles the local mesh so that exactly the
profile's components run, and applies the operator so its mesh config takes effect. Run again
on a running mesh it reconciles both: parts the new profile leaves out are stopped, parts it
adds are started, and the mesh config is replaced.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pilotfish.cli.runtime_cmds import (
    CONTEXT_SETTINGS,
    INSTALLED_STATE,
    _dirs,
    _fail,
    mesh_settings,
    mesh_summary,
    start_mesh,
    up_options,
)

__all__ = ["install", "profile", "reconcile"]

#: How long ``install`` waits for every proxy to acknowledge the installed mesh config.
SYNC_TIMEOUT = 60.0
#: Warnings about what only ``install`` acts on: ``install`` itself does, so they are not shown.
_INSTALL_FIELDS = ("spec.profile", "spec.components", "spec.addonComponents", "spec.values")


def _file_spec(files: tuple[str, ...]) -> dict[str, Any]:
    """The merged ``spec`` of the IstioOperators in ``files`` (later files win)."""
    from pilotfish.api.profiles import merge_spec
    from pilotfish.config.loader import load_documents
    from pilotfish.errors import PilotfishError

    spec: dict[str, Any] = {}
    try:
        docs = list(load_documents(list(files), stdin=sys.stdin))
    except PilotfishError as exc:
        _fail(str(exc))
        raise AssertionError from exc
    for d in docs:
        if d.body.get("kind") != "IstioOperator":
            where = f"{d.source.file}, document {d.source.document}"
            _fail(
                f"{where}: install -f takes IstioOperator resources, not {d.body.get('kind')} "
                "(apply other config with `pilotfish apply -f` once the mesh is up)"
            )
        spec = merge_spec(spec, dict(d.body.get("spec") or {}))
    return spec


def build_operator(
    files: tuple[str, ...], sets: tuple[str, ...], outcome: str = "nothing was installed"
) -> dict[str, Any]:
    """The operator ``install`` would install, checked as ``apply`` checks it. ``outcome``:
    what a refusal says happened (``profile dump`` installs nothing either way)."""
    from pilotfish.api.profiles import SetError, install_operator, parse_set
    from pilotfish.config.validation import validate
    from pilotfish.errors import PilotfishError

    try:
        body = install_operator(_file_spec(files), [parse_set(s) for s in sets])
        result = validate(body)
    except SetError as exc:
        _fail(f"{exc}\n{outcome}")
        raise AssertionError from exc
    except PilotfishError as exc:
        _fail(f"the IstioOperator to install is not valid:\n{exc}\n{outcome}")
        raise AssertionError from exc
    for warning in result.warnings:
        if not warning.path.startswith(_INSTALL_FIELDS):
            click.echo(f"Warning: IstioOperator {warning}", err=True)
    return body


def _proxy_names(items: list[dict[str, Any]]) -> set[str]:
    return {f"{p.get('pod_name')}.{p.get('namespace')}" for p in items}


def connected_proxies(api: str, data_dir: Path) -> set[str]:
    """The proxies connected to a running control plane (empty when none runs)."""
    import httpx

    from pilotfish.cli.client import ApiClient
    from pilotfish.errors import PilotfishError

    token_file = data_dir / "admin-token"
    if not token_file.is_file():
        return set()
    try:
        with ApiClient(api, token_file.read_text().strip(), timeout=3.0) as client:
            return _proxy_names(client.proxy_status())
    except (PilotfishError, OSError, httpx.HTTPError):
        return set()


def _await_reconnect(client: Any, expected: set[str]) -> None:
    """After a control-plane restart, wait for the proxies that were connected to return."""
    import time

    deadline = time.monotonic() + SYNC_TIMEOUT
    missing = expected
    while time.monotonic() < deadline:
        missing = expected - _proxy_names(client.proxy_status())
        if not missing:
            return
        time.sleep(0.2)
    _fail(
        "these proxies did not reconnect to the control plane within "
        f"{SYNC_TIMEOUT:g}s: {', '.join(sorted(missing))}"
    )


def _apply_operator(api: str, data_dir: Path, body: dict[str, Any], expected: set[str]) -> None:
    """Store the operator, wait until every proxy has its mesh config (as `apply --wait`), and
    name any other IstioOperator that overlays it."""
    from pilotfish.api import kinds
    from pilotfish.cli.client import ApiClient
    from pilotfish.cli.wait_cmd import wait_for_sync
    from pilotfish.errors import PilotfishError

    token = (data_dir / "admin-token").read_text().strip()
    with ApiClient(api, token) as client:
        try:
            result = client.apply([body], [], None, False)
        except PilotfishError as exc:
            _fail(f"the mesh is up, but its IstioOperator was not applied:\n{exc}")
        item = result["items"][0]
        click.echo(f"IstioOperator {item['namespace']}/{item['name']} {item['result']}")
        _await_reconnect(client, expected)
        revision = int(result.get("revision") or 0)
        if revision and wait_for_sync(client, revision, SYNC_TIMEOUT):
            _fail(f"not every proxy took the mesh config of revision {revision} (see above)")
        info = kinds.by_kind("IstioOperator")
        others = [
            o["metadata"]
            for o in client.list_objects(info, None).get("items") or []
            if (o["metadata"].get("namespace"), o["metadata"]["name"])
            != ("istio-system", "installed-state")
            and (o.get("spec") or {}).get("meshConfig")
        ]
        for meta in others:
            click.echo(
                f"Warning: IstioOperator {meta.get('namespace')}/{meta['name']} also sets "
                "meshConfig and overlays the installed profile's (IstioOperators apply in "
                "namespace/name order); remove it with `pilotfish delete istiooperator "
                f"{meta['name']} -n {meta.get('namespace')}` if the profile should decide",
                err=True,
            )


@click.command("install", context_settings=CONTEXT_SETTINGS)
@up_options
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    help="IstioOperator file(s) laid over the profile (as `istioctl install -f`).",
)
@click.option(
    "-s",
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="profile=default|demo|minimal|empty, meshConfig.*, values.*, components.*, "
    "addonComponents.* (repeatable; unknown keys are refused).",
)
@click.option("-y", "--skip-confirmation", "yes", is_flag=True, help="Do not ask first.")
def install(files: tuple[str, ...], sets: tuple[str, ...], yes: bool, **opts: Any) -> None:
    """Install or reconcile the local mesh with a profile, as `istioctl install`.

    The profile decides which parts run (ingress and egress gateways, Prometheus, trace collector,
    dashboard) and the mesh defaults; `pilotfish profile dump demo` shows one. On a running
    mesh it reconciles: parts the profile leaves out are stopped, the others started, and the
    mesh config replaced. Needs root, as `up`.

    \b
    Examples:
      sudo pilotfish install --set profile=demo -y
      sudo pilotfish install --set profile=minimal --set meshConfig.accessLogFile=/dev/stdout
      sudo pilotfish install -f samples/operator/demo.yaml -y
    """
    from pilotfish.api.profiles import components_of

    body = build_operator(files, sets)
    spec = body["spec"]
    wanted = ", ".join(["control plane", "pod runtime", *components_of(spec).enabled()])
    if not yes:
        click.confirm(
            f'This will install the Pilotfish "{spec["profile"]}" profile ({wanted}) on this '
            "host. Proceed?",
            abort=True,
            err=True,
        )
    settings, mesh = reconcile(body, opts)
    click.echo(
        f'\n✔ Installation complete: profile "{spec["profile"]}" ({wanted})\n'
        f"{mesh_summary(settings, mesh)}\n"
        "Check it with `pilotfish verify-install`; stop it with `pilotfish down`."
    )


def reconcile(body: dict[str, Any], opts: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Start or reconcile the local mesh so that exactly ``body``'s components run, store it
    as the installed operator and wait until every proxy has its mesh config. ``opts`` are
    ``up``'s options (kept in the state directory for later reconciles, see
    :func:`~pilotfish.cli.runtime_cmds.save_up_options`)."""
    import yaml

    from pilotfish.api.profiles import components_of
    from pilotfish.cli.runtime_cmds import save_up_options

    comps = components_of(body["spec"])
    settings = mesh_settings(dict(comps.__dict__), **opts)
    data_dir, _ = _dirs(opts["data_dir"], opts["state_dir"])
    expected = connected_proxies(settings.api_url, data_dir)
    if not comps.ingress_gateway:
        expected.discard("istio-ingressgateway.istio-system")
    if not comps.egress_gateway:  # its pod goes with it
        expected = {
            p
            for p in expected
            if not (p.startswith("istio-egressgateway-") and p.endswith(".istio-system"))
        }
    mesh = start_mesh(settings)
    save_up_options(settings, opts)
    state = data_dir / INSTALLED_STATE
    state.write_text(yaml.safe_dump(body, sort_keys=False))
    _apply_operator(str(mesh["api"]), data_dir, body, expected)
    return settings, mesh


@click.group("profile", context_settings=CONTEXT_SETTINGS)
def profile() -> None:
    """Install profiles, as `istioctl profile`: list, dump."""


@profile.command("list")
def profile_list() -> None:
    """The profiles `pilotfish install --set profile=NAME` takes."""
    from pilotfish.api.profiles import PROFILES, components_of, profile_operator

    click.echo("Pilotfish configuration profiles:")
    for name in PROFILES:
        comps = components_of(profile_operator(name)["spec"])
        click.echo(f"    {name:<8}  {', '.join(comps.enabled()) or '(control plane only)'}")


@profile.command("dump")
@click.argument("name", default="default")
@click.option("-f", "--filename", "files", multiple=True, help="IstioOperator file(s) over it.")
@click.option("-s", "--set", "sets", multiple=True, metavar="KEY=VALUE", help="As install's.")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True)  # fmt: skip
def profile_dump(name: str, files: tuple[str, ...], sets: tuple[str, ...], output: str) -> None:
    """The IstioOperator of profile NAME (with -f/--set laid over it, as install would)."""
    import json

    import yaml

    body = build_operator(files, (f"profile={name}", *sets), outcome="nothing was dumped")
    if output == "json":
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo(yaml.safe_dump(body, sort_keys=False), nl=False)
