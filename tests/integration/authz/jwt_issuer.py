"""A test JWT issuer: an RSA key pair, its JWKS, signed tokens (RS256, made here with
``cryptography``), and a loopback HTTP server that serves the JWKS like an identity provider."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass
class Issuer:
    issuer: str = "https://auth.example.com"
    kid: str = "test-key"
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def jwks(self) -> str:
        numbers = self.key.public_key().public_numbers()
        jwk = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
               "n": _uint(numbers.n), "e": _uint(numbers.e)}  # fmt: skip
        return json.dumps({"keys": [jwk]})

    def token(self, sub: str = "alice", ttl: float = 3600, **claims: Any) -> str:
        """A token signed by this issuer; ``ttl`` < 0 gives an expired one."""
        now = int(time.time())
        body = {"iss": self.issuer, "sub": sub, "iat": now, "exp": now + int(ttl), **claims}
        return self.sign(body)

    def sign(self, body: dict[str, Any], key: rsa.RSAPrivateKey | None = None) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"
        signature = (key or self.key).sign(
            signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{b64url(signature)}"

    def forged(self, sub: str = "alice", **claims: Any) -> str:
        """Same issuer, same kid, signed with another key."""
        now = int(time.time())
        body = {"iss": self.issuer, "sub": sub, "iat": now, "exp": now + 3600, **claims}
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.sign(body, other)


@contextmanager
def serve_jwks(issuer: Issuer, port: int) -> Iterator[str]:
    """Serve ``issuer``'s JWKS at ``http://127.0.0.1:PORT/jwks.json``; yields that URL."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            if self.path != "/jwks.json":
                self.send_error(404)
                return
            body = issuer.jwks().encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
