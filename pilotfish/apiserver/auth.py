"""Who is calling the control-plane HTTP API, and what their role lets them do.

``pilotfish server`` creates an admin token in its data directory on first start
(``<data-dir>/admin-token``, mode 0600). Every API request except ``/healthz``, ``/ready``,
``/version`` and ``/metrics`` must carry ``Authorization: Bearer <token>``; no token or a
wrong one gets 401 and changes nothing.

Three kinds of bearer token are recognized, each with a role:

- the data directory's admin token: user ``admin``, role ``admin``;
- API tokens made with ``pilotfish token create --role admin|read-only NAME``, kept in the
  config store as a digest (see ``config.store.access``): user ``NAME``, their role;
- workload tokens (``pilotfish token create --service-account SA``): role ``workload``,
  user ``system:serviceaccount:NS:SA``. They prove a workload to the mesh CA and do nothing
  else: the HTTP API answers them 403.

Roles: ``admin`` may do everything; ``read-only`` may get, list and watch every kind except
Secrets, read proxy status and config, and read the audit log, and nothing else. A request
the role does not allow gets 403 naming the user, the role and what was refused.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pilotfish.api import kinds
from pilotfish.config.store.access import digest
from pilotfish.config.store.base import Store

TOKEN_FILE = "admin-token"
#: The user name of the data directory's admin token (reserved for API tokens).
ADMIN_USER = "admin"


def load_or_create_admin_token(data_dir: Path) -> str:
    """The admin token of this data directory, created (0600) on first call."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def new_secret() -> str:
    """The secret of a new API token (prefixed, so it is told apart from a workload JWT)."""
    return "pft_" + secrets.token_urlsafe(32)


def bearer(header: str | None) -> str | None:
    if not header or not header.startswith("Bearer "):
        return None
    return header[len("Bearer ") :].strip() or None


def token_matches(header: str | None, tokens: frozenset[str]) -> bool:
    """True when ``header`` is ``Bearer <t>`` for one of ``tokens`` (constant-time compare)."""
    given = bearer(header)
    if given is None:
        return False
    return any(hmac.compare_digest(given.encode(), t.encode()) for t in tokens)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    user: str
    role: str


#: Verifies a workload token: the (namespace, service account) it proves, or None.
WorkloadVerifier = Callable[[str], tuple[str, str] | None]


class Authenticator:
    """Bearer token -> :class:`Principal` (None: not a token of this control plane)."""

    def __init__(
        self,
        admin_tokens: frozenset[str],
        store: Store | None = None,
        workload: WorkloadVerifier | None = None,
    ) -> None:
        self.admin_tokens = admin_tokens
        self.store = store
        self.workload = workload

    def authenticate(self, header: str | None) -> Principal | None:
        given = bearer(header)
        if given is None:
            return None
        if any(hmac.compare_digest(given.encode(), t.encode()) for t in self.admin_tokens):
            return Principal(ADMIN_USER, "admin")
        if self.store is not None and given.startswith("pft_"):
            found = self.store.api_token(digest(given))
            if found is not None:
                return Principal(found.name, found.role)
            return None
        if self.workload is not None and given.count(".") == 2:
            proved = self.workload(given)
            if proved is not None:
                return Principal(f"system:serviceaccount:{proved[0]}:{proved[1]}", "workload")
        return None


def _verb(method: str, path: str) -> str:
    if path == kinds.APPLY_PATH:
        return "apply"
    if path == kinds.DELETE_PATH or method == "DELETE":
        return "delete"
    return {"GET": "get", "HEAD": "get", "PUT": "update", "POST": "create"}.get(method, method)


def forbidden(principal: Principal, method: str, path: str, kind_plural: str | None) -> str | None:
    """Why ``principal`` may not make this request (None: it may)."""
    who = f'user "{principal.user}" (role {principal.role})'
    verb = _verb(method, path)
    if principal.role == "admin":
        return None
    if principal.role == "workload":
        return (
            f"{who} cannot {verb} {path}: workload tokens only fetch their own certificate "
            "from the mesh CA (gRPC port 15012); the HTTP API refuses them"
        )
    if principal.role == "read-only":
        if verb != "get":
            what = f"{verb} {kind_plural}" if kind_plural else f"{verb} ({method} {path})"
            return f"{who} cannot {what}: the read-only role may only get, list and watch"
        if kind_plural == "secrets":
            return f"{who} cannot get secrets: the read-only role does not read Secrets"
        if path.startswith(kinds.API_TOKENS_PATH) or path == kinds.DASHBOARD_PATH:
            return f"{who} cannot get {path}: only the admin role manages tokens"
        if path.startswith(kinds.PILOTFISH_API + "/namespaces/") and path.endswith("/config"):
            return (
                f"{who} cannot get {path}: a proxy's generated config holds its Secrets; "
                "the read-only role does not read it"
            )
        return None
    return f"{who} cannot {verb} {path}: unknown role"


__all__ = [
    "ADMIN_USER",
    "Authenticator",
    "Principal",
    "bearer",
    "forbidden",
    "load_or_create_admin_token",
    "new_secret",
    "token_matches",
]
