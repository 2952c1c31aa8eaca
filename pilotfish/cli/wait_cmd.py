"""`pilotfish wait --for=synced` and `apply --wait`: return when every connected proxy has
acknowledged a config revision; fail naming each proxy that rejected it (with Envoy's error)
or did not answer in time.

A proxy is done with revision N when its latest config was generated from revision N or later
(``config_revision`` in the proxy status) and nothing is in flight to it (``synced``): it
ACKed every type, or NACKed some (then it runs its previous config for those). Every config
change regenerates every proxy's config, so every connected proxy is affected; one whose
config did not change is done as soon as the control plane has compared it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import click

from pilotfish.api.duration import parse_duration

TYPES = ("CDS", "LDS", "EDS", "RDS")


@dataclass
class Verdict:
    acked: list[str] = field(default_factory=list)
    #: "POD.NAMESPACE: CDS rejected: <Envoy's error>"
    nacked: list[str] = field(default_factory=list)
    #: "POD.NAMESPACE: <why it is not done yet>"
    pending: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.pending


def _nack_error(st: dict[str, Any] | None) -> str:
    return str(((st or {}).get("last_nack") or {}).get("error", ""))


def evaluate(items: list[dict[str, Any]], revision: int) -> Verdict:
    """Where each proxy of a proxy-status listing stands with ``revision``."""
    v = Verdict()
    for p in sorted(items, key=lambda p: (p.get("namespace", ""), p.get("pod_name", ""))):
        name = f"{p.get('pod_name')}.{p.get('namespace')}"
        at = p.get("config_revision")
        failed = p.get("generation_error")
        if failed and (at is None or int(at) < revision):
            v.nacked.append(
                f"{name}: the control plane could not generate its config "
                f"({failed.get('error')}); it keeps its previous config"
            )
            continue
        if at is None or int(at) < revision:
            v.pending.append(f"{name}: has not received revision {revision} (at {at or 'none'})")
            continue
        if not p.get("synced"):
            waiting = [
                t
                for t, st in sorted((p.get("types") or {}).items())
                if str((st or {}).get("state", "")).startswith("STALE")
            ]
            v.pending.append(
                f"{name}: did not acknowledge revision {revision}"
                + (f" ({', '.join(waiting)} sent, no answer)" if waiting else " (push in progress)")
            )
            continue
        # A sidecar's virtual hosts over VHDS are its routes: a rejection shows as RDS (as
        # in proxy-status's RDS column), naming VHDS after Envoy's error.
        errors = [
            f"RDS rejected: {_nack_error(st)} (virtual hosts over VHDS)"
            if t == "VHDS"
            else f"{t} rejected: {_nack_error(st)}"
            for t, st in sorted((p.get("types") or {}).items())
            if (st or {}).get("state") == "NACKED"
        ]
        if errors:
            v.nacked.append(f"{name}: " + "; ".join(errors))
        else:
            v.acked.append(name)
    return v


def wait_for_sync(client: Any, revision: int | None, timeout_s: float) -> int:
    """Poll the proxy status until every proxy is done with ``revision`` (default: the current
    one) or ``timeout_s`` passes; print the outcome; the exit code (0 only if all ACKed)."""
    if revision is None:
        revision = int(client.request("GET", "/version")["revision"])
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        verdict = evaluate(client.proxy_status(), revision)
        if verdict.done or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    took = time.monotonic() - start
    total = len(verdict.acked) + len(verdict.nacked) + len(verdict.pending)
    if verdict.done and not verdict.nacked:
        click.echo(
            f"revision {revision} acknowledged by {len(verdict.acked)} of {total} proxies "
            f"in {took:.1f}s"
        )
        return 0
    for line in verdict.nacked:
        click.echo(f"NACKED: {line}", err=True)
    for line in verdict.pending:
        click.echo(f"NO ANSWER: {line}", err=True)
    click.echo(
        f"error: revision {revision}: {len(verdict.acked)} of {total} proxies acknowledged it, "
        f"{len(verdict.nacked)} rejected it, {len(verdict.pending)} did not answer within "
        f"{timeout_s:g}s",
        err=True,
    )
    return 1


def stored_revision(client: Any, bodies: list[dict[str, Any]], namespace: str | None) -> int:
    """The config revision that holds every object of ``bodies`` as stored: the highest
    ``metadata.resourceVersion`` (each object's last write). An object that is not stored
    fails, naming it: there is no revision to wait for."""
    from pilotfish.api import kinds
    from pilotfish.cli.addons_cmd import is_addon_operator
    from pilotfish.errors import ApiError, UnknownKindError

    revision = 0
    missing: list[str] = []
    for body in bodies:
        kind = str(body.get("kind", ""))
        meta = body.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        name, ns = str(meta.get("name", "")), meta.get("namespace") or namespace or "default"
        if is_addon_operator(body):  # samples/addons: laid over the installed operator
            name, ns = "installed-state", "istio-system"
        try:
            info = kinds.by_kind(kind)
        except UnknownKindError:
            missing.append(f"{kind or '(no kind)'} {ns}/{name}: not a kind Pilotfish serves")
            continue
        label = f"{kind} {ns}/{name}" if info.namespaced else f"{kind} {name}"
        try:
            stored = client.get(info, ns, name)
        except ApiError as e:
            if e.status != 404:
                raise
            missing.append(f"{label}: not stored (apply it first)")
            continue
        rv = str((stored.get("metadata") or {}).get("resourceVersion") or "0")
        revision = max(revision, int(rv) if rv.isdigit() else 0)
    if missing:
        for line in missing:
            click.echo(f"error: {line}", err=True)
        raise SystemExit(1)
    return revision


def parse_timeout(text: str) -> float:
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: {exc} (e.g. 30s, 2m)") from None


@click.command("wait")
@click.option("--for", "condition", type=click.Choice(["synced"]), required=True,
              help="synced: every connected proxy acknowledged the config revision.")  # fmt: skip
@click.option("--revision", type=int, help="The config revision (default: the current one).")
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    help="Wait for the revision that stored these objects (FILE, DIR or -), as applied.",
)
@click.option("-n", "--namespace", default=None, help="Namespace of objects without one.")
@click.option("--timeout", default="30s", show_default=True, help="How long to wait (30s, 2m).")
@click.pass_obj
def wait_cmd(
    g: Any,
    condition: str,
    revision: int | None,
    files: tuple[str, ...],
    namespace: str | None,
    timeout: str,
) -> None:
    """Wait until every proxy has acknowledged a config revision.

    Returns when every connected Envoy runs the config generated from the revision (the
    current one by default; `pilotfish apply` and `pilotfish get -o yaml` show revisions),
    or exits 1 naming each proxy that rejected it (NACKED, with Envoy's error) or did not
    answer within --timeout. `pilotfish apply --wait` does the same after applying.

    With -f, the revision is the one that stored the file's objects (the latest write of any
    of them, their metadata.resourceVersion); an object of the file that is not stored fails.

    \b
    Examples:
      pilotfish wait --for=synced
      pilotfish wait --for=synced --revision 42 --timeout 1m
      pilotfish wait --for=synced -f samples/bookinfo/networking/virtual-service-all-v1.yaml
      pilotfish apply -f samples/bookinfo/networking/virtual-service-all-v1.yaml --wait
    """
    seconds = parse_timeout(timeout)
    if files and revision is not None:
        raise click.UsageError("give either -f or --revision, not both")
    with g.client() as client:
        if files:
            from pilotfish.config.loader import load_documents

            docs = load_documents(list(files), stdin=sys.stdin)
            revision = stored_revision(client, [d.body for d in docs], namespace)
        code = wait_for_sync(client, revision, seconds)
    raise SystemExit(code)
