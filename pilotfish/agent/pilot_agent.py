"""``pilot-agent request METHOD PATH``: one request to the Envoy admin of the proxy it runs
beside, as Istio's ``pilot-agent request`` (the tutorials' ``kubectl exec POD -c istio-proxy --
pilot-agent request GET stats``). Run inside the pod: ``pilotfish exec POD -c istio-proxy --
pilot-agent request GET stats``."""

from __future__ import annotations

import sys

import click
import httpx

from pilotfish.api.mesh import ADMIN_PORT


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The sidecar's helper commands, as Istio's pilot-agent."""


@main.command("request")
@click.argument("method", type=click.Choice(["GET", "POST"], case_sensitive=False))
@click.argument("path")
@click.option("--debug-port", default=ADMIN_PORT, show_default=True, help="Envoy's admin port.")
def request(method: str, path: str, debug_port: int) -> None:
    """Send METHOD PATH to Envoy's admin on 127.0.0.1 and print the answer.

    \b
    Examples:
      pilot-agent request GET stats
      pilot-agent request GET 'stats?filter=^cluster_manager'
      pilot-agent request POST 'logging?level=debug'
      pilot-agent request GET config_dump
    """
    url = f"http://127.0.0.1:{debug_port}/{path.lstrip('/')}"
    try:
        resp = httpx.request(method.upper(), url, timeout=15, trust_env=False)
    except httpx.HTTPError as exc:
        click.echo(
            f"error: Envoy admin at 127.0.0.1:{debug_port} is not reachable: {exc}", err=True
        )
        sys.exit(1)
    sys.stdout.write(resp.text)
    if resp.status_code >= 400:
        sys.exit(1)
