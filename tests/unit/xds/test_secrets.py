"""The xDS secrets generator: ``kubernetes://`` names to SDS Secrets, with Istio's rules."""

from __future__ import annotations

from typing import Any

import pytest

from pilotfish.config.store.base import StoredObject, key_of
from pilotfish.xds.secrets import (
    SecretError,
    SecretResolver,
    readable_namespaces,
    secrets_for,
)
from tests.unit.translate.fixtures import push_for, router_node, sidecar_node
from tests.unit.xds.pem import CA, OTHER, SERVER, secret


def resolver(*docs: dict[str, Any]) -> SecretResolver:
    return SecretResolver(StoredObject(key_of(d), d, i) for i, d in enumerate(docs, start=1))


def error(r: SecretResolver, resource: str, namespaces: tuple[str, ...]) -> SecretError:
    with pytest.raises(SecretError) as info:
        r.resolve(resource, namespaces)
    return info.value


def test_certificate_and_key_from_a_tls_secret() -> None:
    r = resolver(secret("bookinfo", tls_crt=SERVER.cert, tls_key=SERVER.key))
    sds = r.resolve("kubernetes://bookinfo", ("istio-system",))
    assert sds.name == "kubernetes://bookinfo"
    assert sds.tls_certificate.certificate_chain.inline_bytes == SERVER.cert.encode()
    assert sds.tls_certificate.private_key.inline_bytes == SERVER.key.encode()


def test_generic_keys_and_string_data() -> None:
    r = resolver(secret("generic", string_data={"cert": SERVER.cert, "key": SERVER.key}))
    sds = r.resolve("kubernetes://generic", ("istio-system",))
    assert sds.tls_certificate.private_key.inline_bytes == SERVER.key.encode()


def test_missing_secret_names_it_and_where_it_was_looked_for() -> None:
    e = error(resolver(), "kubernetes://bookinfo", ("istio-system", "default"))
    assert (e.resource, e.secret) == ("kubernetes://bookinfo", "bookinfo")
    assert str(e) == (
        "kubernetes://bookinfo: Secret bookinfo: not found in namespaces istio-system, default"
    )


def test_secret_of_another_namespace_is_not_readable() -> None:
    r = resolver(secret("bookinfo", "other", tls_crt=SERVER.cert, tls_key=SERVER.key))
    e = error(r, "kubernetes://bookinfo", ("istio-system",))
    assert e.secret == "other/bookinfo"
    assert "may not read Secrets of namespace other (only of namespace istio-system)" in str(e)


def test_namespaces_are_searched_in_order() -> None:
    r = resolver(
        secret("cred", "gw-ns", tls_crt=OTHER.cert, tls_key=OTHER.key),
        secret("cred", "istio-system", tls_crt=SERVER.cert, tls_key=SERVER.key),
    )
    sds = r.resolve("kubernetes://cred", ("istio-system", "gw-ns"))
    assert sds.tls_certificate.certificate_chain.inline_bytes == SERVER.cert.encode()


def test_ca_bundle_from_the_secret_itself() -> None:
    r = resolver(secret("mutual", tls_crt=SERVER.cert, tls_key=SERVER.key, ca_crt=CA.cert))
    sds = r.resolve("kubernetes://mutual-cacert", ("istio-system",))
    assert sds.name == "kubernetes://mutual-cacert"
    assert sds.validation_context.trusted_ca.inline_bytes == CA.cert.encode()


def test_ca_bundle_from_a_separate_cacert_secret() -> None:
    r = resolver(
        secret("mutual", tls_crt=SERVER.cert, tls_key=SERVER.key),
        secret("mutual-cacert", tls_crt=CA.cert),
    )
    sds = r.resolve("kubernetes://mutual-cacert", ("istio-system",))
    assert sds.validation_context.trusted_ca.inline_bytes == CA.cert.encode()


def test_missing_ca_bundle_gives_both_reasons() -> None:
    r = resolver(secret("mutual", tls_crt=SERVER.cert, tls_key=SERVER.key))
    e = error(r, "kubernetes://mutual-cacert", ("istio-system",))
    assert str(e) == (
        "kubernetes://mutual-cacert: Secret istio-system/mutual (or mutual-cacert): no CA "
        "bundle: has no ca.crt or cacert; not found in namespace istio-system"
    )


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (secret("s", tls_crt="CERT", tls_key=SERVER.key), "certificate chain: no PEM certificate"),
        (
            secret(
                "s",
                tls_crt="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                tls_key=SERVER.key,
            ),
            "certificate chain: malformed PEM certificate",
        ),
        (secret("s", tls_crt=SERVER.cert, tls_key="KEY"), "private key: not an unencrypted PEM"),
        (
            secret("s", tls_crt=SERVER.cert, tls_key=OTHER.key),
            "private key: it does not match the certificate",
        ),
        (secret("s", tls_crt=SERVER.cert), "has no tls.key or key"),
        (secret("s", tls_crt=SERVER.cert, tls_key=" "), "tls.key is empty"),
        (
            {**secret("s", tls_key=SERVER.key), "data": {"tls.crt": "not base64!"}},
            "data[tls.crt] is not valid base64",
        ),
    ],
    ids=["not-pem", "bad-pem", "key-not-pem", "key-mismatch", "no-key", "empty", "bad-base64"],
)
def test_bad_certificate_or_key_names_the_secret_and_reason(
    doc: dict[str, Any], reason: str
) -> None:
    e = error(resolver(doc), "kubernetes://s", ("istio-system",))
    assert e.secret == "istio-system/s"
    assert str(e).startswith(f"kubernetes://s: Secret istio-system/s: {reason}")


def test_bad_ca_bundle() -> None:
    r = resolver(secret("m", ca_crt="not a certificate"))
    e = error(r, "kubernetes://m-cacert", ("istio-system",))
    assert "CA bundle: no PEM certificate in it" in e.reason


def test_not_a_credential_name() -> None:
    e = error(resolver(), "default", ("istio-system",))
    assert str(e) == "default: Secret -: not a kubernetes:// name"


GATEWAY = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "Gateway",
    "metadata": {"name": "gw", "namespace": "bookinfo"},
    "spec": {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
    },
}


def test_who_reads_what() -> None:
    push = push_for([GATEWAY])
    gateway = router_node()
    assert gateway.namespace == "istio-system"
    # A gateway reads its own namespace first, then the namespaces of its Gateways.
    assert readable_namespaces(gateway, push) == ("istio-system", "bookinfo")
    # A sidecar reads its own namespace only.
    assert readable_namespaces(sidecar_node(), push) == ("default",)


def test_generator_serves_what_the_proxy_may_read_and_leaves_out_the_rest() -> None:
    docs = [
        GATEWAY,
        secret("gw-cred", "bookinfo", tls_crt=SERVER.cert, tls_key=SERVER.key),
        secret("app-cred", "default", tls_crt=SERVER.cert, tls_key=SERVER.key),
    ]
    push = push_for(docs)
    gen = secrets_for(push)
    assert gen is secrets_for(push) and push.credentials is gen  # one per context
    names = ["kubernetes://gw-cred", "kubernetes://app-cred", "kubernetes://missing"]
    assert set(gen.generate(router_node(), names)) == {"kubernetes://gw-cred"}
    assert set(gen.generate(sidecar_node(), names)) == {"kubernetes://app-cred"}
    assert gen.available(router_node(), "kubernetes://gw-cred")
    assert not gen.available(sidecar_node(), "kubernetes://gw-cred")


def test_errors_are_logged_once_per_revision(caplog: pytest.LogCaptureFixture) -> None:
    gen = secrets_for(push_for([]))
    for _ in range(3):
        assert not gen.available(sidecar_node(), "kubernetes://missing")
        assert gen.generate(sidecar_node(), ["kubernetes://missing"]) == {}
    messages = [r.getMessage() for r in caplog.records if r.name == "pilotfish.xds.secrets"]
    assert len(messages) == 1
    assert messages[0].startswith(
        "kubernetes://missing: Secret missing: not found in namespace default (proxy sidecar~"
    )
