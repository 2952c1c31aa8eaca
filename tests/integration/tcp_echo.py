"""A TCP echo app for tests, after Istio's ``tcp-echo`` sample: every line it reads is sent
back prefixed with the app's own word (``one hello``), so a client sees which version
answered. With ``--tls CERT KEY`` it speaks TLS (a server behind a passthrough gateway).
Stdlib only (it runs as the app behind a sidecar).

    python tcp_echo.py --host 127.0.0.5 --port 9000 --prefix one

Tests import :data:`SCRIPT` (what to run) and :func:`echo` (one line through a connection).
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import ssl
from pathlib import Path

#: This file, run as the app.
SCRIPT = Path(__file__)


def echo(addr: tuple[str, int], line: str = "hello") -> str:
    """One line through a connection to ``addr``: the answer ("one hello"), or "" when the
    connection is refused or closed."""
    try:
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(line.encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return ""
    return data.decode().strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--prefix", default="one")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args()
    prefix = args.prefix.encode()
    context = None
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls[0], args.tls[1])

    class Handler(socketserver.StreamRequestHandler):
        def setup(self) -> None:
            if context is not None:
                self.request = context.wrap_socket(self.request, server_side=True)
            super().setup()

        def handle(self) -> None:
            try:
                for line in self.rfile:
                    self.wfile.write(prefix + b" " + line)
                    self.wfile.flush()
            except (ConnectionError, ssl.SSLError):
                pass

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer((args.host, args.port), Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
