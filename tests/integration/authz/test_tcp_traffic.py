"""AuthorizationPolicy on a TCP port (network RBAC before tcp_proxy) with real connections:
HTTP-only fields make an ALLOW rule match nothing and a DENY rule apply to every connection,
as Istio documents; TCP fields (ports) work."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.integration.authz.conftest import AuthzMesh
from tests.integration.harness import eventually

pytestmark = pytest.mark.integration

TCP_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: tcp-echo, namespace: default}
spec:
  selector: {app: tcp-echo}
  ports: [{name: tcp, port: 9090}]
"""


def exchange(addr: tuple[str, int]) -> str:
    """Send one HTTP request over a raw TCP connection; ``open`` if the app answered,
    ``closed`` if the connection was closed without an answer."""
    try:
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: tcp-echo\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except (ConnectionResetError, BrokenPipeError):
        return "closed"
    if data.startswith(b"HTTP/1.1 200"):
        return "open"
    return "closed" if not data else f"unexpected {data[:40]!r}"


@pytest.fixture(scope="module")
def tcp_echo(authz_mesh: AuthzMesh) -> Iterator[tuple[str, int]]:
    authz_mesh.mesh.apply(TCP_SERVICE)
    sc = authz_mesh.mesh.add("tcp-echo", {"app": "tcp-echo"}, app_port=9090)
    assert sc.inbound_port is not None
    addr = (sc.ip, sc.inbound_port)
    eventually(lambda: exchange(addr) == "open", 30, "tcp-echo reachable")
    yield addr


def policy(action: str, operation: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: tcp-{action.lower()}, namespace: default}}
spec:
  selector:
    matchLabels: {{app: tcp-echo}}
  action: {action}
  rules:
  - to:
    - operation: {operation}
"""


def test_tcp_semantics_of_http_only_fields(
    authz_mesh: AuthzMesh, tcp_echo: tuple[str, int]
) -> None:
    mesh = authz_mesh.mesh

    def state_becomes(expected: str, what: str) -> None:
        eventually(lambda: exchange(tcp_echo) == expected, 30, what)

    try:
        # ALLOW needing an HTTP field: the rule matches nothing on TCP, so all is denied.
        mesh.apply(policy("ALLOW", '{methods: ["GET"]}'))
        state_becomes("closed", "ALLOW with methods denies TCP")
        # ALLOW on the TCP port itself.
        mesh.apply(policy("ALLOW", '{ports: ["9090"]}'))
        state_becomes("open", "ALLOW ports 9090")
        mesh.apply(policy("ALLOW", '{ports: ["9091"]}'))
        state_becomes("closed", "ALLOW ports 9091 only")
        mesh.cp.cli("delete", "authorizationpolicy", "tcp-allow", check=True)
        state_becomes("open", "no policy")
        # DENY with an HTTP field: the field is ignored, every connection is denied.
        mesh.apply(policy("DENY", '{paths: ["/admin"]}'))
        state_becomes("closed", "DENY with paths denies all TCP")
        # The HTTP backend, not selected, is untouched.
        assert authz_mesh.get()[0] == 200
    finally:
        for name in ("tcp-allow", "tcp-deny"):
            mesh.cp.cli("delete", "authorizationpolicy", name, "--ignore-not-found")
