"""bug-report's pure parts: what is redacted, how Secrets and config dumps are reduced."""

from __future__ import annotations

from pilotfish.cli.bugreport_cmd import scrub, secret_summary, without_secrets

KEY = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n-----END EC PRIVATE KEY-----"


def test_scrub_redacts_private_keys_and_bearer_tokens_only() -> None:
    text = f"before\n{KEY}\nAuthorization: Bearer eyJhbGciOi.abc.def\nafter"
    out = scrub(text)
    assert "MHcCAQEEIB" not in out and "eyJhbGciOi" not in out
    assert out.startswith("before\n[redacted private key]\n") and out.endswith("after")
    assert "Bearer [redacted]" in out
    cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    assert scrub(cert) == cert


def test_secrets_are_names_and_keys_only_and_dumps_lose_their_secrets() -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "c", "namespace": "ns", "uid": "u"},
            "data": {"tls.key": "c2VjcmV0", "tls.crt": "Y2VydA=="}}  # fmt: skip
    summary = secret_summary(body)
    assert summary["dataKeys"] == ["tls.crt", "tls.key"]
    assert "c2VjcmV0" not in repr(summary) and "data" not in summary
    dump = {"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump"},
        {"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump", "x": KEY},
    ]}  # fmt: skip
    assert [c["@type"] for c in without_secrets(dump)["configs"]] == [
        "type.googleapis.com/envoy.admin.v3.ListenersConfigDump"
    ]
