"""Workload token issuance over the HTTP API (the admin token is required, as everywhere).

::

    POST /apis/pilotfish.io/v1/namespaces/{namespace}/serviceaccounts/{name}/token
         {"spec": {"expirationSeconds": 86400}}          (body optional; 24 h by default)
    ->   {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
          "metadata": {"name": ..., "namespace": ...},
          "status": {"token": "...", "expirationTimestamp": "2026-01-01T00:00:00Z"}}

The shape is Kubernetes' TokenRequest. The token proves ``namespace``/``name`` to the mesh
CA (``pilotfish proxy --token-file``); it is not an API credential.
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


TokenIssuer = Callable[[str, str, timedelta | None], Issued]


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
            issued = issue(ns, name, requested_ttl(body))
        except (ValueError, json.JSONDecodeError) as e:
            what = f'ServiceAccount "{name}" in namespace "{ns}": token'
            return web.json_response(status_body(422, "Invalid", f"{what}: {e}"), status=422)
        return web.json_response(token_response(ns, name, issued), status=201)

    app.router.add_post(TOKEN_ROUTE, handler)


__all__ = ["add_token_routes", "requested_ttl", "token_response"]
