"""Who may use the dashboard: sessions opened with the admin token or a one-time login link.

- ``POST /login`` with the control plane's admin token opens a session;
- ``pilotfish dashboard`` asks the control plane's API (with the admin token) for a one-time
  login code and opens ``/login/<code>``: the code opens one session, once, within a minute;
- a session is a random id in an ``HttpOnly``, ``SameSite=Strict`` cookie, valid for 12 hours;
  every data call needs it.

Only the hashes of codes and session ids are kept (a memory dump reveals no usable cookie).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "pilotfish-dashboard"
SESSION_TTL = 12 * 3600.0
LOGIN_CODE_TTL = 60.0


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class Sessions:
    """Sessions and one-time login codes, in memory (a restart signs everyone out)."""

    admin_tokens: frozenset[str]
    clock: Callable[[], float] = time.monotonic
    _sessions: dict[str, float] = field(default_factory=dict)
    _codes: dict[str, float] = field(default_factory=dict)

    def token_ok(self, token: str) -> bool:
        given = token.strip().encode()
        return bool(given) and any(
            hmac.compare_digest(given, t.encode()) for t in self.admin_tokens
        )

    def login_with_token(self, token: str) -> str | None:
        """A new session id when ``token`` is the admin token, else ``None``."""
        return self._open() if self.token_ok(token) else None

    def issue_login_code(self) -> str:
        """A one-time code for ``/login/<code>`` (valid for :data:`LOGIN_CODE_TTL` seconds)."""
        self._expire()
        code = secrets.token_urlsafe(24)
        self._codes[_digest(code)] = self.clock() + LOGIN_CODE_TTL
        return code

    def login_with_code(self, code: str) -> str | None:
        """A new session id when ``code`` is a live login code (used up by this call)."""
        self._expire()
        if self._codes.pop(_digest(code), None) is None:
            return None
        return self._open()

    def valid(self, session: str | None) -> bool:
        if not session:
            return False
        until = self._sessions.get(_digest(session))
        return until is not None and until > self.clock()

    def logout(self, session: str | None) -> None:
        if session:
            self._sessions.pop(_digest(session), None)

    def _open(self) -> str:
        self._expire()
        session = secrets.token_urlsafe(32)
        self._sessions[_digest(session)] = self.clock() + SESSION_TTL
        return session

    def _expire(self) -> None:
        now = self.clock()
        for table in (self._sessions, self._codes):
            for key in [k for k, until in table.items() if until <= now]:
                del table[key]
