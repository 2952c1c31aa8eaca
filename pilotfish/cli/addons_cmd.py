"""Istio's ``samples/addons`` as the tutorials apply them: ``pilotfish apply -f samples/addons``
(or one of its files) starts the addon in the running local mesh, ``pilotfish delete -f``
stops it.

Each file of ``samples/addons/`` is an ``IstioOperator`` that sets nothing but
``spec.addonComponents`` (``prometheus``, ``tracing``, ``kiali``). Applying one lays it over the
installed operator (``istio-system/installed-state``, the one mesh config model ``install`` and
``--set`` use) and reconciles the mesh exactly as ``pilotfish install`` does, with the options
the mesh was started with: the part starts, and the installed operator records it, so a later
``up`` keeps it. Deleting it turns the same parts off and reconciles again. Starting or
stopping processes, pod network and all, needs root, as ``install`` does.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import click

__all__ = ["ADDONS", "addon_overlay", "apply_addons", "is_addon_operator"]

#: ``addonComponents`` keys, the part each starts and the command that opens it.
ADDONS = {
    "prometheus": ("prometheus", "open it: pilotfish dashboard prometheus"),
    "tracing": ("trace collector", "Jaeger's query API; traces: pilotfish dashboard jaeger"),
    "kiali": ("dashboard", "open it: pilotfish dashboard kiali"),
}
_PART_KEY = {"prometheus": "prometheus", "tracing": "trace_collector", "kiali": "dashboard"}


def is_addon_operator(body: dict[str, Any]) -> bool:
    """An IstioOperator that sets only addons (``samples/addons/*.yaml``). Pure."""
    spec = body.get("spec")
    if body.get("kind") != "IstioOperator" or not isinstance(spec, dict):
        return False
    addons = spec.get("addonComponents")
    return (
        set(spec) == {"addonComponents"}
        and isinstance(addons, dict)
        and bool(addons)
        and (set(addons) <= set(ADDONS))
    )


def addon_overlay(bodies: list[dict[str, Any]], enable: bool) -> dict[str, Any]:
    """The ``addonComponents`` to lay over the installed operator: each file's as written
    (``apply``), or every addon it names turned off (``delete``). Pure."""
    out: dict[str, Any] = {}
    for body in bodies:
        for key, value in body["spec"]["addonComponents"].items():
            on = isinstance(value, dict) and value.get("enabled") is True
            out[key] = {"enabled": on if enable else False}
    return {"addonComponents": out}


def _url(key: str, mesh: dict[str, Any]) -> str | None:
    if key == "prometheus":
        return str(mesh["prometheus_url"]) if mesh.get("prometheus") else None
    if key == "tracing":
        parts = mesh.get("components") or {}
        on = parts.get("trace collector", True)
        return f"http://127.0.0.1:{mesh.get('trace_query_port')}" if on else None
    return str(mesh["dashboard"]) if mesh.get("dashboard") else None


def apply_addons(bodies: list[dict[str, Any]], enable: bool, dry_run: bool = False) -> None:
    """Start (``enable``) or stop the addons ``bodies`` name in the running local mesh."""
    import yaml

    from pilotfish.api.profiles import components_of, install_operator, merge_spec
    from pilotfish.cli.install_cmd import reconcile
    from pilotfish.cli.runtime_cmds import INSTALLED_STATE, _dirs, _fail, load_up_options

    overlay = addon_overlay(bodies, enable)
    verb = "start" if enable else "stop"
    names = ", ".join(ADDONS[k][0] for k in overlay["addonComponents"])
    data_dir, state_dir = _dirs(None, None)
    if dry_run:
        click.echo(f"would {verb} {names} in the local mesh of {data_dir} (dry run)")
        return
    opts = load_up_options(state_dir)
    if opts is None:
        _fail(
            f"the addons ({names}) are parts of the local mesh, and no mesh that `pilotfish "
            f"up` or `install` started (recording its options in {state_dir}/up-options.json) "
            f"runs with data directory {data_dir}: start one with `sudo pilotfish install` "
            "(its demo and default profiles include them) or `sudo pilotfish up`"
        )
    if os.geteuid() != 0:
        _fail(
            f"to {verb} {names} the local mesh is reconciled, as `pilotfish install` does: "
            "run as root"
        )
    path = data_dir / INSTALLED_STATE
    if path.is_file():
        installed = dict(yaml.safe_load(path.read_text()) or {})
    else:  # a mesh `up` started without install runs the default profile's parts
        installed = install_operator(None, [])
    before = components_of(installed.get("spec") or {})
    body = copy.deepcopy(installed)
    body["spec"] = merge_spec(dict(installed.get("spec") or {}), overlay)
    after = components_of(body["spec"])
    assert opts is not None
    _, mesh = reconcile(body, opts)
    failed = False
    for key in overlay["addonComponents"]:
        part, command = ADDONS[key]
        was, now = getattr(before, _PART_KEY[key]), getattr(after, _PART_KEY[key])
        url = _url(key, mesh)
        if now and url is None:
            failed = True
            why = " (is the `prometheus` package installed? `pilotfish status`)"
            click.echo(f"{part} was NOT started{why if key == 'prometheus' else ''}", err=True)
        elif now:
            state = "running already" if was else "started"
            click.echo(f"{part} {state}: {url}   ({command})")
        else:
            click.echo(f"{part} {'stopped' if was else 'was not running'}")
    if failed:
        raise SystemExit(1)
