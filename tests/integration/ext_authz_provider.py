"""A small external authorizer for mesh tests, like Istio's ext-authz sample (HTTP only).

Run as ``python3 ext_authz_provider.py --host 127.0.0.11 --port 8000``. Stdlib only (it runs
as an app behind a sidecar). A check request carrying ``x-ext-authz: allow`` is allowed
(200, ``x-ext-authz-check-result: allowed``); any other is denied (403,
``x-ext-authz-check-result: denied``). ``/checks`` tells how many checks it answered.
"""

from __future__ import annotations

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args()
    lock = threading.Lock()
    checks = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            if self.path == "/checks":
                with lock:
                    self._send(200, str(checks[0]).encode(), {})
                return
            with lock:
                checks[0] += 1
            allowed = self.headers.get("x-ext-authz", "") == "allow"
            result = "allowed" if allowed else "denied"
            body = f"{result} by ext_authz for {self.command} {self.path}".encode()
            self._send(200 if allowed else 403, body, {"x-ext-authz-check-result": result})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

        def log_message(self, format: str, *a: object) -> None:
            pass

    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
