"""SPIFFE identities of workloads: ``spiffe://<trust-domain>/ns/<namespace>/sa/<account>``.

Istio's form, and the only form the mesh issues. The principal form used by
AuthorizationPolicy (``cluster.local/ns/default/sa/bookinfo-reviews``) is the same identity
without the scheme. Names follow Kubernetes' rules (namespace: DNS-1123 label; service
account: DNS-1123 subdomain); trust domains follow the SPIFFE specification (lowercase letters,
digits, ``.``, ``-``, ``_``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pilotfish.api.mesh import DEFAULT_TRUST_DOMAIN
from pilotfish.identity.errors import InvalidSpiffeIdError

SCHEME = "spiffe://"

_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]{1,255}$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN_PART = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _check_trust_domain(value: str) -> str | None:
    if not _TRUST_DOMAIN.match(value):
        return "must be 1-255 characters of lowercase letters, digits, '.', '-' or '_'"
    return None


def _check_namespace(value: str) -> str | None:
    if not _LABEL.match(value):
        return "must be a DNS-1123 label (lowercase letters, digits, '-'; at most 63)"
    return None


def _check_service_account(value: str) -> str | None:
    if len(value) > 253 or not all(_SUBDOMAIN_PART.match(p) for p in value.split(".")):
        return "must be a DNS-1123 subdomain (lowercase letters, digits, '-', '.'; at most 253)"
    return None


def check_workload_names(namespace: str, service_account: str) -> None:
    """Raise InvalidSpiffeIdError unless both are valid Kubernetes names."""
    SpiffeId(DEFAULT_TRUST_DOMAIN, namespace, service_account)


@dataclass(frozen=True, order=True)
class SpiffeId:
    """One workload identity. Construction validates every part."""

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        for field_name, check in (
            ("trust domain", _check_trust_domain),
            ("namespace", _check_namespace),
            ("service account", _check_service_account),
        ):
            value = getattr(self, field_name.replace(" ", "_"))
            reason = check(value) if isinstance(value, str) else "must be a string"
            if reason:
                raise InvalidSpiffeIdError(f"SPIFFE ID {field_name} {value!r}: {reason}")

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """Parse ``spiffe://td/ns/<ns>/sa/<sa>``; anything else raises InvalidSpiffeIdError."""
        if not uri.startswith(SCHEME):
            raise InvalidSpiffeIdError(f"SPIFFE ID {uri!r}: must start with {SCHEME}")
        return cls._from_path(uri[len(SCHEME) :], uri)

    @classmethod
    def from_principal(cls, principal: str) -> SpiffeId:
        """Parse Istio's principal form ``td/ns/<ns>/sa/<sa>``."""
        return cls._from_path(principal, principal)

    @classmethod
    def _from_path(cls, path: str, original: str) -> SpiffeId:
        parts = path.split("/")
        if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
            raise InvalidSpiffeIdError(
                f"SPIFFE ID {original!r}: must have the form "
                f"{SCHEME}<trust-domain>/ns/<namespace>/sa/<service-account>"
            )
        return cls(parts[0], parts[2], parts[4])

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.principal}"

    @property
    def principal(self) -> str:
        """Istio's AuthorizationPolicy form, without the scheme."""
        return f"{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return self.uri
