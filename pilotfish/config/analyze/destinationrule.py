"""DestinationRule analyzers: the host it configures, and client TLS that verifies nothing.

- IST0101 ``host``: the rule's (non-wildcard) host is no Service or ServiceEntry host visible
  from its namespace, so the rule applies to nothing. (``istioctl`` checks this for
  VirtualService destinations only; a rule for a missing host is the same mistake.)
- IST0128 / IST0129: ``tls.mode`` SIMPLE or MUTUAL without ``caCertificates`` (nor a
  ``credentialName`` that brings a CA, nor ``insecureSkipVerify``), for the whole rule or one
  port; the server's certificate is then not verified.
"""

from __future__ import annotations

from collections.abc import Iterator

from pilotfish.api.destinationrule import ClientTLSSettings, DestinationRule
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import AnalysisContext
from pilotfish.config.analyze.messages import Message

__all__ = ["analyze_ca_certificates", "analyze_destination_rule_hosts"]

KIND = "DestinationRule"


def analyze_destination_rule_hosts(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0101 ``host`` for a rule whose host names no known service."""
    for e, dr in ctx.of_kind(KIND, DestinationRule):
        host = dr.spec.host
        if not host or "*" in host:
            continue
        if ctx.find_service(host, e.namespace) is None:
            yield e.message(m.REFERENCED_RESOURCE_NOT_FOUND, "host", host, path="spec.host")


def _unverified(tls: ClientTLSSettings | None) -> str | None:
    """The mode when ``tls`` is SIMPLE/MUTUAL and nothing verifies the server."""
    if tls is None or tls.mode not in ("SIMPLE", "MUTUAL"):
        return None
    if tls.caCertificates or tls.credentialName or tls.insecureSkipVerify:
        return None
    return tls.mode


def analyze_ca_certificates(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0128 (rule level) and IST0129 (port level)."""
    for e, dr in ctx.of_kind(KIND, DestinationRule):
        policy = dr.spec.trafficPolicy
        if policy is None:
            continue
        name = f"{e.namespace}/{e.name}"
        mode = _unverified(policy.tls)
        if mode:
            yield e.message(
                m.NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL,
                name,
                e.namespace,
                mode,
                dr.spec.host,
                path="spec.trafficPolicy.tls",
            )
        for i, pls in enumerate(policy.portLevelSettings):
            mode = _unverified(pls.tls)
            if mode:
                port = pls.port.number if pls.port is not None else None
                yield e.message(
                    m.NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL,
                    name,
                    e.namespace,
                    mode,
                    dr.spec.host,
                    port if port is not None else "",
                    path=f"spec.trafficPolicy.portLevelSettings[{i}].tls",
                )
