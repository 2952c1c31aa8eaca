"""Bearer-token authentication for the control-plane HTTP API.

``pilotfish server`` creates an admin token in its data directory on first start
(``<data-dir>/admin-token``, mode 0600). Every API request except ``/healthz`` and
``/version`` must carry ``Authorization: Bearer <token>``; no token or a wrong one gets 401
and changes nothing.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

TOKEN_FILE = "admin-token"


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


def token_matches(header: str | None, tokens: frozenset[str]) -> bool:
    """True when ``header`` is ``Bearer <t>`` for one of ``tokens`` (constant-time compare)."""
    if not header or not header.startswith("Bearer "):
        return False
    given = header[len("Bearer ") :].strip().encode()
    return any(hmac.compare_digest(given, t.encode()) for t in tokens)
