"""The CA's gRPC endpoint end to end: a real grpc.aio server on a loopback port."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cryptography.x509.verification import PolicyBuilder, Store

from pilotfish.identity import pki
from pilotfish.identity.ca_grpc import METHOD_PATH, request_certificate
from pilotfish.identity.errors import CertificateRequestError
from pilotfish.identity.spiffe import SpiffeId
from pilotfish.identity.tokens import TokenAuthority

from .conftest import CAEndpoint

pytestmark = pytest.mark.integration

A = SpiffeId("cluster.local", "team-a", "frontend")
B = SpiffeId("cluster.local", "team-b", "backend")


async def test_token_for_a_gets_a_certificate_for_a(ca_endpoint: CAEndpoint) -> None:
    token = ca_endpoint.tokens.issue(A.namespace, A.service_account, timedelta(minutes=5))
    key = pki.generate_private_key()
    async with grpc.aio.insecure_channel(ca_endpoint.address) as channel:
        signed = await request_certificate(
            channel, token, pki.build_csr(key, A), timedelta(hours=2)
        )
    assert signed.identity == A
    chain = pki.load_certificates(signed.cert_chain_pem)
    assert pki.same_public_key(chain[0], key)
    assert pki.uri_sans(chain[0]) == [A.uri]
    assert signed.not_after - signed.not_before == timedelta(hours=2, minutes=1)
    verifier = (
        PolicyBuilder()
        .store(Store(pki.load_certificates(signed.root_bundle_pem)))
        .time(datetime.now(UTC))
        .build_client_verifier()
    )
    verified = verifier.verify(chain[0], chain[1:])
    assert [n.value for n in verified.subjects or []] == [A.uri]


async def test_token_for_a_cannot_get_b(ca_endpoint: CAEndpoint) -> None:
    token = ca_endpoint.tokens.issue(A.namespace, A.service_account, timedelta(minutes=5))
    async with grpc.aio.insecure_channel(ca_endpoint.address) as channel:
        with pytest.raises(CertificateRequestError) as err:
            await request_certificate(channel, token, pki.build_csr(pki.generate_private_key(), B))
    assert err.value.code == "PERMISSION_DENIED"
    assert B.uri in err.value.message and A.uri in err.value.message


async def test_bad_tokens_are_unauthenticated(ca_endpoint: CAEndpoint) -> None:
    csr = pki.build_csr(pki.generate_private_key(), A)
    forged = TokenAuthority(b"x" * 32).issue(A.namespace, A.service_account, timedelta(minutes=5))
    async with grpc.aio.insecure_channel(ca_endpoint.address) as channel:
        for token, reason in ((forged, "signed with another key"), ("abc", "three")):
            with pytest.raises(CertificateRequestError) as err:
                await request_certificate(channel, token, csr)
            assert err.value.code == "UNAUTHENTICATED"
            assert reason in err.value.message
        # No authorization metadata at all.
        call = channel.unary_unary(METHOD_PATH)
        with pytest.raises(grpc.aio.AioRpcError) as rpc_err:
            await call(json.dumps({"csr": csr}).encode(), timeout=10)
        assert rpc_err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_malformed_requests_are_invalid_argument(ca_endpoint: CAEndpoint) -> None:
    token = ca_endpoint.tokens.issue(A.namespace, A.service_account, timedelta(minutes=5))
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(ca_endpoint.address) as channel:
        call = channel.unary_unary(METHOD_PATH)
        for body in (b"not json", b"[]", b'{"csr": 3}', b'{"csr": "-----BEGIN nonsense"}'):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(body, metadata=metadata, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, body
