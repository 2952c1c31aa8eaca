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


def parse_timeout(text: str) -> float:
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: {exc} (e.g. 30s, 2m)") from None


@click.command("wait")
@click.option("--for", "condition", type=click.Choice(["synced"]), required=True,
              help="synced: every connected proxy acknowledged the config revision.")  # fmt: skip
@click.option("--revision", type=int, help="The config revision (default: the current one).")
@click.option("--timeout", default="30s", show_default=True, help="How long to wait (30s, 2m).")
@click.pass_obj
def wait_cmd(g: Any, condition: str, revision: int | None, timeout: str) -> None:
    """Wait until every proxy has acknowledged a config revision.

    Returns when every connected Envoy runs the config generated from the revision (the
    current one by default; `pilotfish apply` and `pilotfish get -o yaml` show revisions),
    or exits 1 naming each proxy that rejected it (NACKED, with Envoy's error) or did not
    answer within --timeout. `pilotfish apply --wait` does the same after applying.

    \b
    Examples:
      pilotfish wait --for=synced
      pilotfish wait --for=synced --revision 42 --timeout 1m
      pilotfish apply -f samples/bookinfo/networking/virtual-service-all-v1.yaml --wait
    """
    seconds = parse_timeout(timeout)
    with g.client() as client:
        code = wait_for_sync(client, revision, seconds)
    raise SystemExit(code)
