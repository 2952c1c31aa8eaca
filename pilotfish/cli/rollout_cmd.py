"""``pilotfish rollout``: kubectl's rollout verbs for Deployments.

- ``rollout restart deployment/NAME``: stamps the pod template with
  ``kubectl.kubernetes.io/restartedAt`` (as kubectl does), so the runtime rolls every pod:
  a new pod first, an old one removed once a new one is ready; a removed pod leaves the
  endpoints (pushed to every proxy) before its app is stopped, and its sidecar drains.
- ``rollout status deployment/NAME``: waits until every replica runs the current template
  and is ready, and no old pod is left.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click

from pilotfish.api import kinds
from pilotfish.errors import ApiError, PilotfishError

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def parse_target(target: str, name: str | None) -> str:
    """``deployment/NAME`` or ``deployment NAME`` -> NAME (only Deployments roll)."""
    kind, slash, rest = target.partition("/")
    if slash:
        if name:
            raise click.UsageError("give deployment/NAME or deployment NAME, not both")
        name = rest
    elif name is None:
        raise click.UsageError("give the Deployment as deployment/NAME")
    try:
        info = kinds.lookup(kind)
    except PilotfishError:
        info = None
    if info is None or info.kind != "Deployment":
        raise click.UsageError(f'rollout works on Deployments only, not "{kind}"')
    if not name:
        raise click.UsageError("the Deployment's name is missing")
    return name


def restarted(body: dict[str, Any], when: str) -> dict[str, Any]:
    """``body`` with its pod template stamped ``restartedAt: when``. Pure."""
    spec = body.setdefault("spec", {})
    template = spec.setdefault("template", {})
    meta = template.setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    meta["annotations"] = {**annotations, RESTARTED_AT: when}
    return body


def rolled_out(body: dict[str, Any]) -> tuple[bool, str]:
    """Whether a Deployment's status shows the rollout done, and what is still waited for."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    wanted = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    generation = int((body.get("metadata") or {}).get("generation") or 1)
    if int(status.get("observedGeneration") or 0) < generation:
        return False, "waiting for the runtime to see the new template"
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    if updated < wanted:
        return False, f"{updated} of {wanted} new replicas have been updated"
    if total > updated:
        return False, f"{total - updated} old replicas are pending termination"
    if ready < wanted:
        return False, f"{ready} of {wanted} updated replicas are available"
    return True, "successfully rolled out"


@click.group("rollout", context_settings={"help_option_names": ["-h", "--help"]})
def rollout() -> None:
    """Manage the rollout of a Deployment, as `kubectl rollout`: restart, status."""


@rollout.command("restart")
@click.argument("target")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default=None, help="The Deployment's namespace.")
@click.pass_context
def restart(ctx: click.Context, target: str, name: str | None, namespace: str | None) -> None:
    """Restart every pod of a Deployment, one by one, without dropping a request.

    \b
    Example:
      pilotfish rollout restart deployment/reviews-v1 -n bookinfo
    """
    dep = parse_target(target, name)
    info = kinds.by_kind("Deployment")
    ns = namespace or "default"
    g = ctx.find_root().obj
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        with g.client() as client:
            for attempt in range(5):
                body = restarted(client.get(info, ns, dep), when)
                try:
                    client.put(info, body)  # carries resourceVersion: no lost update
                    break
                except ApiError as e:
                    if e.status != 409 or attempt == 4:
                        raise
    except PilotfishError as e:
        for line in str(e).splitlines() or [""]:
            click.echo(f"error: {line}", err=True)
        ctx.exit(1)
    click.echo(f"deployment.apps/{dep} restarted")


@rollout.command("status")
@click.argument("target")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default=None, help="The Deployment's namespace.")
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds to wait before giving up (exit 1).")  # fmt: skip
@click.pass_context
def status(
    ctx: click.Context, target: str, name: str | None, namespace: str | None, timeout: float
) -> None:
    """Wait until a Deployment's rollout is done, as `kubectl rollout status`."""
    dep = parse_target(target, name)
    info = kinds.by_kind("Deployment")
    ns = namespace or "default"
    g = ctx.find_root().obj
    deadline = time.monotonic() + timeout
    last = ""
    try:
        with g.client() as client:
            while True:
                done, message = rolled_out(client.get(info, ns, dep))
                if message != last:
                    if done:
                        click.echo(f'deployment "{dep}" {message}')
                    else:
                        click.echo(
                            f'Waiting for deployment "{dep}" rollout to finish: {message}...'
                        )
                    last = message
                if done:
                    return
                if time.monotonic() > deadline:
                    click.echo(f"error: timed out waiting for the rollout of {dep}", err=True)
                    ctx.exit(1)
                time.sleep(0.5)
    except PilotfishError as e:
        click.echo(f"error: {e}", err=True)
        ctx.exit(1)


__all__ = ["RESTARTED_AT", "parse_target", "restarted", "rolled_out", "rollout"]
