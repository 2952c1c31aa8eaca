"""Istio's names for ``credentialName`` secrets served over ADS (SDS), and the Secret keys.

A ``credentialName: bookinfo`` (Gateway server ``tls`` or DestinationRule
``trafficPolicy.tls``) names two SDS resources: ``kubernetes://bookinfo`` (certificate and key)
and ``kubernetes://bookinfo-cacert`` (the CA that verifies the peer). Both come from a stored
``Secret``: ``kubernetes.io/tls`` keys (``tls.crt``, ``tls.key``, ``ca.crt``) or generic ones
(``cert``, ``key``, ``cacert``); the CA may also come from a separate ``bookinfo-cacert``
Secret, as in Istio.

One home for these names: translation writes them into TLS contexts, the xDS secrets
generator (``pilotfish.xds.secrets``) reads them back to find the Secrets.
"""

from __future__ import annotations

from dataclasses import dataclass

CREDENTIAL_PREFIX = "kubernetes://"
CACERT_SUFFIX = "-cacert"

#: Keys of a certificate chain, a private key and a CA bundle, in the order they are tried.
CERT_KEYS = ("tls.crt", "cert")
KEY_KEYS = ("tls.key", "key")
CA_KEYS = ("ca.crt", "cacert")
#: A separate ``<name>-cacert`` Secret may also hold its CA as a certificate.
CACERT_SECRET_KEYS = (*CA_KEYS, "tls.crt")


def credential_resource_names(credential_name: str) -> tuple[str, str]:
    """``(kubernetes://name, kubernetes://name-cacert)`` for a ``credentialName``."""
    return (
        f"{CREDENTIAL_PREFIX}{credential_name}",
        f"{CREDENTIAL_PREFIX}{credential_name}{CACERT_SUFFIX}",
    )


@dataclass(frozen=True, slots=True)
class CredentialRef:
    """What an SDS resource name asks for: the certificate and key of Secret ``secret``, or
    (``ca``) the CA bundle of ``secret`` (the name without ``-cacert``)."""

    resource: str
    secret: str
    ca: bool

    @property
    def cacert_secret(self) -> str:
        """The separate Secret that may hold the CA: ``<secret>-cacert``."""
        return f"{self.secret}{CACERT_SUFFIX}"


def parse_credential_resource(resource: str) -> CredentialRef | None:
    """The Secret a ``kubernetes://...`` resource name refers to; None for other names
    (the agent's ``default`` and ``ROOTCA``)."""
    if not resource.startswith(CREDENTIAL_PREFIX):
        return None
    name = resource[len(CREDENTIAL_PREFIX) :]
    if name.endswith(CACERT_SUFFIX) and len(name) > len(CACERT_SUFFIX):
        return CredentialRef(resource, name[: -len(CACERT_SUFFIX)], ca=True)
    return CredentialRef(resource, name, ca=False)


__all__ = [
    "CACERT_SECRET_KEYS",
    "CACERT_SUFFIX",
    "CA_KEYS",
    "CERT_KEYS",
    "CREDENTIAL_PREFIX",
    "KEY_KEYS",
    "CredentialRef",
    "credential_resource_names",
    "parse_credential_resource",
]
