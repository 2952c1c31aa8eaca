"""A podinfo-like test app for canary releases: one Deployment, one port, behaviour by env.

Stands for Flagger's ``podinfo`` image in its tutorials. Standard library only, so the local
pod runtime runs it as ``python3 samples/flagger/podinfo.py`` under any user.

Endpoints (podinfo's):
    GET  /                 ``{"hostname", "version", "message"}``
    GET  /healthz, /readyz ``{"status": "OK"}`` (never fails or waits: probes)
    GET  /status/{code}    answers ``code``
    GET  /delay/{seconds}  answers after ``seconds``
    POST /token            ``{"token": "...", "expiresAt": "..."}`` (the tutorial's acceptance
                           test greps for ``token``)
    GET  /version          ``{"version": ...}``

Every other request is answered like ``/``. Environment:
    PODINFO_PORT           listening port (default 9898)
    PODINFO_VERSION        the version reported (default ``6.0.0``)
    PODINFO_UI_MESSAGE     the message reported (default ``greetings from podinfo``)
    PODINFO_FAIL_PERCENT   answer this percentage of application requests with 500 (default 0)
    PODINFO_DELAY          add this many seconds to every application request (default 0)

``/healthz``, ``/readyz`` and ``/token`` are never failed nor delayed, so a bad version still
starts and reaches its analysis, where the mesh's metrics judge it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERSION = os.environ.get("PODINFO_VERSION", "6.0.0")
MESSAGE = os.environ.get("PODINFO_UI_MESSAGE", "greetings from podinfo")
FAIL_PERCENT = float(os.environ.get("PODINFO_FAIL_PERCENT", "0") or 0)
DELAY = float(os.environ.get("PODINFO_DELAY", "0") or 0)
HOSTNAME = os.environ.get("HOSTNAME") or socket.gethostname()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "podinfo"

    def log_message(self, format: str, *args: Any) -> None:  # one line per request, stdout
        sys.stdout.write(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")
        sys.stdout.flush()

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Podinfo-Version", VERSION)
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def do_GET(self) -> None:
        self._read_body()
        path = self.path.split("?", 1)[0]
        if path in ("/healthz", "/readyz"):
            self._send(200, {"status": "OK"})
            return
        if path == "/version":
            self._send(200, {"version": VERSION})
            return
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1] or 200)
            self._send(code, {"status": code})
            return
        if path.startswith("/delay/"):
            time.sleep(min(float(path.rsplit("/", 1)[1] or 0), 30.0))
        if DELAY > 0:
            time.sleep(DELAY)
        if FAIL_PERCENT > 0 and random.random() * 100 < FAIL_PERCENT:
            self._send(500, {"error": "injected failure", "version": VERSION})
            return
        self._send(200, {"hostname": HOSTNAME, "version": VERSION, "message": MESSAGE})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/token":
            self._read_body()
            self._send(200, {"token": f"podinfo-{VERSION}-{int(time.time())}", "expiresAt": ""})
            return
        self.do_GET()


def main() -> None:
    port = int(os.environ.get("PODINFO_PORT", "9898"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    print(f"podinfo {VERSION} listening on :{port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
