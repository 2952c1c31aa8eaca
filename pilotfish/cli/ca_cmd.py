"""``pilotfish ca``: the mesh CA's roots, and rotating the root without a failed request.

- ``ca status``: the roots (which signs, which was just added, which is old), the rotation step
  reached, and for every workload watching the trust bundle the roots it trusts and the root
  its certificate is signed by.
- ``ca rotate-root``: Istio's root rotation in three steps, each waiting until every workload
  has followed before the next (``--step`` takes one step only; run again, it resumes where a
  rotation stopped).

The pure parts (:func:`progress`, :func:`next_steps`) are unit-tested; the command talks to
the control plane only through its HTTP API (``/apis/pilotfish.io/v1/ca``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import click

from pilotfish.api.duration import parse_duration
from pilotfish.api.kinds import CA_PATH, CA_ROTATE_ROOT_PATH, PROXY_STATUS_PATH
from pilotfish.cli.output import table
from pilotfish.cli.token_cmd import _call

STEPS = ("add", "activate", "retire")

#: What each step does, and what is waited for after it.
STEP_TEXT = {
    "add": (
        "a new root joins the trust bundle; the current root still signs",
        "every workload to trust the new root",
    ),
    "activate": (
        "the new root signs from now on (workloads renew at once); the old root is still trusted",
        "every workload to be re-issued under the new root",
    ),
    "retire": (
        "the old root leaves the trust bundle",
        "every workload to trust the new root only",
    ),
}


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    #: Nodes still waited for.
    lagging: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return self.done == self.total


def _fp(status: dict[str, Any], role: str) -> str:
    for root in status.get("roots") or []:
        if root.get("role") == role:
            return str(root.get("fingerprint") or "")
    return ""


def progress(status: dict[str, Any], step: str) -> Progress:
    """How many watching workloads have followed ``step`` (pure)."""
    signing = str(status.get("signingRoot") or "")
    added = _fp(status, "added")
    done: list[str] = []
    lagging: list[str] = []
    # Agents watching the trust bundle, and those whose proxy is connected while their watch
    # reconnects.
    workloads = [
        w for w in status.get("workloads") or [] if w.get("watching") or w.get("connected")
    ]
    for w in workloads:
        trusts = list(w.get("trusts") or [])
        if step == "add":
            ok = bool(added) and added in trusts
        elif step == "activate":
            ok = w.get("signedBy") == signing and signing in trusts
        else:
            ok = trusts == [signing] and w.get("signedBy") == signing
        (done if ok else lagging).append(str(w.get("node") or "?"))
    return Progress(len(done), len(workloads), tuple(lagging))


def next_steps(rotation: str, only: str | None) -> list[tuple[str, bool]]:
    """``(step, take it)`` pairs to go through from the rotation state ``rotation`` ("none",
    "added", "activated"); a step already taken is only waited for (pure)."""
    if only is not None:
        return [(only, True)]
    if rotation == "added":
        return [("add", False), ("activate", True), ("retire", True)]
    if rotation == "activated":
        return [("activate", False), ("retire", True)]
    return [(s, True) for s in STEPS]


def short(fingerprint: str) -> str:
    return fingerprint[:16] if fingerprint else "?"


@click.group("ca", context_settings={"help_option_names": ["-h", "--help"]})
def ca() -> None:
    """The mesh CA: its roots, and rotating the root under load (`ca rotate-root`)."""


@ca.command("status")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)  # fmt: skip
@click.pass_context
def status_cmd(ctx: click.Context, fmt: str) -> None:
    """Show the roots, the rotation step reached, and what each workload trusts.

    \b
    ROOT        the first 16 hex digits of its SHA-256 fingerprint
    ROLE        signing (signs new certificates), added (trusted, signs after `activate`),
                old (trusted until `retire`)
    Workloads are the sidecars and gateways whose agent watches the trust bundle.
    """
    status = _call(ctx, "GET", CA_PATH)
    if fmt == "json":
        click.echo(json.dumps(status, indent=2))
        return
    click.echo(f"mode: {status['mode']}, trust domain {status['trustDomain']}, "
               f"rotation: {status['rotation']}")  # fmt: skip
    roots = [["ROOT", "ROLE", "SERIAL", "NOT AFTER"]] + [
        [short(r["fingerprint"]), r["role"], r["serial"], r["notAfter"]]
        for r in status.get("roots") or []
    ]
    click.echo(table(roots))
    workloads = status.get("workloads") or []
    if not workloads:
        click.echo("no workload watches the trust bundle")
        return
    rows = [["WORKLOAD", "SIGNED BY", "TRUSTS"]] + [
        [
            w["node"],
            short(w.get("signedBy") or ""),
            ",".join(short(f) for f in w.get("trusts") or []),
        ]
        for w in workloads
    ]
    click.echo("\n" + table(rows))


@ca.command("rotate-root")
@click.option(
    "--step",
    type=click.Choice(STEPS),
    default=None,
    help="Take this one step only (default: every step left, waiting between them).",
)
@click.option(
    "--timeout",
    default="10m",
    show_default=True,
    help="How long to wait for the workloads after each step.",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="Take the step(s) without waiting for the workloads (only with --step).",
)
@click.pass_context  # fmt: skip
def rotate_root(ctx: click.Context, step: str | None, timeout: str, no_wait: bool) -> None:
    """Replace the mesh's root CA without a failed request, in Istio's three steps.

    \b
    1. add       a new root joins the trust bundle of every workload; the old root
                 still signs. Waits until every workload trusts both.
    2. activate  the new root signs: workloads renew at once, and the control
                 plane's own certificates (xDS, --api-tls) are re-issued under it.
                 Waits until every workload is signed by the new root.
    3. retire    the old root leaves the trust bundle. Waits until every workload
                 trusts the new root only.

    \b
    Workloads follow each step by themselves: their agents watch the CA's trust
    bundle and renew their certificate as soon as it changes. A rotation that
    stopped (timeout, Ctrl-C) resumes where it was when run again; `pilotfish ca
    status` shows the step reached and which workload lags.

    \b
    Examples:
      pilotfish ca rotate-root                  # all three steps
      pilotfish ca rotate-root --step add       # one step at a time
      pilotfish ca status

    Only a self-signed mesh CA (the default) is rotated this way; a plug-in CA
    (`pilotfish server --ca-dir` with Istio's cacerts) is rotated by replacing
    its files. See docs/security.md, "Root rotation".
    """
    if no_wait and step is None:
        raise click.UsageError("--no-wait needs --step (the steps must wait for each other)")
    try:
        limit = parse_duration(timeout)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--timeout") from None
    status = _call(ctx, "GET", CA_PATH)
    if status.get("mode") == "plug-in":
        click.echo("error: this mesh uses a plug-in CA (Istio's cacerts files): rotate it by "
                   "replacing ca-cert.pem, ca-key.pem, root-cert.pem (both roots) and "
                   "cert-chain.pem, then restarting the control plane", err=True)  # fmt: skip
        ctx.exit(1)
    plan = next_steps(str(status.get("rotation") or "none"), step)
    if step is None and status.get("rotation") in ("added", "activated"):
        click.echo(f"resuming the rotation (step reached: {status['rotation']})")
    for name, take in plan:
        number = STEPS.index(name) + 1
        does, waits = STEP_TEXT[name]
        if take:
            old = _fp(status, "signing")
            status = _call(ctx, "POST", CA_ROTATE_ROOT_PATH, json={"step": name})
            detail = ""
            if name == "add":
                detail = f" (new root {short(_fp(status, 'added'))})"
            elif name == "activate":
                detail = f" (root {short(status.get('signingRoot') or '')} signs)"
            elif name == "retire":
                detail = f" (root {short(old)} kept; old roots dropped)"
            click.echo(f"step {number}/3 {name}: {does}{detail}")
        else:
            click.echo(f"step {number}/3 {name}: already taken")
        if no_wait:
            continue
        status = _wait(ctx, name, waits, limit)
    if no_wait:
        click.echo("not waited for the workloads: see `pilotfish ca status`")
    elif step is None or step == "retire":
        total = progress(status, "retire").total
        click.echo(f"root rotation done: every workload ({total}) is signed by and trusts only "
                   f"root {short(status.get('signingRoot') or '')}")  # fmt: skip


def _wait(ctx: click.Context, step: str, what: str, limit: float) -> dict[str, Any]:
    click.echo(f"  waiting for {what} ...")
    start = time.monotonic()
    shown: tuple[int, int] | None = None
    while True:
        status = _call(ctx, "GET", CA_PATH)
        done = progress(status, step)
        if (done.done, done.total) != shown:
            shown = (done.done, done.total)
            click.echo(f"  {done.done}/{done.total} workloads ({time.monotonic() - start:.1f}s)")
        if done.complete:
            _check_connected(ctx, done.total)
            return status
        if time.monotonic() - start > limit:
            lag = ", ".join(done.lagging[:10])
            click.echo(f"error: not every workload followed the {step} step within the "
                       f"timeout: {lag}. Run `pilotfish ca rotate-root` again to resume, or "
                       "see `pilotfish ca status`.", err=True)  # fmt: skip
            ctx.exit(1)
        time.sleep(0.2)


def _check_connected(ctx: click.Context, watching: int) -> None:
    """Say so when proxies are connected that do not watch the trust bundle."""
    proxies = _call(ctx, "GET", PROXY_STATUS_PATH).get("items") or []
    if len(proxies) > watching:
        click.echo(f"  note: {len(proxies)} proxies are connected, {watching} watch the trust "
                   "bundle; the others have no workload certificate (plaintext only) or run "
                   "an agent that does not watch it, and are not counted")  # fmt: skip


__all__ = ["Progress", "ca", "next_steps", "progress"]
