"""The agent's CA client over several replicas: a dead one is skipped, a refusal is final."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from datetime import timedelta

import grpc
import pytest

from pilotfish.agent.ca_client import FailoverCaClient
from pilotfish.agent.settings import HostPort
from pilotfish.identity import pki
from pilotfish.identity.errors import CertificateRequestError
from pilotfish.identity.spiffe import SpiffeId

from .conftest import CAEndpoint

A = SpiffeId("cluster.local", "default", "web")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(addresses: list[HostPort], token: Callable[[], str]) -> FailoverCaClient:
    async def no_sleep(_seconds: float) -> None:
        return None

    return FailoverCaClient(
        addresses,
        lambda a: grpc.aio.insecure_channel(str(a)),
        token,
        timeout=5,
        rng=random.Random(1),
        sleep=no_sleep,
    )


async def test_a_dead_replica_is_skipped_and_the_answering_one_kept(
    ca_endpoint: CAEndpoint,
) -> None:
    dead = HostPort("127.0.0.1", _closed_port())
    live = HostPort.parse(ca_endpoint.address)
    token = ca_endpoint.tokens.issue(A.namespace, A.service_account, timedelta(minutes=5))
    client = _client([dead, live], lambda: token)
    try:
        csr = pki.build_csr(pki.generate_private_key(), A)
        signed = await client(csr, timedelta(hours=1))
        assert signed.identity == A
        assert client.current == 1  # the next request goes to the replica that answered
        signed = await client(pki.build_csr(pki.generate_private_key(), A), timedelta(hours=1))
        assert signed.identity == A
    finally:
        await client.close()


async def test_a_refusal_is_not_retried_elsewhere(ca_endpoint: CAEndpoint) -> None:
    live = HostPort.parse(ca_endpoint.address)
    dead = HostPort("127.0.0.1", _closed_port())
    client = _client([live, dead], lambda: "not-a-token")
    try:
        with pytest.raises(CertificateRequestError) as err:
            await client(pki.build_csr(pki.generate_private_key(), A), timedelta(hours=1))
        assert err.value.code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    finally:
        await client.close()


async def test_every_replica_down_raises_unavailable() -> None:
    addresses = [HostPort("127.0.0.1", _closed_port()) for _ in range(2)]
    client = _client(addresses, lambda: "t")
    try:
        with pytest.raises(CertificateRequestError) as err:
            await client(pki.build_csr(pki.generate_private_key(), A), timedelta(hours=1))
        assert err.value.code == "UNAVAILABLE"
    finally:
        await client.close()
