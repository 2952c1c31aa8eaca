"""A signed workload certificate as the CA hands it out and the agent receives it.

Shared by both sides (the CA's signing service and the agent's secret manager); it needs only
the X.509 helpers, so the agent imports it without the CA or the token authority.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pilotfish.identity import pki
from pilotfish.identity.spiffe import SpiffeId


@dataclass(frozen=True)
class SignedCertificate:
    """A workload certificate as the CA hands it out (PEM text, leaf first)."""

    cert_chain_pem: str
    root_bundle_pem: str
    identity: SpiffeId
    serial: int
    not_before: datetime
    not_after: datetime

    @classmethod
    def from_pem(cls, cert_chain_pem: str, root_bundle_pem: str) -> SignedCertificate:
        """Read identity, serial and validity from the leaf. Raises ValueError if unusable."""
        chain = pki.load_certificates(cert_chain_pem)
        pki.load_certificates(root_bundle_pem)
        leaf = chain[0]
        uris = pki.uri_sans(leaf)
        if len(uris) != 1:
            raise ValueError(f"the leaf certificate has {len(uris)} URI SANs, expected one")
        return cls(
            cert_chain_pem=cert_chain_pem,
            root_bundle_pem=root_bundle_pem,
            identity=SpiffeId.parse(uris[0]),
            serial=leaf.serial_number,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "certChain": self.cert_chain_pem,
            "rootBundle": self.root_bundle_pem,
            "identity": self.identity.uri,
            "serial": f"{self.serial:x}",
            "notBefore": self.not_before.isoformat(),
            "notAfter": self.not_after.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignedCertificate:
        """Rebuild from :meth:`to_json` output; the PEM is authoritative, the rest is checked."""
        chain, bundle = data.get("certChain"), data.get("rootBundle")
        if not isinstance(chain, str) or not isinstance(bundle, str):
            raise ValueError("certChain and rootBundle must be PEM strings")
        signed = cls.from_pem(chain, bundle)
        if data.get("identity") not in (None, signed.identity.uri):
            raise ValueError(f"identity {data['identity']!r} does not match the certificate")
        return signed


__all__ = ["SignedCertificate"]
