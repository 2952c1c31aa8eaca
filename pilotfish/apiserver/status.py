"""Kubernetes-style ``Status`` bodies for API errors, built from Pilotfish errors."""

from __future__ import annotations

from typing import Any

from pilotfish.errors import (
    AlreadyExistsError,
    BodyTooLargeError,
    CompactedError,
    ConflictError,
    LoadError,
    NotFoundError,
    PilotfishError,
    UnknownKindError,
    ValidationError,
)


def status_body(
    code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if causes:
        body["details"] = {"causes": causes}
    return body


def error_status(err: PilotfishError) -> dict[str, Any]:
    """Map an error to (HTTP code, Status body)."""
    if isinstance(err, ValidationError):
        causes = [{"field": e.path, "message": e.reason} for e in err.errors]
        return status_body(422, "Invalid", str(err), causes)
    if isinstance(err, UnknownKindError):
        return status_body(404, "NotFound", str(err))
    if isinstance(err, NotFoundError):
        return status_body(404, "NotFound", str(err))
    if isinstance(err, AlreadyExistsError):
        return status_body(409, "AlreadyExists", str(err))
    if isinstance(err, ConflictError):
        return status_body(409, "Conflict", str(err))
    if isinstance(err, CompactedError):
        return status_body(410, "Expired", str(err))
    if isinstance(err, BodyTooLargeError):
        return status_body(413, "RequestEntityTooLarge", str(err))
    if isinstance(err, LoadError):
        return status_body(400, "BadRequest", str(err))
    return status_body(500, "InternalError", str(err))
