"""``pilotfish token`` and ``pilotfish audit``: who may use the API, and what they changed.

- API tokens have a role: ``admin`` (everything) or ``read-only`` (get, list and watch;
  never Secrets). ``pilotfish token create NAME --role read-only`` prints the secret once;
  the control plane keeps only its digest. ``token list`` and ``token delete NAME``.
- Workload tokens (``--service-account``) go to a sidecar on another host (``pilotfish proxy
  --token-file``): with one the proxy's agent gets a mesh certificate for
  ``spiffe://<trust domain>/ns/NS/sa/SA`` and nothing else; the HTTP API refuses them.
- ``pilotfish audit`` prints the audit log: every change made through the API, by whom (the
  token's name and role), when, and the config revision it produced.
"""

from __future__ import annotations

import json
from typing import Any

import click

from pilotfish.api.duration import parse_duration
from pilotfish.api.kinds import API_TOKENS_PATH, AUDIT_PATH, token_path
from pilotfish.cli import output
from pilotfish.errors import PilotfishError

ROLES = ("admin", "read-only", "workload")


def ttl_seconds(text: str) -> int:
    """``--ttl`` as whole seconds (Istio-style durations: ``24h``, ``90m``, ``3600s``)."""
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--ttl") from None
    if seconds < 1:
        raise click.BadParameter("must be at least 1s", param_hint="--ttl")
    return int(seconds)


def _call(ctx: click.Context, method: str, path: str, **kw: Any) -> Any:
    g = ctx.find_root().obj
    try:
        with g.client() as client:
            return client.request(method, path, **kw)
    except PilotfishError as e:
        for line in str(e).splitlines() or [""]:
            click.echo(f"error: {line}", err=True)
        ctx.exit(1)


@click.group("token", context_settings={"help_option_names": ["-h", "--help"]})
def token() -> None:
    """API tokens with a role, and workload tokens for sidecars outside the local runtime."""


@token.command("create")
@click.argument("name", required=False)
@click.option(
    "--role", type=click.Choice(ROLES), default=None,
    help="admin or read-only: an API token named NAME; workload (the default with "
    "--service-account): a token for the mesh CA.",
)  # fmt: skip
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--service-account", help="A workload token for this service account.")
@click.option(
    "--workload-group", metavar="NAME",
    help="Bind the workload token to the WorkloadGroup NAME of --namespace: an agent with it "
    "may register into that group (`pilotfish proxy --workload-group NAME`) and no other.",
)  # fmt: skip
@click.option("--ttl", default="24h", show_default=True, help="How long a workload token lasts.")
@click.option(
    "-o", "--output", "fmt", type=click.Choice(["token", "json"]), default="token",
    show_default=True, help="token: the secret alone (for a file); json: the whole answer.",
)  # fmt: skip
@click.pass_context
def create(
    ctx: click.Context,
    name: str | None,
    role: str | None,
    namespace: str,
    service_account: str | None,
    workload_group: str | None,
    ttl: str,
    fmt: str,
) -> None:
    """Create an API token NAME with a role, or a workload token.

    \b
    Examples:
      pilotfish token create ci-viewer --role read-only > viewer.token
      pilotfish --token "$(cat viewer.token)" get virtualservices
      pilotfish token create -n default --service-account bookinfo-reviews > reviews.token
      pilotfish proxy --token-file reviews.token --service-account bookinfo-reviews ...
    """
    if service_account or role == "workload":
        if not service_account:
            raise click.UsageError("--role workload needs --service-account")
        if role not in (None, "workload"):
            raise click.UsageError(f"--service-account makes a workload token, not role {role}")
        if name:
            raise click.UsageError("a workload token is named by --service-account, not NAME")
        body: dict[str, Any] = {"spec": {"expirationSeconds": ttl_seconds(ttl)}}
        if workload_group:
            body["spec"]["boundObjectRef"] = {
                "apiVersion": "networking.istio.io/v1",
                "kind": "WorkloadGroup",
                "name": workload_group,
            }
        result = _call(ctx, "POST", token_path(namespace, service_account), json=body)
        secret = result["status"]["token"]
    else:
        if workload_group:
            raise click.UsageError("--workload-group is for workload tokens (--service-account)")
        if not name or not role:
            raise click.UsageError(
                "give NAME and --role admin|read-only (or --service-account for a workload token)"
            )
        result = _call(ctx, "POST", API_TOKENS_PATH, json={"name": name, "role": role})
        secret = result["token"]
    click.echo(json.dumps(result, indent=2) if fmt == "json" else secret)


@token.command("list")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json", "yaml"]),
              default="table")  # fmt: skip
@click.pass_context
def list_cmd(ctx: click.Context, fmt: str) -> None:
    """The API tokens: name, role, when and by whom created (never their secrets)."""
    items = _call(ctx, "GET", API_TOKENS_PATH)["items"]
    if fmt != "table":
        click.echo(output.dump({"kind": "ApiTokenList", "items": items}, fmt))
        return
    rows = [["NAME", "ROLE", "CREATED", "CREATED BY"]]
    rows += [[t["name"], t["role"], t["created"], t["createdBy"]] for t in items]
    click.echo(output.table(rows))


@token.command("delete")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def delete(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Revoke API tokens: requests with them get 401 from then on."""
    for name in names:
        _call(ctx, "DELETE", f"{API_TOKENS_PATH}/{name}")
        click.echo(f'token "{name}" deleted')


def _objects(entry: dict[str, Any]) -> str:
    names = []
    for o in entry.get("objects") or []:
        ns = f"{o['namespace']}/" if o.get("namespace") else ""
        step = f" ({o['step']})" if o.get("step") else ""  # a root rotation's step
        names.append(f"{o.get('kind', '')}/{ns}{o.get('name', '')}{step}")
    return ", ".join(names) if len(names) <= 3 else ", ".join(names[:3]) + f" (+{len(names) - 3})"


@click.command("audit", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Show the newest N entries.")  # fmt: skip
@click.option("--after", type=click.IntRange(min=0), default=0,
              help="Only entries after this id (to follow the log).")  # fmt: skip
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json", "yaml"]),
              default="table")  # fmt: skip
@click.pass_context
def audit(ctx: click.Context, limit: int, after: int, fmt: str) -> None:
    """The audit log: every change made through the API, who made it, when, at which revision.

    Kept apart from the Events pods and controllers record (`pilotfish get events`).
    """
    items = _call(ctx, "GET", AUDIT_PATH, params={"limit": limit, "after": after})["items"]
    if fmt != "table":
        click.echo(output.dump({"kind": "AuditList", "items": items}, fmt))
        return
    rows = [["TIME", "USER", "ROLE", "VERB", "REVISION", "OBJECTS"]]
    rows += [
        [e["time"], e["user"], e["role"], e["verb"], str(e["revision"]), _objects(e)] for e in items
    ]
    click.echo(output.table(rows))


__all__ = ["audit", "create", "token", "ttl_seconds"]
