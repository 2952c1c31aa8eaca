"""Helpers that run the Bookinfo apps as real processes, and a recording backend.

Apps are started the way the local runtime starts them: from their Deployment's ``command``
and ``env`` in ``samples/bookinfo/platform/bookinfo.yaml``, in the repository root, with a few
overrides (loopback address, port 0, upstream URLs). The interpreter runs with ``-E -s -S``: no
site-packages and no ``PYTHON*`` variables, so nothing outside the standard library and the
apps' own directory (their shared ``bookinfo_http`` module) can be imported; ``-I`` would also
drop the script's directory from ``sys.path``. An unusable ``http_proxy`` makes an app that
honoured proxy settings fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
BOOKINFO = REPO / "samples" / "bookinfo"
SRC = BOOKINFO / "src"
#: The module the apps import as a sibling (``from bookinfo_http import ...``).
SHARED_MODULE = "bookinfo_http"
PLATFORM_YAML = BOOKINFO / "platform" / "bookinfo.yaml"
DEAD_PROXY = "http://127.0.0.1:9"
START_DEADLINE_S = 30.0
_LISTENING = re.compile(r"listening on http://[^:\s]+:(\d+)")


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def container_of(deployment: str) -> dict[str, Any]:
    """The single container of Deployment ``deployment`` in bookinfo.yaml."""
    for doc in load_yaml(PLATFORM_YAML):
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == deployment:
            containers = doc["spec"]["template"]["spec"]["containers"]
            assert len(containers) == 1
            return dict(containers[0])
    raise KeyError(deployment)


def _load_module(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_shared_module() -> ModuleType:
    """Import ``samples/bookinfo/src/bookinfo_http.py`` under the name the apps import it by."""
    return _load_module(SHARED_MODULE, SRC / f"{SHARED_MODULE}.py")


def load_app_module(app: str) -> ModuleType:
    """Import ``samples/bookinfo/src/<app>.py`` as a module, to test its pure functions.

    The shared module is loaded first under its own name, so the app's sibling import finds it
    without the test process putting ``samples/bookinfo/src`` on ``sys.path``.
    """
    load_shared_module()
    return _load_module(f"bookinfo_{app}", SRC / f"{app}.py")


@dataclass
class App:
    """One running app process."""

    deployment: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _wait_listening(proc: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        found = _LISTENING.search(log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"{log.stem} exited with {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.02)
    raise RuntimeError(f"{log.stem} did not start listening:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_app(deployment: str, log_dir: Path, **overrides: str) -> App:
    """Start Deployment ``deployment``'s container on a free loopback port; caller stops it."""
    container = container_of(deployment)
    command = list(container["command"]) + list(container.get("args") or [])
    assert command[0] == "python3", command
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "http_proxy": DEAD_PROXY,
        "HTTP_PROXY": DEAD_PROXY,
        "HOSTNAME": f"{deployment}-pod",
    }
    env.update({e["name"]: str(e["value"]) for e in container.get("env") or []})
    env.update({"PORT": "0", "BIND_ADDRESS": "127.0.0.1"})
    env.update(overrides)
    log = log_dir / f"{deployment}-{len(list(log_dir.glob(deployment + '-*.log')))}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-E", "-s", "-S", *command[1:]],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        port = _wait_listening(proc, log)
    except BaseException:
        _stop(proc)
        raise
    return App(deployment, proc, port, log)


@contextmanager
def running(deployment: str, log_dir: Path, **overrides: str) -> Iterator[App]:
    app = start_app(deployment, log_dir, **overrides)
    try:
        yield app
    finally:
        _stop(app.proc)


# --- a backend that records what it receives ------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Recorder:
    """An HTTP backend in the test process: answers with ``status``/``payload``, keeps requests."""

    status: int = 200
    payload: Any = None
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def recording(status: int = 200, payload: Any = None) -> Iterator[Recorder]:
    recorder = Recorder(status, payload)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            with lock:
                recorder.requests.append(Recorded(self.command, self.path, headers))
            body = json.dumps(recorder.payload).encode()
            self.send_response(recorder.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    recorder.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
