"""The CA's gRPC endpoint end to end: a real grpc.aio server on a loopback port."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cryptography.x509.verification import PolicyBuilder, Store

from pilotfish.identity import pki
from pilotfish.identity.ca import CASettings, MeshCA
from pilotfish.identity.ca_grpc import METHOD_PATH, add_to_server, request_certificate
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


async def test_over_tls_with_the_mesh_serving_certificate(
    ca_endpoint: CAEndpoint, free_port: Callable[[], int]
) -> None:
    """The deployment shape: the CA endpoint behind TLS, agents trusting the mesh roots."""
    serving = ca_endpoint.ca.issue_serving_certificate(["127.0.0.1"])
    credentials = grpc.ssl_server_credentials(
        [(serving.private_key_pem.encode(), serving.cert_chain_pem.encode())]
    )
    server = grpc.aio.server()
    add_to_server(server, ca_endpoint.service)
    port = free_port()
    server.add_secure_port(f"127.0.0.1:{port}", credentials)
    await server.start()
    try:
        trust = grpc.ssl_channel_credentials(
            root_certificates=ca_endpoint.ca.trust_bundle().encode()
        )
        token = ca_endpoint.tokens.issue(A.namespace, A.service_account, timedelta(minutes=5))
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", trust) as channel:
            signed = await request_certificate(
                channel, token, pki.build_csr(pki.generate_private_key(), A)
            )
        assert signed.identity == A
        other_roots = MeshCA.open(CASettings(ca_endpoint.ca.settings.directory.parent / "x"))
        distrust = grpc.ssl_channel_credentials(
            root_certificates=other_roots.trust_bundle().encode()
        )
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", distrust) as channel:
            with pytest.raises(CertificateRequestError) as err:
                await request_certificate(
                    channel, token, pki.build_csr(pki.generate_private_key(), A), timeout=10
                )
            assert err.value.code == "UNAVAILABLE"
    finally:
        await server.stop(grace=None)
