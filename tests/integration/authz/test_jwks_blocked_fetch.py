"""The control plane's JWKS fetcher against real HTTP(S) servers on loopback: keys are fetched
from 127.0.0.1 and 127.0.0.2 normally; with 127.0.0.0/8 (or 127.0.0.2 alone) blocked, the
fetch is refused on the address the name resolves to, on a redirect hop from an allowed
address, and on the ``jwks_uri`` of an allowed discovery document; TLS still verifies the
URL's host name though the connection is made to the checked address."""

from __future__ import annotations

import datetime
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pilotfish.api.meshconfig import parse_cidrs
from pilotfish.model.jwks import JwksFetcher, JwksSettings
from tests.conftest import _free_port
from tests.integration.authz.jwt_issuer import Issuer

pytestmark = pytest.mark.integration

KEYS = Issuer(kid="loopback").jwks()
DISCOVERY = "/.well-known/openid-configuration"


@contextmanager
def serve(address: str, tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, list[str]]]:
    """An issuer at ``address``: ``/jwks.json`` (the keys), ``/to/<url>`` (a 302 to it) and
    ``/via/<host:port>/.well-known/openid-configuration`` (whose ``jwks_uri`` is
    ``http://<host:port>/jwks.json``). Yields its base URL and the paths it
    was asked for."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            if self.path == "/jwks.json":
                self._send(200, KEYS.encode())
            elif self.path.startswith("/to/"):
                self.send_response(302)
                self.send_header("Location", self.path.removeprefix("/to/"))
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path.startswith("/via/") and self.path.endswith(DISCOVERY):
                target = self.path.removeprefix("/via/").removesuffix(DISCOVERY)
                self._send(200, json.dumps({"jwks_uri": f"http://{target}/jwks.json"}).encode())
            else:
                self._send(404, b"{}")

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    port = _free_port()
    server = ThreadingHTTPServer((address, port), Handler)
    scheme = "http"
    if tls is not None:
        # The handshake in the handler thread, not in accept() (which serve_forever runs).
        server.socket = tls.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://{address}:{port}", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def one() -> Iterator[tuple[str, list[str]]]:
    with serve("127.0.0.1") as s:
        yield s


@pytest.fixture(scope="module")
def two() -> Iterator[tuple[str, list[str]]]:
    with serve("127.0.0.2") as s:
        yield s


async def fetch(uri: str, blocked: str = "", verify: bool | str = True) -> tuple[str | None, str]:
    """The keys a fresh fetcher gets for ``uri`` with ``blocked`` CIDRs, and its last error."""
    fetcher = JwksFetcher(
        JwksSettings(blocked_cidrs=parse_cidrs(blocked), verify=verify, timeout=10.0)
    )
    await fetcher.start()
    try:
        fetcher.jwks(uri)
        await fetcher.refresh()
        status = fetcher.status()[0]
        return fetcher.jwks(uri), str(status["last_error"])
    finally:
        await fetcher.stop()


async def test_keys_are_fetched_from_loopback_when_nothing_blocks_it(
    one: tuple[str, list[str]], two: tuple[str, list[str]]
) -> None:
    (a, _), (b, _) = one, two
    assert await fetch(f"{a}/jwks.json") == (KEYS, "")
    assert await fetch(f"{a}/to/{b}/jwks.json") == (KEYS, "")
    assert await fetch(f"{a}/via/{b.removeprefix('http://')}{DISCOVERY}") == (KEYS, "")
    port = a.rsplit(":", 1)[1]
    assert await fetch(f"http://localhost:{port}/jwks.json") == (KEYS, "")


async def test_a_blocked_cidr_refuses_the_address_and_its_name(one: tuple[str, list[str]]) -> None:
    a, asked = one
    port = a.rsplit(":", 1)[1]
    before = len(asked)
    keys, error = await fetch(f"{a}/jwks.json", blocked="127.0.0.0/8")
    assert keys is None
    assert "address blocked: 127.0.0.1" in error, error
    assert "127.0.0.0/8, blocked by BLOCKED_CIDRS_IN_JWKS_URIS" in error, error
    # (localhost may also resolve to ::1)
    keys, error = await fetch(f"http://localhost:{port}/jwks.json", blocked="127.0.0.0/8, ::1")
    assert keys is None
    assert "address blocked: localhost (" in error, error
    assert asked[before:] == []  # the server never saw a request


async def test_a_redirect_from_an_allowed_address_to_a_blocked_one_is_refused(
    one: tuple[str, list[str]], two: tuple[str, list[str]]
) -> None:
    (a, asked_a), (b, asked_b) = one, two
    before = len(asked_b)
    keys, error = await fetch(f"{a}/to/{b}/jwks.json", blocked="127.0.0.2/32")
    assert keys is None
    assert f"GET {b}/jwks.json (redirected from {a}/to/{b}/jwks.json)" in error, error
    assert "127.0.0.2/32, blocked by BLOCKED_CIDRS_IN_JWKS_URIS" in error, error
    assert asked_a[-1] == f"/to/{b}/jwks.json"  # the allowed hop was asked
    assert asked_b[before:] == []  # the blocked one never was


async def test_the_jwks_uri_of_an_allowed_discovery_document_is_checked(
    one: tuple[str, list[str]], two: tuple[str, list[str]]
) -> None:
    (a, _), (b, asked_b) = one, two
    before = len(asked_b)
    uri = f"{a}/via/{b.removeprefix('http://')}{DISCOVERY}"
    keys, error = await fetch(uri, blocked="127.0.0.2")
    assert keys is None
    assert f"GET {b}/jwks.json: address blocked: 127.0.0.2" in error, error
    assert asked_b[before:] == []


def _tls_pair(tmp: Path) -> tuple[ssl.SSLContext, str]:
    """A server context with a self-signed certificate for ``localhost``, and its CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx, str(cert_file)


async def test_https_verifies_the_host_name_of_the_url(tmp_path: Path) -> None:
    server_ctx, ca = _tls_pair(tmp_path)
    with serve("127.0.0.1", tls=server_ctx) as (base, _):
        port = base.rsplit(":", 1)[1]
        assert await fetch(f"https://localhost:{port}/jwks.json", verify=ca) == (KEYS, "")
        # The certificate names localhost, not the address: refused when the URL names it.
        keys, error = await fetch(f"https://127.0.0.1:{port}/jwks.json", verify=ca)
        assert keys is None and "CERTIFICATE_VERIFY_FAILED" in error, error
        keys, error = await fetch(
            f"https://localhost:{port}/jwks.json", blocked="127.0.0.0/8,::1", verify=ca
        )
        assert keys is None and "address blocked: localhost" in error, error
