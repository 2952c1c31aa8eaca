"""A load tester for canary webhooks: the role of Flagger's ``flagger-loadtester``.

Flagger POSTs each webhook as JSON ``{"name", "namespace", "phase", "checksum", "metadata"}``;
this server runs ``metadata.cmd``:

- ``metadata.type: bash`` (acceptance tests, pre-rollout): ``bash -c CMD`` now; 200 when it
  exits 0, else 500 with its output;
- otherwise (load tests, the default ``cmd`` type): the command starts in the background and
  the answer is 200 at once. The same command is not started twice while it runs (Flagger
  calls the hook every interval).

A command starting with ``hey`` is run by the built-in generator, which reads hey's options
(``-z`` duration, ``-q`` requests per second per worker, ``-c`` workers, ``-n`` requests,
``-m`` method, ``-H`` header, ``-d`` body), so the tutorial's ``hey -z 1m -q 10 -c 2
http://podinfo-canary.test:9898/`` works without the binary. Requests go through the pod's
sidecar like any other. Standard library only; listens on ``LOADTESTER_PORT`` (8080).
``GET /healthz`` answers 200. ``GET /stats`` reports each load command's request and error
counts.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_running: dict[str, threading.Thread] = {}
_stats: dict[str, dict[str, int]] = {}
_lock = threading.Lock()


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


def hey(argv: list[str], stats: dict[str, int]) -> None:
    """hey's main options, with threads and urllib."""
    duration, qps, workers, total = 0.0, 0.0, 50, 200
    method, body, headers, url = "GET", None, {}, ""
    i = 0
    while i < len(argv):
        a = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if a == "-z":
            duration, i = parse_duration(value), i + 2
        elif a == "-q":
            qps, i = float(value), i + 2
        elif a == "-c":
            workers, i = int(value), i + 2
        elif a == "-n":
            total, i = int(value), i + 2
        elif a == "-m":
            method, i = value, i + 2
        elif a == "-d":
            body, i = value.encode(), i + 2
        elif a == "-H":
            name, _, val = value.partition(":")
            headers[name.strip()] = val.strip()
            i += 2
        elif a.startswith("-"):
            i += 2
        else:
            url, i = a, i + 1
    deadline = time.monotonic() + duration if duration else None
    per_worker = None if duration else max(1, total // max(workers, 1))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def worker() -> None:
        sent = 0
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                return
            if per_worker is not None and sent >= per_worker:
                return
            start = time.monotonic()
            req = urllib.request.Request(url, data=body, method=method, headers=headers)
            ok = False
            try:
                with opener.open(req, timeout=10) as resp:
                    resp.read()
                    ok = resp.status < 500
            except urllib.error.HTTPError as err:
                ok = err.code < 500
            except OSError:
                ok = False
            with _lock:
                stats["requests"] += 1
                stats["errors"] += 0 if ok else 1
            sent += 1
            if qps > 0:
                time.sleep(max(0.0, 1.0 / qps - (time.monotonic() - start)))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_background(cmd: str) -> None:
    with _lock:
        running = _running.get(cmd)
        if running is not None and running.is_alive():
            return
        stats = _stats.setdefault(cmd, {"requests": 0, "errors": 0})

    def task() -> None:
        argv = shlex.split(cmd)
        if argv and argv[0] == "hey":
            hey(argv[1:], stats)
        else:
            subprocess.run(["bash", "-c", cmd], check=False, capture_output=True)
        print(f"done: {cmd} {stats}", flush=True)

    thread = threading.Thread(target=task, daemon=True)
    with _lock:
        _running[cmd] = thread
    print(f"started: {cmd}", flush=True)
    thread.start()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.startswith("/stats"):
            with _lock:
                self._send(200, json.dumps(_stats))
            return
        self._send(200, "OK")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, "the body is not JSON")
            return
        meta = payload.get("metadata") or {}
        cmd = str(meta.get("cmd") or "")
        if not cmd:
            self._send(400, "metadata.cmd is required")
            return
        if meta.get("type") == "bash":
            res = subprocess.run(
                ["bash", "-c", cmd], capture_output=True, text=True, timeout=60, check=False
            )
            out = (res.stdout + res.stderr).strip()
            print(f"bash {cmd!r}: exit {res.returncode}", flush=True)
            self._send(200 if res.returncode == 0 else 500, out or f"exit {res.returncode}")
            return
        run_background(cmd)
        self._send(200, f"started {cmd}")


def main() -> None:
    port = int(os.environ.get("LOADTESTER_PORT", "8080"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    print(f"loadtester listening on :{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
