"""A real Envoy terminating mTLS with certificates from the agent's SDS server.

Chain under test: CA (gRPC CreateCertificate) -> SecretManager (key + CSR + token) ->
SdsServer on a Unix socket -> Envoy listener with require_client_certificate and ROOTCA
validation -> a Python TLS client.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from pilotfish.identity import pki
from pilotfish.identity.ca import CASettings, MeshCA
from pilotfish.identity.ca_grpc import grpc_fetcher
from pilotfish.identity.sds_server import SdsServer, SdsSettings
from pilotfish.identity.secret_manager import SecretManager, SecretManagerSettings
from pilotfish.identity.spiffe import SpiffeId

from .conftest import CAEndpoint, EnvoyProcess, TlsResult, client_files, tls_bootstrap, tls_get

pytestmark = pytest.mark.integration

SERVER_ID = SpiffeId("cluster.local", "default", "server")
CLIENT_ID = SpiffeId("cluster.local", "default", "client")


async def _until_served(
    envoy: EnvoyProcess,
    port: int,
    files: tuple[Path, Path, Path],
    accept: Callable[[TlsResult], bool] = lambda r: True,
    deadline: float = 30.0,
) -> TlsResult:
    """Retry the TLS GET until ``accept`` holds (the listener warms once SDS answered)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    last: object = None
    while loop.time() < end:
        assert envoy.proc.poll() is None, f"Envoy exited:\n{envoy.log_tail()}"
        try:
            result = await asyncio.to_thread(tls_get, port, *files)
            if accept(result):
                return result
            last = result
        except (OSError, ssl.SSLError) as e:
            last = e
        await asyncio.sleep(0.1)
    raise AssertionError(f"not served as expected: {last!r}\n{envoy.log_tail()}")


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_envoy_mtls_with_sds_and_rotation(
    api_type: str,
    ca_endpoint: CAEndpoint,
    socket_dir: Path,
    tmp_path: Path,
    free_port: Callable[[], int],
    run_envoy: Callable[[dict], EnvoyProcess],
) -> None:
    token = ca_endpoint.tokens.issue("default", "server", timedelta(hours=1))
    async with grpc.aio.insecure_channel(ca_endpoint.address) as channel:
        manager = SecretManager(SecretManagerSettings(SERVER_ID), grpc_fetcher(channel, token))
        sds = SdsServer(SdsSettings(socket_dir / "sds.sock"), manager)
        async with manager, sds:
            first = await asyncio.wait_for(manager.wait_ready(), 30)
            assert (socket_dir / "sds.sock").stat().st_mode & 0o777 == 0o600

            port = free_port()
            envoy = run_envoy(tls_bootstrap(free_port(), port, socket_dir / "sds.sock", api_type))
            good = client_files(ca_endpoint.ca, CLIENT_ID, tmp_path / "clients", "good")

            result = await _until_served(envoy, port, good)
            assert result.status == 200
            assert result.server_cert.serial_number == first.serial
            assert pki.uri_sans(result.server_cert) == [SERVER_ID.uri]
            assert result.headers["x-peer-identity"] == CLIENT_ID.uri

            # A client whose certificate comes from another CA is refused.
            other_ca = MeshCA.open(CASettings(tmp_path / "other-ca"))
            bad = client_files(other_ca, CLIENT_ID, tmp_path / "clients", "bad")
            with pytest.raises((OSError, ssl.SSLError)):
                await asyncio.to_thread(tls_get, port, bad[0], bad[1], good[2])

            # Forced rotation: the next handshakes present the new certificate, same Envoy.
            pid = envoy.proc.pid
            second = await manager.renew_now()
            assert second.serial != first.serial
            result = await _until_served(
                envoy, port, good, accept=lambda r: r.server_cert.serial_number == second.serial
            )
            assert result.status == 200
            assert envoy.proc.poll() is None and envoy.proc.pid == pid
            assert sds.nacks == []
    assert not (socket_dir / "sds.sock").exists()


async def test_root_rotation_keeps_old_clients_trusted(
    ca_endpoint: CAEndpoint,
    socket_dir: Path,
    tmp_path: Path,
    free_port: Callable[[], int],
    run_envoy: Callable[[dict], EnvoyProcess],
) -> None:
    """After a root rotation Envoy trusts clients of both roots until the old one retires."""
    token = ca_endpoint.tokens.issue("default", "server", timedelta(hours=1))
    ca = ca_endpoint.ca
    async with grpc.aio.insecure_channel(ca_endpoint.address) as channel:
        manager = SecretManager(SecretManagerSettings(SERVER_ID), grpc_fetcher(channel, token))
        sds = SdsServer(SdsSettings(socket_dir / "sds.sock"), manager)
        async with manager, sds:
            await asyncio.wait_for(manager.wait_ready(), 30)
            port = free_port()
            envoy = run_envoy(tls_bootstrap(free_port(), port, socket_dir / "sds.sock", "GRPC"))
            old_client = client_files(ca, CLIENT_ID, tmp_path / "clients", "old")
            assert (await _until_served(envoy, port, old_client)).status == 200

            ca.rotate_root()
            renewed = await manager.renew_now()
            new_client = client_files(ca, CLIENT_ID, tmp_path / "clients", "new")
            # The client trusts the bundle with both roots; the server now chains to the new one.
            both = (new_client[0], new_client[1], new_client[2])
            result = await _until_served(
                envoy, port, both, accept=lambda r: r.server_cert.serial_number == renewed.serial
            )
            assert result.status == 200
            # A client still holding a certificate from the old root is accepted too.
            old_with_bundle = (old_client[0], old_client[1], new_client[2])
            assert (await asyncio.to_thread(tls_get, port, *old_with_bundle)).status == 200

            # Retire the old root: after the next renewal Envoy refuses old-root clients.
            ca.retire_old_roots()
            await manager.renew_now()

            def refused() -> bool:
                try:
                    tls_get(port, *old_with_bundle)
                except (OSError, ssl.SSLError):
                    return True
                return False

            loop = asyncio.get_running_loop()
            end = loop.time() + 30
            while not await asyncio.to_thread(refused):
                assert loop.time() < end, envoy.log_tail()
                await asyncio.sleep(0.1)
            assert (await asyncio.to_thread(tls_get, port, *new_client)).status == 200
