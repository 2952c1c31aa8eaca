"""The signing decision: which identity a certificate request gets, and for how long (pure).

``CertificateAuthorityService.sign(token, csr_pem, requested_ttl)``:

1. verify the workload token (bad signature, expired, malformed -> TokenError);
2. parse the CSR (malformed, badly self-signed, unsupported key -> CsrError);
3. if the CSR asks for URI SANs and any of them is not the token's SPIFFE ID, refuse
   (IdentityMismatchError naming both; logged as a warning); DNS names, subject and other
   requested attributes are ignored;
4. sign for the token's identity with the requested TTL (default when absent or not
   positive), capped by the policy's maximum.

Transport lives elsewhere (``ca_grpc.py``); this module has no I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, timedelta

from pilotfish.identity import pki
from pilotfish.identity.ca import MeshCA
from pilotfish.identity.certificate import SignedCertificate
from pilotfish.identity.errors import IdentityMismatchError
from pilotfish.identity.tokens import TokenAuthority
from pilotfish.identity.trust_watch import TrustWatch

log = logging.getLogger("pilotfish.identity")

#: Istio's defaults (DEFAULT_WORKLOAD_CERT_TTL, MAX_WORKLOAD_CERT_TTL).
DEFAULT_CERT_TTL = timedelta(hours=24)
MAX_CERT_TTL = timedelta(days=90)


@dataclass(frozen=True)
class SigningPolicy:
    default_ttl: timedelta = DEFAULT_CERT_TTL
    max_ttl: timedelta = MAX_CERT_TTL

    def ttl_for(self, requested: timedelta | None) -> timedelta:
        if requested is None or requested <= timedelta(0):
            requested = self.default_ttl
        return min(requested, self.max_ttl)


def requested_identities(csr_pem: str | bytes) -> list[str]:
    """The URI SANs a CSR asks for (after checking it is a usable CSR)."""
    return pki.uri_sans(pki.load_csr(csr_pem))


class CertificateAuthorityService:
    """Turns (token, CSR) into a signed workload certificate, or refuses."""

    def __init__(
        self, ca: MeshCA, tokens: TokenAuthority, policy: SigningPolicy | None = None
    ) -> None:
        self.ca = ca
        self.tokens = tokens
        self.policy = policy or SigningPolicy(default_ttl=ca.settings.workload_ttl)
        #: What each workload trusts and is signed by; the agents watching the trust bundle.
        self.trust = TrustWatch()

    def sign(
        self,
        token: str,
        csr_pem: str | bytes,
        requested_ttl: timedelta | None = None,
        node: str = "",
    ) -> SignedCertificate:
        claims = self.tokens.verify(token)
        identity = claims.identity(self.ca.trust_domain)
        for uri in requested_identities(csr_pem):
            if uri != identity.uri:
                log.warning(
                    "refused certificate request: CSR asks for %s, token %s proves %s",
                    uri,
                    claims.token_id,
                    identity.uri,
                )
                raise IdentityMismatchError(uri, identity.uri)
        ttl = self.policy.ttl_for(requested_ttl)
        chain, bundle = self.ca.sign_workload(csr_pem, identity, ttl)
        signed = SignedCertificate.from_pem(chain, bundle)
        self.trust.record(node, identity.uri, chain, bundle, self.ca.roots)
        log.info(
            "signed certificate %x for %s (token %s) until %s",
            signed.serial,
            identity.uri,
            claims.token_id,
            signed.not_after.astimezone(UTC).isoformat(),
        )
        return signed
