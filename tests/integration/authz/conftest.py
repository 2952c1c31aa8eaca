"""One mesh per test module (control plane, a ``backend`` workload with its sidecar, a
``frontend`` client sidecar), and ``Policies`` to apply security YAML for one test and take
it away again. Tests of a module share the mesh; each leaves it without policies."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest

from tests.conftest import _free_port
from tests.integration.harness import Mesh, Sidecar, eventually, start_control_plane

T = TypeVar("T")

SERVICES = """
apiVersion: v1
kind: Namespace
metadata: {name: prod}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec:
  selector: {app: backend}
  ports: [{name: http, port: 9080}]
"""


@dataclass
class AuthzMesh:
    mesh: Mesh
    client: Sidecar
    backend: Sidecar
    host: str = "backend:9080"

    def get(self, path: str = "/", method: str = "GET", **headers: str) -> tuple[int, str]:
        r = self.client.request(self.host, path, headers=headers, method=method)
        return r.status_code, r.text


@pytest.fixture(scope="module")
def authz_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthzMesh]:
    tmp = tmp_path_factory.mktemp("authz")
    cp = start_control_plane(tmp / "data", tmp / "config", _free_port(), _free_port())
    mesh = Mesh(cp, tmp, _free_port)
    try:
        mesh.apply(SERVICES)
        backend = mesh.add("backend", {"app": "backend", "version": "v1"})
        client = mesh.add("frontend", {"app": "frontend"}, app_port=None)
        am = AuthzMesh(mesh, client, backend)
        eventually(lambda: am.get()[0] == 200, 30, "frontend -> backend without policies")
        yield am
    finally:
        mesh.stop()
        cp.kill(signal.SIGKILL)


class Policies:
    """Applies YAML for one test; ``clear()`` deletes it and waits for open traffic."""

    def __init__(self, am: AuthzMesh) -> None:
        self.am = am
        self.applied: list[str] = []

    def apply(self, yaml_text: str) -> None:
        self.am.mesh.apply(yaml_text)
        self.applied.append(yaml_text)

    def clear(self) -> None:
        for text in reversed(self.applied):
            self.am.mesh.cp.cli("delete", "--ignore-not-found", "-f", "-", input=text, check=True)
        self.applied.clear()
        eventually(lambda: self.am.get()[0] == 200, 30, "traffic open again after the test")


@pytest.fixture
def policies(authz_mesh: AuthzMesh) -> Iterator[Policies]:
    p = Policies(authz_mesh)
    try:
        yield p
    finally:
        p.clear()


def statuses(am: AuthzMesh, cases: list[tuple[str, str]]) -> list[int]:
    """The status of ``(method, path)`` requests, in order."""
    return [am.get(path, method)[0] for method, path in cases]


def settled(observe: Callable[[], T], expected: T, what: str, timeout: float = 30) -> None:
    """Wait until ``observe()`` gives ``expected``, then check that it holds. A policy change
    reaches new connections at once and pooled ones when Envoy drains them, so tests wait for
    the whole picture, not for one request."""
    eventually(lambda: observe() == expected, timeout, what)
    assert observe() == expected
