"""``pilotfish token create``: a workload token for one namespace and service account.

The token goes to a sidecar on another host (``pilotfish proxy --token-file``); with it the
proxy's agent gets a mesh certificate for ``spiffe://<trust domain>/ns/NS/sa/SA`` and nothing
else. Issued by the control plane through its HTTP API (admin token required).
"""

from __future__ import annotations

import json
import sys

import click

from pilotfish.api.duration import parse_duration
from pilotfish.api.kinds import token_path
from pilotfish.cli.client import ApiClient
from pilotfish.contextfile import load_context
from pilotfish.errors import PilotfishError


def ttl_seconds(text: str) -> int:
    """``--ttl`` as whole seconds (Istio-style durations: ``24h``, ``90m``, ``3600s``)."""
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--ttl") from None
    if seconds < 1:
        raise click.BadParameter("must be at least 1s", param_hint="--ttl")
    return int(seconds)


@click.group("token", context_settings={"help_option_names": ["-h", "--help"]})
def token() -> None:
    """Workload tokens for sidecars outside the local runtime."""


@token.command("create")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--service-account", required=True, help="The workload's service account.")
@click.option("--ttl", default="24h", show_default=True, help="How long the token is valid.")
@click.option(
    "-o", "--output", "fmt", type=click.Choice(["token", "json"]), default="token",
    show_default=True, help="token: the token alone (for a file); json: the TokenRequest.",
)  # fmt: skip
@click.pass_context
def create(ctx: click.Context, namespace: str, service_account: str, ttl: str, fmt: str) -> None:
    """Issue a token proving NAMESPACE/SERVICE_ACCOUNT to the mesh CA.

    \b
    Example:
      pilotfish token create -n default --service-account bookinfo-reviews > reviews.token
      pilotfish proxy --token-file reviews.token --service-account bookinfo-reviews ...
    """
    body = {"spec": {"expirationSeconds": ttl_seconds(ttl)}}
    g = ctx.find_root().obj
    server = getattr(g, "server", None)
    api_token = getattr(g, "token", None)
    context = load_context(getattr(g, "context", None))
    server = server or (context.server if context else None)
    api_token = api_token or (context.token if context else None)
    if not server:
        click.echo("error: no control plane configured (start `pilotfish server`)", err=True)
        sys.exit(1)
    try:
        with ApiClient(server, api_token or "") as client:
            result = client.request("POST", token_path(namespace, service_account), json=body)
    except PilotfishError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    if fmt == "json":
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(result["status"]["token"])


__all__ = ["create", "token", "ttl_seconds"]
