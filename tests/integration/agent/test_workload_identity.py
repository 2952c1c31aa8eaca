"""The agent's certificate against a real CA over TLS, when its ``--ca-file`` is stale.

A pod started during a root rotation may read the mesh roots before its runtime copied the
new ones: the control plane already serves a certificate from the new root, which the stale
file does not trust. The agent must pick up the file once it is replaced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from pilotfish.agent.settings import HostPort, IdentitySettings, XdsTls
from pilotfish.agent.workload_identity import WorkloadIdentity
from pilotfish.identity.ca import CASettings, MeshCA
from pilotfish.identity.ca_grpc import add_to_server
from pilotfish.identity.csr_service import CertificateAuthorityService
from pilotfish.identity.tokens import TokenAuthority

from .conftest import loopback_settings

pytestmark = pytest.mark.integration


async def test_a_replaced_ca_file_lets_a_stale_agent_get_its_certificate(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    ca = MeshCA.open(CASettings(tmp_path / "ca"))
    tokens = TokenAuthority.load_or_create(tmp_path / "ca")
    serving = ca.issue_serving_certificate(["127.0.0.1"])
    server = grpc.aio.server()
    add_to_server(server, CertificateAuthorityService(ca, tokens))
    port = free_port()
    server.add_secure_port(
        f"127.0.0.1:{port}",
        grpc.ssl_server_credentials(
            [(serving.private_key_pem.encode(), serving.cert_chain_pem.encode())]
        ),
    )
    await server.start()
    # The file holds another CA's root: the control plane's certificate is not trusted.
    stale = MeshCA.open(CASettings(tmp_path / "old")).trust_bundle()
    ca_file = tmp_path / "mesh-roots.pem"
    ca_file.write_text(stale)
    settings = loopback_settings(
        tmp_path,
        free_port,
        discovery_address=HostPort("127.0.0.1", port),
        xds_tls=XdsTls(ca_file),
    )
    node = settings.node
    token_file = tmp_path / "token"
    token_file.write_text(tokens.issue(node.namespace, node.service_account, timedelta(hours=1)))
    identity = WorkloadIdentity(settings, IdentitySettings(token_file=token_file))
    try:
        await identity.start()
        # Refused while the file is stale (the TLS handshake fails)...
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(identity.manager.wait_ready(), timeout=2)
        assert "UNAVAILABLE" in identity.manager.last_error, identity.manager.last_error
        # ... and signed once it holds the roots that verify the control plane.
        tmp = ca_file.with_name("new.pem")
        tmp.write_text(ca.trust_bundle())
        tmp.replace(ca_file)
        secret = await asyncio.wait_for(identity.manager.wait_ready(), timeout=20)
        assert secret.root_bundle_pem == ca.trust_bundle()
    finally:
        await identity.stop()
        await server.stop(grace=None)
