"""Helpers for identity integration tests: a CA with its gRPC endpoint, Envoy, a TLS client."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509

from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.identity import pki
from pilotfish.identity.ca import CASettings, MeshCA
from pilotfish.identity.ca_grpc import add_to_server
from pilotfish.identity.csr_service import CertificateAuthorityService
from pilotfish.identity.spiffe import SpiffeId
from pilotfish.identity.tokens import TokenAuthority


@dataclass
class CAEndpoint:
    ca: MeshCA
    tokens: TokenAuthority
    service: CertificateAuthorityService
    address: str


@pytest.fixture
async def ca_endpoint(tmp_path: Path, free_port: Callable[[], int]) -> AsyncIterator[CAEndpoint]:
    """A self-signed CA served by CreateCertificate on a loopback port."""
    ca = MeshCA.open(CASettings(tmp_path / "ca"))
    tokens = TokenAuthority.load_or_create(tmp_path / "ca")
    service = CertificateAuthorityService(ca, tokens)
    server = grpc.aio.server()
    add_to_server(server, service)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield CAEndpoint(ca, tokens, service, f"127.0.0.1:{port}")
    finally:
        await server.stop(grace=None)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory for Unix sockets (sun_path is limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="pf-sds-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def client_files(
    ca: MeshCA, identity: SpiffeId, directory: Path, name: str
) -> tuple[Path, Path, Path]:
    """(cert chain, key, trust bundle) files of a client certificate signed by ``ca``."""
    key = pki.generate_private_key()
    chain, bundle = ca.sign_workload(pki.build_csr(key, identity), identity)
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file, ca_file = (directory / f"{name}-{p}.pem" for p in ("cert", "key", "ca"))
    cert_file.write_text(chain)
    key_file.write_text(pki.private_key_pem(key))
    ca_file.write_text(bundle)
    return cert_file, key_file, ca_file


@dataclass
class TlsResult:
    status: int
    server_cert: x509.Certificate
    headers: dict[str, str]


def tls_get(port: int, cert_file: Path, key_file: Path, ca_file: Path) -> TlsResult:
    """One HTTPS/1.1 GET with a client certificate; raises on handshake or read failure."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # workload certificates carry only a SPIFFE URI
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca_file))
    ctx.load_cert_chain(str(cert_file), str(key_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
        assert der is not None
        conn.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    if not data:
        raise ConnectionError("the server closed the connection without answering")
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return TlsResult(int(head[0].split()[1]), x509.load_der_x509_certificate(der), headers)


def _sds_source(api_type: str) -> dict[str, Any]:
    return {
        "resource_api_version": "V3",
        "api_config_source": {
            "api_type": api_type,
            "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}],
        },
    }


def tls_bootstrap(admin_port: int, listener_port: int, sds_socket: Path, api_type: str) -> dict:
    """Envoy config: an mTLS listener whose secrets come over SDS from a Unix socket."""
    sds = _sds_source(api_type)
    return {
        "node": {"id": "sidecar~127.0.0.1~test.default~default.svc.cluster.local", "cluster": "t"},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "sds-grpc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "sds-grpc",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {"endpoint": {"address": {"pipe": {"path": str(sds_socket)}}}}
                                ]
                            }
                        ],
                    },
                }
            ],
            "listeners": [
                {
                    "name": "mtls",
                    "address": {
                        "socket_address": {"address": "127.0.0.1", "port_value": listener_port}
                    },
                    "filter_chains": [
                        {
                            "transport_socket": {
                                "name": "envoy.transport_sockets.tls",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions."
                                    "transport_sockets.tls.v3.DownstreamTlsContext",
                                    "require_client_certificate": True,
                                    "common_tls_context": {
                                        "tls_certificate_sds_secret_configs": [
                                            {"name": "default", "sds_config": sds}
                                        ],
                                        "validation_context_sds_secret_config": {
                                            "name": "ROOTCA",
                                            "sds_config": sds,
                                        },
                                    },
                                },
                            },
                            "filters": [_hcm()],
                        }
                    ],
                }
            ],
        },
    }


def _hcm() -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
            "http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "mtls",
            "route_config": {
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [
                            {
                                "match": {"prefix": "/"},
                                "direct_response": {
                                    "status": 200,
                                    "body": {"inline_string": "ok"},
                                },
                                "response_headers_to_add": [
                                    {
                                        "header": {
                                            "key": "x-peer-identity",
                                            "value": "%DOWNSTREAM_PEER_URI_SAN%",
                                        }
                                    }
                                ],
                            }
                        ],
                    }
                ]
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/"
                        "envoy.extensions.filters.http.router.v3.Router"
                    },
                }
            ],
        },
    }


class EnvoyProcess:
    def __init__(self, config: dict, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "envoy.json"
        self.config_path.write_text(json.dumps(config))
        self.log_path = workdir / "envoy.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                str(envoy_binary()),
                "-c",
                str(self.config_path),
                "--concurrency",
                "1",
                "--use-dynamic-base-id",
                "--log-level",
                "info",
                "--component-log-level",
                "config:debug",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def run_envoy(tmp_path: Path) -> Iterator[Callable[[dict], EnvoyProcess]]:
    """Start Envoys with the given config; every one is stopped at the end of the test."""
    started: list[EnvoyProcess] = []

    def start(config: dict) -> EnvoyProcess:
        envoy = EnvoyProcess(config, tmp_path / f"envoy-{len(started)}")
        started.append(envoy)
        return envoy

    try:
        yield start
    finally:
        for envoy in started:
            envoy.stop()
