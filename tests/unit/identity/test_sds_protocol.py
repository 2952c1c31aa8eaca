from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from pilotfish.identity import pki
from pilotfish.identity.ca import MeshCA
from pilotfish.identity.sds_protocol import (
    DEFAULT_SECRET,
    ROOT_SECRET,
    SECRET_TYPE,
    DeltaStream,
    SotwStream,
    build_secrets,
)
from pilotfish.identity.secret_manager import WorkloadSecret
from pilotfish.identity.spiffe import SpiffeId

ID = SpiffeId("cluster.local", "default", "web")
NAMES = [DEFAULT_SECRET, ROOT_SECRET]
Issue = Callable[[], WorkloadSecret]


@pytest.fixture
def issue(make_ca: Callable[..., MeshCA]) -> Issue:
    ca = make_ca()
    counter = iter(range(1, 1000))

    def make() -> WorkloadSecret:
        key = pki.generate_private_key()
        chain, bundle = ca.sign_workload(pki.build_csr(key, ID), ID, timedelta(hours=1))
        leaf = pki.load_certificates(chain)[0]
        return WorkloadSecret(
            ID,
            chain,
            pki.private_key_pem(key),
            bundle,
            leaf.serial_number,
            leaf.not_valid_before_utc,
            leaf.not_valid_after_utc,
            next(counter),
            leaf.not_valid_after_utc,
        )

    return make


def _unpack(resources: Sequence[Any]) -> dict[str, secret_pb2.Secret]:
    out = {}
    for packed in resources:
        any_msg = packed.resource if isinstance(packed, discovery_pb2.Resource) else packed
        secret = secret_pb2.Secret()
        assert any_msg.Unpack(secret)
        out[secret.name] = secret
    return out


def sotw(
    nonce: str = "", names: list[str] = NAMES, error: str = "", version: str = ""
) -> discovery_pb2.DiscoveryRequest:
    req = discovery_pb2.DiscoveryRequest(
        type_url=SECRET_TYPE, resource_names=names, response_nonce=nonce, version_info=version
    )
    if error:
        req.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
    return req


def delta(
    nonce: str = "",
    sub: Sequence[str] = (),
    unsub: Sequence[str] = (),
    error: str = "",
    initial: dict[str, str] | None = None,
) -> discovery_pb2.DeltaDiscoveryRequest:
    req = discovery_pb2.DeltaDiscoveryRequest(
        type_url=SECRET_TYPE,
        response_nonce=nonce,
        resource_names_subscribe=list(sub),
        resource_names_unsubscribe=list(unsub),
        initial_resource_versions=initial or {},
    )
    if error:
        req.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
    return req


def test_build_secrets_uses_istio_names(issue: Issue) -> None:
    secret = issue()
    built = build_secrets(secret)
    assert set(built) == {"default", "ROOTCA"}
    cert = built["default"].resource.tls_certificate
    assert cert.certificate_chain.inline_bytes.decode() == secret.cert_chain_pem
    assert cert.private_key.inline_bytes.decode() == secret.private_key_pem
    roots = built["ROOTCA"].resource.validation_context.trusted_ca.inline_bytes.decode()
    assert roots == secret.root_bundle_pem
    assert build_secrets(None) == {}
    # Same roots, new leaf: only the ``default`` version changes.
    again = build_secrets(issue())
    assert again["ROOTCA"].version == built["ROOTCA"].version
    assert again["default"].version != built["default"].version


def test_sotw_initial_ack_nack_stale_and_push(issue: Issue) -> None:
    stream = SotwStream()
    assert stream.on_request(sotw(), {}) is None  # no certificate yet: wait
    s1 = build_secrets(issue())
    r1 = stream.on_change(s1)
    assert r1 is not None and set(_unpack(list(r1.resources))) == {"default", "ROOTCA"}
    assert r1.type_url == SECRET_TYPE
    assert stream.on_request(sotw(r1.nonce, version=r1.version_info), s1) is None  # ACK
    assert stream.acked_version == r1.version_info
    assert stream.on_change(s1) is None  # nothing changed

    s2 = build_secrets(issue())
    r2 = stream.on_change(s2)
    assert r2 is not None and r2.nonce != r1.nonce and r2.version_info != r1.version_info
    # A late ACK of r1 is stale: ignored, no response, acked version unchanged.
    assert stream.on_request(sotw(r1.nonce, version=r1.version_info), s2) is None
    assert stream.acked_version == r1.version_info
    # NACK of r2: recorded; the rejected content is not sent again ...
    assert stream.on_request(sotw(r2.nonce, error="bad cert", version=r1.version_info), s2) is None
    assert stream.last_nack is not None and stream.last_nack.message == "bad cert"
    assert stream.on_change(s2) is None
    # ... until the secret changes.
    r3 = stream.on_change(build_secrets(issue()))
    assert r3 is not None and r3.nonce not in (r1.nonce, r2.nonce)


def test_sotw_only_sends_requested_names(issue: Issue) -> None:
    stream = SotwStream()
    secrets = build_secrets(issue())
    r1 = stream.on_request(sotw(names=["ROOTCA"]), secrets)
    assert r1 is not None and list(_unpack(list(r1.resources))) == ["ROOTCA"]
    r2 = stream.on_request(sotw(r1.nonce, names=["ROOTCA", "default"]), secrets)
    assert r2 is not None and set(_unpack(list(r2.resources))) == {"ROOTCA", "default"}
    unknown = SotwStream()
    assert unknown.on_request(sotw(names=["file-cert:/x~/y"]), secrets) is None
    other_type = sotw()
    other_type.type_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    assert SotwStream().on_request(other_type, secrets) is None


def test_delta_subscribe_ack_push_and_nack(issue: Issue) -> None:
    stream = DeltaStream()
    s1 = build_secrets(issue())
    r1 = stream.on_request(delta(sub=["default"]), s1)
    assert r1 is not None and [r.name for r in r1.resources] == ["default"]
    assert r1.resources[0].version == s1["default"].version
    r2 = stream.on_request(delta(r1.nonce, sub=["ROOTCA"]), s1)  # ACK + new subscription
    assert stream.acked_nonce == r1.nonce
    assert r2 is not None and [r.name for r in r2.resources] == ["ROOTCA"]
    assert stream.on_request(delta(r2.nonce), s1) is None

    s2 = build_secrets(issue())
    r3 = stream.on_change(s2)
    assert r3 is not None and [r.name for r in r3.resources] == ["default"]
    assert stream.on_request(delta(r3.nonce, error="rejected"), s2) is None
    assert stream.last_nack is not None and stream.last_nack.nonce == r3.nonce
    assert stream.on_change(s2) is None  # rejected content not resent

    stream.on_request(delta(unsub=["default"]), s2)
    assert stream.on_change(build_secrets(issue())) is None  # only ROOTCA left, unchanged
    assert stream.on_request(delta("no-such-nonce"), s2) is None


def test_delta_stale_ack_is_not_recorded(issue: Issue) -> None:
    stream = DeltaStream()
    r1 = stream.on_request(delta(sub=NAMES), build_secrets(issue()))
    r2 = stream.on_change(build_secrets(issue()))
    assert r1 is not None and r2 is not None
    stream.on_request(delta(r1.nonce), {})
    assert stream.acked_nonce == ""
    stream.on_request(delta(r2.nonce), {})
    assert stream.acked_nonce == r2.nonce


def test_delta_reconnect_with_current_versions_gets_nothing_new(issue: Issue) -> None:
    secrets = build_secrets(issue())
    have = {name: s.version for name, s in secrets.items()}
    stream = DeltaStream()
    assert stream.on_request(delta(sub=NAMES, initial=have), secrets) is None
    stale = {**have, "default": "old"}
    r = DeltaStream().on_request(delta(sub=NAMES, initial=stale), secrets)
    assert r is not None and [x.name for x in r.resources] == ["default"]


def test_rootca_before_the_first_certificate_comes_from_the_initial_roots(issue: Issue) -> None:
    # Envoy's xDS connection verifies the control plane with ROOTCA: it need not wait for the
    # workload certificate.
    first = issue()
    early = build_secrets(None, first.root_bundle_pem)
    assert list(early) == ["ROOTCA"]
    assert early["ROOTCA"].version == build_secrets(first)["ROOTCA"].version


def test_sotw_withholds_a_response_that_would_lack_a_requested_secret(issue: Issue) -> None:
    # Before the certificate only ROOTCA exists: a stream asking for both gets nothing (an
    # answer without ``default`` would tell Envoy it does not exist), one asking for ROOTCA
    # alone (the xDS connection's roots) gets it.
    first = issue()
    early = build_secrets(None, first.root_bundle_pem)
    both = SotwStream()
    assert both.on_request(sotw(names=["ROOTCA", "default"]), early) is None
    alone = SotwStream()
    answer = alone.on_request(sotw(names=["ROOTCA"]), early)
    assert answer is not None and list(_unpack(list(answer.resources))) == ["ROOTCA"]
    pushed = both.on_change(build_secrets(first))
    assert pushed is not None and set(_unpack(list(pushed.resources))) == {"ROOTCA", "default"}
