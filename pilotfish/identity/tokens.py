"""Workload tokens: what an agent shows the CA to prove which namespace/service account it is.

The control plane issues them (``pilotfish`` hands one to each sidecar it starts) and the same
control plane verifies them when a CSR arrives. Format: a compact JWT (three base64url
segments ``header.claims.signature``) with header ``{"alg": "HS256", "typ": "JWT", "kid"}``
and claims ``iss``, ``aud``, ``sub`` (``system:serviceaccount:<ns>:<sa>``, as Kubernetes
writes it), ``ns``, ``sa``, ``iat``, ``exp`` and ``jti`` (a random id); a token bound to a
WorkloadGroup (``pilotfish x workload entry configure``, Kubernetes' ``boundObjectRef``) also
carries ``wg``, the group's name: with it an agent may register into that group only.

Signature: HMAC-SHA256 with a 256-bit key kept next to the CA key (``token-key``, mode
0600). Issuer and verifier are the same party (the control plane, or replicas sharing its CA
directory), so a shared secret is enough: nothing outside the control plane ever checks a
token, there is no public key to distribute, no algorithm choice to confuse (only HS256 is
accepted, ``none`` never), and a forged token needs the same file that already protects the
CA key. ES256 would only pay off with third-party verifiers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pilotfish.identity.errors import (
    InvalidSpiffeIdError,
    MalformedTokenError,
    TokenExpiredError,
    TokenSignatureError,
)
from pilotfish.identity.spiffe import SpiffeId, check_workload_names

TOKEN_KEY_FILE = "token-key"
DEFAULT_ISSUER = "pilotfish"
#: Istio's audience for tokens presented to its CA.
DEFAULT_AUDIENCE = "istio-ca"
MAX_TOKEN_LENGTH = 8192
_ALG = "HS256"
_GROUP_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(segment: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise MalformedTokenError(what, "is not base64url") from None


def _json_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment, what))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedTokenError(what, "is not JSON") from None
    if not isinstance(value, dict):
        raise MalformedTokenError(what, "is not a JSON object")
    return value


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token proves."""

    token_id: str
    namespace: str
    service_account: str
    issuer: str
    audience: str
    issued_at: datetime
    expires_at: datetime
    #: The WorkloadGroup (of ``namespace``) the token is bound to, or ``""``.
    workload_group: str = ""

    def identity(self, trust_domain: str) -> SpiffeId:
        return SpiffeId(trust_domain, self.namespace, self.service_account)

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


class TokenAuthority:
    """Issues and verifies workload tokens with one HMAC key."""

    def __init__(
        self,
        key: bytes,
        *,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        leeway: timedelta = timedelta(0),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if len(key) < 32:
            raise ValueError("a token key needs at least 32 bytes")
        self._key = key
        self._kid = _key_id(key)
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self._now = now

    @classmethod
    def load_or_create(
        cls,
        directory: Path,
        *,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        leeway: timedelta = timedelta(0),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> TokenAuthority:
        """The authority whose key is ``<directory>/token-key`` (created, mode 0600, if absent)."""
        path = directory / TOKEN_KEY_FILE
        if not path.exists():
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, _b64encode(secrets.token_bytes(32)).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        key = _b64decode(path.read_text().strip(), str(path))
        return cls(key, issuer=issuer, audience=audience, leeway=leeway, now=now)

    def _sign(self, signing_input: bytes) -> bytes:
        return hmac.new(self._key, signing_input, hashlib.sha256).digest()

    def issue(
        self, namespace: str, service_account: str, ttl: timedelta, workload_group: str = ""
    ) -> str:
        """A token for ``namespace``/``service_account`` valid for ``ttl`` from now; bound to
        the WorkloadGroup ``workload_group`` of ``namespace`` when given."""
        check_workload_names(namespace, service_account)
        if workload_group and not _GROUP_RE.match(workload_group):
            raise ValueError(f"WorkloadGroup name {workload_group!r} is not a DNS-1123 subdomain")
        if ttl <= timedelta(0):
            raise ValueError(f"token TTL must be positive, got {ttl}")
        now = self._now()
        header = {"alg": _ALG, "typ": "JWT", "kid": self._kid}
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "ns": namespace,
            "sa": service_account,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": secrets.token_hex(16),
        }
        if workload_group:
            claims["wg"] = workload_group
        head = _b64encode(json.dumps(header, separators=(",", ":")).encode())
        body = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{head}.{body}".encode()
        return f"{head}.{body}.{_b64encode(self._sign(signing_input))}"

    def verify(self, token: str) -> TokenClaims:
        """The claims of a valid token; raises a TokenError subclass saying what is wrong."""
        if not isinstance(token, str) or not token:
            raise MalformedTokenError("", "empty")
        if len(token) > MAX_TOKEN_LENGTH:
            raise MalformedTokenError("", f"longer than {MAX_TOKEN_LENGTH} characters")
        segments = token.split(".")
        if len(segments) != 3:
            raise MalformedTokenError("", "must be three base64url segments separated by '.'")
        head, body, sig = segments
        header = _json_segment(head, "header")
        if header.get("alg") != _ALG:
            raise MalformedTokenError("header.alg", f"must be {_ALG}, got {header.get('alg')!r}")
        signature = _b64decode(sig, "signature")
        expected = self._sign(f"{head}.{body}".encode())
        if not hmac.compare_digest(signature, expected):
            if header.get("kid") not in (None, self._kid):
                raise TokenSignatureError("header.kid", "signed with another key")
            raise TokenSignatureError("signature", "does not match (token altered or forged)")
        claims = _json_segment(body, "claims")
        return self._check_claims(claims)

    def _check_claims(self, claims: dict[str, Any]) -> TokenClaims:
        def text(name: str) -> str:
            value = claims.get(name)
            if not isinstance(value, str) or not value:
                raise MalformedTokenError(f"claims.{name}", "missing or not a string")
            return value

        def instant(name: str) -> datetime:
            value = claims.get(name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise MalformedTokenError(f"claims.{name}", "missing or not an integer")
            return datetime.fromtimestamp(value, UTC)

        issuer, audience = text("iss"), text("aud")
        if issuer != self.issuer:
            raise MalformedTokenError("claims.iss", f"issuer {issuer!r} is not {self.issuer!r}")
        if audience != self.audience:
            raise MalformedTokenError(
                "claims.aud", f"audience {audience!r} is not {self.audience!r}"
            )
        namespace, account = text("ns"), text("sa")
        try:
            check_workload_names(namespace, account)
        except InvalidSpiffeIdError as e:
            raise MalformedTokenError("claims", str(e)) from None
        group = claims.get("wg", "")
        if not isinstance(group, str):
            raise MalformedTokenError("claims.wg", "not a string")
        issued, expires = instant("iat"), instant("exp")
        now = self._now()
        if now >= expires + self.leeway:
            raise TokenExpiredError("claims.exp", f"expired at {expires.isoformat()}")
        if issued > now + self.leeway + timedelta(minutes=1):
            raise MalformedTokenError("claims.iat", f"issued in the future ({issued.isoformat()})")
        return TokenClaims(
            token_id=text("jti"),
            namespace=namespace,
            service_account=account,
            issuer=issuer,
            audience=audience,
            issued_at=issued,
            expires_at=expires,
            workload_group=group,
        )
