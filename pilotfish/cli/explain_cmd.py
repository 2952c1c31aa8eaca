"""`pilotfish x explain --from POD [METHOD] URL [-H header]...`: how the mesh would handle one
request, without sending it.

The control plane walks the request through the Envoy config it generates for the pod's proxy
(listener, filter chain, route configuration, virtual host, route, cluster, endpoints,
timeout, retries, faults, mirrors) and then through the inbound config of each destination
proxy (mTLS or plaintext, JWT authentication, AuthorizationPolicy RBAC filters with the
policy and rule that decided); see ``pilotfish.translate.explain``. This module only asks
(``POST .../proxies/POD/explain``) and prints: :func:`render` is pure.
"""

from __future__ import annotations

from typing import Any

import click

from pilotfish.cli import output

__all__ = ["explain_cmd", "parse_header", "render"]

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")


def parse_header(text: str) -> tuple[str, str]:
    """``name: value`` (curl's ``-H``) -> (lowercased name, value)."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(
            f'"{text}": write NAME: VALUE, e.g. "end-user: jason"', param_hint="-H"
        )
    return name.strip().lower(), value.strip()


def _detail(step: dict[str, Any]) -> str:
    skip = {"stage", "name"}
    parts = []
    for key, value in step.items():
        if key in skip or value in (None, "", [], {}):
            continue
        if isinstance(value, dict):
            inner = ", ".join(f"{k}={v}" for k, v in value.items())
            parts.append(f"{key}: {inner}")
        elif isinstance(value, list):
            items = [
                ", ".join(f"{k}={v}" for k, v in v.items()) if isinstance(v, dict) else str(v)
                for v in value
            ]
            parts.append(f"{key}: [" + "; ".join(items) + "]")
        else:
            parts.append(f"{key}: {value}")
    return ("  (" + "; ".join(parts) + ")") if parts else ""


def _verdict_line(v: dict[str, Any]) -> str:
    head = "UNDECIDED" if v.get("allowed") is None else "ALLOWED" if v["allowed"] else "DENIED"
    status = v.get("status")
    text = head + (f" {status}" if status else "")
    if v.get("reason"):
        text += f": {v['reason']}"
    if v.get("policy"):
        rule = v.get("rule")
        if v.get("allowed") is None:
            text += f" (CUSTOM policy {v['policy']}" + (
                f", rule {rule})" if rule is not None else ")"
            )
        else:
            text += f" by {v['policy']}" + (f" (rule {rule})" if rule is not None else "")
    return text


def render(result: dict[str, Any]) -> list[str]:
    """The explanation as lines a person reads, top to bottom as the request travels."""
    req = result.get("request") or {}
    lines = [f"{req.get('method', 'GET')} {req.get('url', '')} from {result.get('from', '')}"]
    for name, value in sorted((req.get("headers") or {}).items()):
        lines.append(f"  {name}: {value}")
    lines.append("Client proxy:")
    for step in result.get("client") or []:
        lines.append(f"  {step.get('stage')}: {step.get('name')}{_detail(step)}")
    dests = result.get("destinations") or []
    if dests:
        lines.append("Destination:")
        for d in dests:
            subset = d.get("subset") or "(no subset)"
            lines.append(f"  {d.get('cluster')}  subset {subset}  weight {d.get('weight')}%")
    for server in result.get("servers") or []:
        lines.append(f"Server proxy {server.get('proxy') or '(none)'} at {server.get('endpoint')}:")
        if server.get("note"):
            lines.append(f"  {server['note']}")
        for step in server.get("steps") or []:
            lines.append(f"  {step.get('stage')}: {step.get('name')}{_detail(step)}")
        if server.get("proxy"):
            lines.append(f"  => {_verdict_line(server)}")
    verdict = result.get("verdict") or {}
    subsets = ", ".join(s or "(no subset)" for s in verdict.get("subsets") or []) or "none"
    lines.append(f"Verdict: {_verdict_line(verdict)}; subsets: {subsets}")
    for fault in verdict.get("faults") or []:
        lines.append(f"  and {fault} (fault injection)")
    return lines


@click.command("explain")
@click.option(
    "--from", "source", required=True, metavar="POD", help="The client pod (POD or POD.NAMESPACE)."
)
@click.option("-n", "--namespace", default=None, help="The client pod's namespace.")
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="A request header, as curl's -H. Repeatable.",
)
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["text", "json", "yaml"]),
    default="text",
    show_default=True,
)
@click.argument("args", nargs=-1, required=True)
@click.pass_obj
def explain_cmd(
    g: Any,
    source: str,
    namespace: str | None,
    headers: tuple[str, ...],
    fmt: str,
    args: tuple[str, ...],
) -> None:
    """Explain how the mesh would handle a request from POD, without sending it.

    Walks [METHOD] URL through the Envoy config the control plane generates for the pod's
    proxy (listener, filter chain, route, virtual host, cluster, endpoints, timeout, retries,
    faults, mirror), then through each destination proxy's inbound config (mTLS mode, JWT
    authentication, AuthorizationPolicy verdict and the policy and rule that decided, or
    the ext_authz provider a CUSTOM policy sends it to). A bearer token in
    -H 'authorization: Bearer ...' is read, not verified. Both proxies must be connected (see
    `pilotfish proxy-status`). https://HOST/... is a TLS connection with HOST as SNI (a
    gateway's HTTPS servers); tcp://HOST:PORT a TCP connection (network RBAC).

    \b
    Examples:
      pilotfish x explain --from productpage-v1-abc http://reviews:9080/reviews/0
      pilotfish x explain --from productpage-v1-abc GET http://reviews:9080/ -H 'end-user: jason'
      pilotfish x explain --from sleep.default POST http://httpbin:8000/post -o json
      pilotfish x explain --from istio-ingressgateway.istio-system https://bookinfo.example.com/productpage
      pilotfish x explain --from sleep.default tcp://tcp-echo:9000
    """
    from pilotfish.cli.proxy_config import split_target

    if len(args) == 1:
        method, url = "GET", args[0]
    elif len(args) == 2:
        method, url = args[0].upper(), args[1]
        if method not in METHODS:
            raise click.BadParameter(
                f'"{args[0]}" is not an HTTP method ({", ".join(METHODS)})', param_hint="METHOD"
            )
    else:
        raise click.UsageError("give [METHOD] URL, e.g. GET http://reviews:9080/")
    ns, name = split_target(source, namespace)
    header_map = dict(parse_header(h) for h in headers)
    with g.client() as client:
        result = client.explain(ns, name, method, url, header_map)
    result.pop("kind", None)
    if fmt == "text":
        click.echo("\n".join(render(result)))
    else:
        click.echo(output.dump(result, fmt))
