"""The SDS server over its Unix socket with a Python gRPC client playing Envoy."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.rpc import status_pb2

from pilotfish.identity import pki
from pilotfish.identity.ca import CASettings, MeshCA
from pilotfish.identity.sds_protocol import SECRET_TYPE, SotwStream
from pilotfish.identity.sds_server import SdsServer, SdsSettings
from pilotfish.identity.secret_manager import SecretCallback, WorkloadSecret
from pilotfish.identity.spiffe import SpiffeId

pytestmark = pytest.mark.integration

ID = SpiffeId("cluster.local", "default", "web")


class StaticSource:
    """A secret source the test sets by hand."""

    def __init__(self, ca: MeshCA) -> None:
        self.ca = ca
        self.secret: WorkloadSecret | None = None
        self.callbacks: list[SecretCallback] = []

    def current(self) -> WorkloadSecret | None:
        return self.secret

    def subscribe(self, callback: SecretCallback) -> Callable[[], None]:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def issue(self) -> WorkloadSecret:
        key = pki.generate_private_key()
        chain, bundle = self.ca.sign_workload(pki.build_csr(key, ID), ID, timedelta(hours=1))
        leaf = pki.load_certificates(chain)[0]
        version = self.secret.version + 1 if self.secret else 1
        self.secret = WorkloadSecret(
            ID,
            chain,
            pki.private_key_pem(key),
            bundle,
            leaf.serial_number,
            leaf.not_valid_before_utc,
            leaf.not_valid_after_utc,
            version,
            leaf.not_valid_after_utc,
        )
        for cb in list(self.callbacks):
            cb(self.secret)
        return self.secret


@pytest.fixture
async def served(tmp_path: Path, socket_dir: Path) -> AsyncIterator[tuple[StaticSource, SdsServer]]:
    source = StaticSource(MeshCA.open(CASettings(tmp_path / "ca")))
    server = SdsServer(SdsSettings(socket_dir / "agent" / "sds.sock"), source)
    await server.start()
    try:
        yield source, server
    finally:
        await server.stop()


async def until(condition: Callable[[], bool], deadline: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


def _unpack(response: discovery_pb2.DiscoveryResponse) -> dict[str, secret_pb2.Secret]:
    out = {}
    for packed in response.resources:
        secret = secret_pb2.Secret()
        assert packed.Unpack(secret)
        out[secret.name] = secret
    return out


async def test_socket_is_private_and_removed(
    served: tuple[StaticSource, SdsServer], socket_dir: Path
) -> None:
    _, server = served
    path = server.settings.socket_path
    st = os.stat(path)
    assert st.st_mode & 0o777 == 0o600
    assert st.st_uid == os.getuid()
    await server.stop()
    assert not path.exists()


async def test_sotw_push_nack_and_stale_nonce(served: tuple[StaticSource, SdsServer]) -> None:
    source, server = served
    first = source.issue()
    requests: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()

    async def outgoing() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while (item := await requests.get()) is not None:
            yield item

    def request(nonce: str = "", version: str = "", error: str = "") -> None:
        msg = discovery_pb2.DiscoveryRequest(
            type_url=SECRET_TYPE,
            resource_names=["default", "ROOTCA"],
            response_nonce=nonce,
            version_info=version,
        )
        msg.node.id = "sidecar~127.0.0.1~web.default~default.svc.cluster.local"
        if error:
            msg.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        requests.put_nowait(msg)

    async with grpc.aio.insecure_channel(server.address) as channel:
        call = sds_pb2_grpc.SecretDiscoveryServiceStub(channel).StreamSecrets(outgoing())
        request()
        r1 = await asyncio.wait_for(call.read(), 10)
        secrets = _unpack(r1)
        assert set(secrets) == {"default", "ROOTCA"}
        chain = secrets["default"].tls_certificate.certificate_chain.inline_bytes.decode()
        assert pki.load_certificates(chain)[0].serial_number == first.serial
        roots = secrets["ROOTCA"].validation_context.trusted_ca.inline_bytes.decode()
        assert roots == first.root_bundle_pem

        request(r1.nonce, "", error="bad key")  # NACK: recorded, nothing resent
        await until(lambda: len(server.nacks) == 1)
        assert server.nacks[0].message == "bad key" and server.nacks[0].nonce == r1.nonce
        second = source.issue()  # a change is pushed with a new nonce
        r2 = await asyncio.wait_for(call.read(), 10)
        assert r2.nonce != r1.nonce
        chain = _unpack(r2)["default"].tls_certificate.certificate_chain.inline_bytes.decode()
        assert pki.load_certificates(chain)[0].serial_number == second.serial

        request(r1.nonce, r1.version_info)  # stale ACK of the old response: ignored
        (stream,) = server.streams()
        assert isinstance(stream, SotwStream)
        request(r2.nonce, r2.version_info)  # ACK
        await until(lambda: stream.acked_version == r2.version_info)
        third = source.issue()
        r3 = await asyncio.wait_for(call.read(), 10)  # the very next message is the push
        chain = _unpack(r3)["default"].tls_certificate.certificate_chain.inline_bytes.decode()
        assert pki.load_certificates(chain)[0].serial_number == third.serial
        assert server.stream_count == 1
        requests.put_nowait(None)
        call.cancel()


async def test_delta_initial_versions_and_push(served: tuple[StaticSource, SdsServer]) -> None:
    source, server = served
    source.issue()
    requests: asyncio.Queue[discovery_pb2.DeltaDiscoveryRequest | None] = asyncio.Queue()

    async def outgoing() -> AsyncIterator[discovery_pb2.DeltaDiscoveryRequest]:
        while (item := await requests.get()) is not None:
            yield item

    async with grpc.aio.insecure_channel(server.address) as channel:
        call = sds_pb2_grpc.SecretDiscoveryServiceStub(channel).DeltaSecrets(outgoing())
        requests.put_nowait(
            discovery_pb2.DeltaDiscoveryRequest(
                type_url=SECRET_TYPE, resource_names_subscribe=["default", "ROOTCA"]
            )
        )
        r1 = await asyncio.wait_for(call.read(), 10)
        assert sorted(r.name for r in r1.resources) == ["ROOTCA", "default"]
        requests.put_nowait(
            discovery_pb2.DeltaDiscoveryRequest(type_url=SECRET_TYPE, response_nonce=r1.nonce)
        )
        source.issue()  # same roots: only ``default`` changes
        r2 = await asyncio.wait_for(call.read(), 10)
        assert [r.name for r in r2.resources] == ["default"]
        requests.put_nowait(None)
        call.cancel()


async def test_fetch_secrets_and_socket_owner(tmp_path: Path, socket_dir: Path) -> None:
    source = StaticSource(MeshCA.open(CASettings(tmp_path / "ca")))
    settings = SdsSettings(
        socket_dir / "owned.sock", owner_uid=os.getuid(), owner_gid=os.getgid(), mode=0o660
    )
    async with SdsServer(settings, source) as server:
        assert os.stat(settings.socket_path).st_mode & 0o777 == 0o660
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
            request = discovery_pb2.DiscoveryRequest(
                type_url=SECRET_TYPE, resource_names=["ROOTCA"]
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.FetchSecrets(request, timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            issued = source.issue()
            response = await stub.FetchSecrets(request, timeout=10)
            roots = _unpack(response)["ROOTCA"].validation_context.trusted_ca.inline_bytes
            assert roots.decode() == issued.root_bundle_pem
    assert not settings.socket_path.exists()


def test_socket_path_length_is_checked() -> None:
    with pytest.raises(ValueError, match="longer than"):
        SdsSettings(Path("/tmp/" + "x" * 120))
