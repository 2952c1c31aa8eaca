"""PEM certificates and keys, and Secret documents holding them, for tests of what reads
Secrets (EC keys: fast)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pilotfish.identity import pki
from pilotfish.identity.ca import build_root


@dataclass(frozen=True)
class Pem:
    cert: str
    key: str


def self_signed(name: str) -> Pem:
    key = pki.generate_private_key()
    cert = build_root(key, name, datetime.now(UTC), timedelta(days=1), timedelta(minutes=1))
    return Pem(cert=pki.certificate_pem(cert), key=pki.private_key_pem(key))


SERVER = self_signed("bookinfo.example.com")
OTHER = self_signed("other.example.com")
CA = self_signed("ca.example.com")


def secret(
    name: str,
    ns: str = "istio-system",
    string_data: dict[str, str] | None = None,
    **data: str,
) -> dict[str, Any]:
    """A ``kubernetes.io/tls`` Secret; ``tls_crt=...`` is the key ``tls.crt``, base64-encoded
    into ``data``."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "kubernetes.io/tls",
        "data": {
            k.replace("_", "."): base64.b64encode(v.encode()).decode() for k, v in data.items()
        },
    }
    if string_data is not None:
        body["stringData"] = string_data
    return body
