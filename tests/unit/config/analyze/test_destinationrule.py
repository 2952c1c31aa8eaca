"""DestinationRule analyzers: unknown hosts (IST0101), unverified TLS (IST0128 / IST0129)."""

from __future__ import annotations

from pilotfish.config.analyze.destinationrule import (
    analyze_ca_certificates,
    analyze_destination_rule_hosts,
)
from tests.unit.config.analyze._util import SERVICES, codes, run, texts


def dr(host: str, policy: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: rule, namespace: default}}
spec:
  host: {host}
{policy}
"""


def test_rule_for_a_known_service_is_clean() -> None:
    assert run(analyze_destination_rule_hosts, SERVICES, dr("ratings")) == []


def test_rule_for_an_unknown_host_is_ist0174() -> None:
    msgs = run(analyze_destination_rule_hosts, SERVICES, dr("nowhere"))
    assert codes(msgs) == ["IST0174"]
    assert texts(msgs) == [
        "The host nowhere defined in the DestinationRule does not match any services in the mesh."
    ]
    assert msgs[0].path == "spec.host"
    assert run(analyze_destination_rule_hosts, SERVICES, dr("reviews")) == []


def test_wildcard_rule_host_is_not_checked() -> None:
    assert run(analyze_destination_rule_hosts, dr('"*.example.com"')) == []


SIMPLE = """
  trafficPolicy:
    tls: {mode: SIMPLE}
"""


def test_simple_tls_without_ca_is_ist0128() -> None:
    msgs = run(analyze_ca_certificates, dr("api.example.com", SIMPLE))
    assert codes(msgs) == ["IST0128"]
    assert msgs[0].text == (
        "DestinationRule default/rule in namespace default has TLS mode set to SIMPLE but no "
        "caCertificates are set to validate server identity for host: api.example.com"
    )


def test_tls_with_ca_or_credential_or_istio_mutual_is_clean() -> None:
    for tls in (
        "{mode: SIMPLE, caCertificates: /etc/ca.pem}",
        "{mode: MUTUAL, credentialName: client-cert}",
        "{mode: ISTIO_MUTUAL}",
    ):
        policy = f"  trafficPolicy:\n    tls: {tls}\n"
        assert run(analyze_ca_certificates, dr("api.example.com", policy)) == [], tls


def test_port_level_mutual_without_ca_is_ist0129() -> None:
    policy = """
  trafficPolicy:
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}
"""
    msgs = run(analyze_ca_certificates, dr("api.example.com", policy))
    assert codes(msgs) == ["IST0129"]
    assert msgs[0].text.endswith("for host: api.example.com at port 443")
    assert msgs[0].path == "spec.trafficPolicy.portLevelSettings[0].tls"
