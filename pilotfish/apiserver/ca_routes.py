"""The mesh CA over the HTTP API: its status and the steps of a root rotation.

``GET /apis/pilotfish.io/v1/ca`` (any role that may read) answers the CA's roots, the rotation
step reached and what every workload watching the trust bundle trusts and is signed by.
``POST /apis/pilotfish.io/v1/ca/rotate-root`` with ``{"step": "add"|"activate"|"retire"}``
(admin) takes one step and answers the new status; ``pilotfish ca rotate-root`` drives the
three steps and waits for the workloads between them. Each step taken is recorded in the audit
log (verb ``rotate-root``, the root it added or that signs, and the step).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from pilotfish.api.kinds import CA_PATH, CA_ROTATE_ROOT_PATH
from pilotfish.apiserver.status import status_body
from pilotfish.identity.errors import RotationError

CaStatus = Callable[[], dict[str, Any]]
RotateRoot = Callable[[str], dict[str, Any]]
#: Records a change in the audit log: the request (its caller), the verb and the objects.
RecordChange = Callable[[web.Request, str, list[dict[str, str]]], None]


def step_object(step: str, answer: dict[str, Any]) -> dict[str, str]:
    """The audit log's object for a rotation step: the root added by ``add``, else the root
    that signs after the step. Pure."""
    roots = answer.get("roots") or []
    added = next((str(r["fingerprint"]) for r in roots if r.get("role") == "added"), "")
    signing = next((str(r["fingerprint"]) for r in roots if r.get("role") == "signing"), "")
    name = added if step == "add" and added else signing
    return {"kind": "MeshRoot", "namespace": "", "name": name, "step": step}


def add_ca_routes(
    app: web.Application, status: CaStatus, rotate: RotateRoot, record: RecordChange | None = None
) -> None:
    """Serve the CA's status and root rotation on ``app`` (before it starts; behind its auth
    middleware, which lets only the admin role POST). ``record``: audits each step taken."""

    async def get(request: web.Request) -> web.Response:
        return web.json_response(status())

    async def post(request: web.Request) -> web.Response:
        raw = await request.text()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as e:
            return web.json_response(
                status_body(400, "BadRequest", f"body: not JSON ({e})"), status=400
            )
        step = body.get("step") if isinstance(body, dict) else None
        if not isinstance(step, str):
            return web.json_response(
                status_body(
                    422, "Invalid", 'step: Required value: one of "add", "activate", "retire"'
                ),
                status=422,
            )
        try:
            # Key generation and file writes: off the event loop.
            answer = await asyncio.to_thread(rotate, step)
        except ValueError as e:
            return web.json_response(status_body(422, "Invalid", str(e)), status=422)
        except RotationError as e:  # a plug-in CA, steps out of order
            return web.json_response(
                status_body(409, "Conflict", f"root rotation: {e}"), status=409
            )
        if record is not None:
            record(request, "rotate-root", [step_object(step, answer)])
        return web.json_response(answer)

    app.router.add_get(CA_PATH, get)
    app.router.add_post(CA_ROTATE_ROOT_PATH, post)


__all__ = ["add_ca_routes"]
