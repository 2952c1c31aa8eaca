"""What the store keeps besides config: the API's tokens and the audit log of changes.

Both live in the config store (SQLite file or PostgreSQL database), so every control-plane
replica on one PostgreSQL sees the same tokens and appends to the same audit log. They are
apart from config objects and their events: they have no revision of their own, are never
watched, and never reach translation or the proxies.

- **API tokens** (:class:`ApiToken`): a name, a role and the SHA-256 digest of the secret
  (the secret itself is shown once, when the token is created, and never stored).
- **Audit entries** (:class:`AuditEntry`): one per change made through the API (who: the
  token's name and role; what: the verb and the objects; when; and the config revision the
  change produced). An entry for a config change is written in the same transaction as the
  change, so the log never misses a committed change nor records one that did not land.
  The events pods and controllers record (Kubernetes ``Event`` objects, controller status)
  are not in it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from pilotfish.errors import AlreadyExistsError, NotFoundError

Role = Literal["admin", "read-only", "workload"]
#: Roles an API token can have (workload tokens are the CA's, see ``identity.tokens``).
API_ROLES: tuple[Role, ...] = ("admin", "read-only")
#: How many audit entries a store keeps (older ones are dropped, oldest first).
DEFAULT_KEEP_AUDIT = 100_000


def digest(secret: str) -> str:
    """The stored form of a token's secret (hex SHA-256)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def audit_time(moment: datetime) -> str:
    """An audit entry's time: RFC 3339 in UTC with milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def token_exists(name: str) -> AlreadyExistsError:
    return AlreadyExistsError(f'tokens "{name}" already exists')


def token_not_found(name: str) -> NotFoundError:
    return NotFoundError(f'tokens "{name}" not found')


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    role: str
    digest: str
    #: RFC 3339 time of creation and the name of the token that created it.
    created: str = ""
    created_by: str = ""

    def public(self) -> dict[str, Any]:
        """The token as the API shows it (never the digest)."""
        return {"name": self.name, "role": self.role, "created": self.created,
                "createdBy": self.created_by}  # fmt: skip


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change. The store fills ``id``, ``time`` and ``revision`` when it writes it."""

    user: str
    role: str
    verb: str
    objects: tuple[dict[str, str], ...] = ()
    #: The client's address.
    source: str = ""
    id: int = 0
    time: str = ""
    revision: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def stamped(self, time: str, revision: int) -> AuditEntry:
        return replace(self, time=time, revision=revision)

    def to_json(self) -> str:
        body = {
            "user": self.user,
            "role": self.role,
            "verb": self.verb,
            "objects": list(self.objects),
            "source": self.source,
            "time": self.time,
            "revision": self.revision,
        }
        if self.extra:
            body["extra"] = self.extra
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, entry_id: int, text: str) -> AuditEntry:
        b = json.loads(text)
        return cls(
            user=str(b.get("user", "")),
            role=str(b.get("role", "")),
            verb=str(b.get("verb", "")),
            objects=tuple(b.get("objects") or ()),
            source=str(b.get("source", "")),
            id=entry_id,
            time=str(b.get("time", "")),
            revision=int(b.get("revision", 0)),
            extra=dict(b.get("extra") or {}),
        )

    def public(self) -> dict[str, Any]:
        """The entry as the API shows it (Kubernetes audit's field names where they fit)."""
        out: dict[str, Any] = {
            "id": self.id,
            "time": self.time,
            "user": self.user,
            "role": self.role,
            "verb": self.verb,
            "revision": self.revision,
            "objects": list(self.objects),
            "sourceIP": self.source,
        }
        if self.extra:
            out.update(self.extra)
        return out


__all__ = [
    "API_ROLES",
    "DEFAULT_KEEP_AUDIT",
    "ApiToken",
    "AuditEntry",
    "Role",
    "audit_time",
    "digest",
    "token_exists",
    "token_not_found",
]
