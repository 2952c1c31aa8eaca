"""Workload token issuance over the HTTP API (the admin token is required, as everywhere).

::

    POST /apis/pilotfish.io/v1/namespaces/{namespace}/serviceaccounts/{name}/token
         {"spec": {"expirationSeconds": 86400,           (body optional; 24 h by default)
                   "boundObjectRef": {"kind": "WorkloadGroup", "name": "vmapp"}}}
    ->   {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
          "metadata": {"name": ..., "namespace": ...},
          "status": {"token": "...", "expirationTimestamp": "2026-01-01T00:00:00Z"}}

The shape is Kubernetes' TokenRequest. The token proves ``namespace``/``name`` to the mesh
CA (``pilotfish proxy --token-file``); it is not an API credential. Bound to a WorkloadGroup
(``boundObjectRef``, as Kubernetes binds a token to an object), it also lets an agent register
into that group, and into no other (``pilotfish x workload entry configure`` asks for one).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiohttp import web

from pilotfish.api.kinds import TOKEN_ROUTE
from pilotfish.apiserver.status import status_body


class Issued(Protocol):
    @property
    def token(self) -> str: ...

    @property
    def expires_at(self) -> datetime: ...


TokenIssuer = Callable[[str, str, timedelta | None, str], Issued]

#: The one kind a workload token can be bound to.
BOUND_KIND = "WorkloadGroup"


def requested_ttl(body: Any) -> timedelta | None:
    """``spec.expirationSeconds`` (or ``expirationSeconds``) of a request body, if any."""
    if body in (None, ""):
        return None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    spec: dict[str, Any] = body["spec"] if isinstance(body.get("spec"), dict) else body
    seconds = spec.get("expirationSeconds")
    if seconds is None:
        return None
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise ValueError("spec.expirationSeconds: must be an integer")
    return timedelta(seconds=seconds)


def bound_group(body: Any) -> str:
    """The WorkloadGroup named by ``spec.boundObjectRef`` of a request body, or ``""``."""
    if not isinstance(body, dict):
        return ""
    spec: dict[str, Any] = body["spec"] if isinstance(body.get("spec"), dict) else body
    ref = spec.get("boundObjectRef")
    if ref is None:
        return ""
    if not isinstance(ref, dict):
        raise ValueError("spec.boundObjectRef: must be an object")
    if ref.get("kind") != BOUND_KIND:
        raise ValueError(
            f"spec.boundObjectRef.kind: a workload token can be bound to a {BOUND_KIND} only, "
            f"not {ref.get('kind')!r}"
        )
    name = ref.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("spec.boundObjectRef.name: required")
    return name


def token_response(namespace: str, name: str, issued: Issued) -> dict[str, Any]:
    expires = issued.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace},
        "status": {"token": issued.token, "expirationTimestamp": expires},
    }


def add_token_routes(app: web.Application, issue: TokenIssuer) -> None:
    """Serve token issuance on ``app`` (before it starts; behind its auth middleware)."""

    async def handler(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        raw = await request.text()
        try:
            body = json.loads(raw) if raw.strip() else None
            issued = issue(ns, name, requested_ttl(body), bound_group(body))
        except (ValueError, json.JSONDecodeError) as e:
            what = f'ServiceAccount "{name}" in namespace "{ns}": token'
            return web.json_response(status_body(422, "Invalid", f"{what}: {e}"), status=422)
        return web.json_response(token_response(ns, name, issued), status=201)

    app.router.add_post(TOKEN_ROUTE, handler)


__all__ = ["add_token_routes", "bound_group", "requested_ttl", "token_response"]
