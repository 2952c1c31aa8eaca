"""A tiny HTTP backend for mesh tests: answers every request with who it is, as JSON.

Run as ``python3 backend.py --host 127.0.0.11 --port 9080 --name reviews-v1 --version v1``.
Stdlib only (it runs as the app behind a sidecar). Paths with a behaviour:
``/status/CODE`` answers CODE, ``/delay/MS`` answers after MS milliseconds, ``/flaky/KEY/N``
answers 503 to the first N requests, ``/counts`` tells how many requests each path got,
``/fail/on`` makes every later request answer 503 (``/fail/off`` ends it).
"""

from __future__ import annotations

import argparse
import collections
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9080)
    p.add_argument("--name", default="backend")
    p.add_argument("--version", default="v1")
    args = p.parse_args()

    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    failing = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            path = self.path.split("?", 1)[0]
            parts = path.strip("/").split("/")
            with lock:
                counts[path] += 1
                seen = counts[path]
            status = 200
            if parts[0] == "fail" and len(parts) > 1:  # /fail/on, /fail/off
                (failing.set if parts[1] == "on" else failing.clear)()
            elif failing.is_set():
                status = 503
            elif parts[0] == "status" and len(parts) > 1:  # /status/503
                status = int(parts[1])
            elif parts[0] == "delay" and len(parts) > 1:  # /delay/1500 (milliseconds)
                time.sleep(int(parts[1]) / 1000)
            elif parts[0] == "flaky" and len(parts) > 2:  # /flaky/KEY/N: 503 for the first N
                status = 503 if seen <= int(parts[2]) else 200
            elif parts[0] == "counts":  # how many requests each path got
                with lock:
                    payload = json.dumps(dict(counts)).encode()
                self._send(200, payload)
                return
            body = json.dumps(
                {
                    "name": args.name,
                    "version": args.version,
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                }
            ).encode()
            self._send(status, body)

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, format: str, *a: object) -> None:
            pass

    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
