"""AuthorizationPolicy on a TCP port (network RBAC before tcp_proxy) with real connections:
HTTP-only fields make an ALLOW rule match nothing and a DENY rule apply to every connection,
as Istio documents; TCP fields (ports) work. CUSTOM with an ``envoyExtAuthzGrpc`` provider
checks each connection with the authorizer (Envoy's ext_authz network filter); an
``envoyExtAuthzHttp`` provider does not check TCP connections, as in Istio."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.authz.conftest import AuthzMesh, Policies
from tests.integration.harness import eventually, free_loopback_ip

pytestmark = pytest.mark.integration

TCP_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: tcp-echo, namespace: default}
spec:
  selector: {app: tcp-echo}
  ports: [{name: tcp, port: 9090}]
"""


def exchange(addr: tuple[str, int], source: str | None = None) -> str:
    """Send one HTTP request over a raw TCP connection (from ``source``, a loopback address,
    if given); ``open`` if the app answered, ``closed`` if the connection was closed without
    an answer."""
    try:
        bind = (source, 0) if source else None
        with socket.create_connection(addr, timeout=5, source_address=bind) as s:
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


# Next to this file: the folder above holds an ``xds`` test package that would shadow
# xds-protos' ``xds`` in the provider's process.
GRPC_PROVIDER_APP = str(Path(__file__).with_name("ext_authz_grpc_provider.py"))
PROVIDER_ARGV = (sys.executable, GRPC_PROVIDER_APP, "--host", "{ip}", "--port", "{port}")

GRPC_PROVIDER_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: ext-authz-grpc, namespace: default}
spec:
  selector: {app: ext-authz-grpc}
  ports: [{name: grpc, port: 9000}]
"""


def provider_mesh_config(kind: str) -> str:
    return f"""
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {{name: ext-authz, namespace: istio-system}}
spec:
  meshConfig:
    extensionProviders:
    - name: tcp-authz
      {kind}:
        service: ext-authz-grpc.default.svc.cluster.local
        port: 9000
"""


CUSTOM_TCP = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tcp-custom, namespace: default}
spec:
  selector:
    matchLabels: {app: tcp-echo}
  action: CUSTOM
  provider: {name: tcp-authz}
  rules:
  - to: [{operation: {ports: ["9090"]}}]
"""


def test_custom_action_on_tcp_asks_a_grpc_authorizer(
    authz_mesh: AuthzMesh, tcp_echo: tuple[str, int], policies: Policies
) -> None:
    allowed, other = free_loopback_ip(), free_loopback_ip()
    policies.apply(GRPC_PROVIDER_SERVICE)
    provider = authz_mesh.mesh.add(
        "ext-authz-grpc",
        {"app": "ext-authz-grpc"},
        app_port=9000,
        app_command=(*PROVIDER_ARGV, "--allow", allowed),
    )
    try:
        policies.apply(provider_mesh_config("envoyExtAuthzGrpc") + "---" + CUSTOM_TCP)

        # The authorizer allows connections from `allowed` only (once the policy and the
        # provider's endpoint have reached the sidecar: before, the check fails and closes).
        def both() -> tuple[str, str]:
            return exchange(tcp_echo, allowed), exchange(tcp_echo, other)

        try:
            eventually(lambda: both() == ("open", "closed"), 30, "the authorizer decides on TCP")
        except AssertionError as exc:
            sc = next(s for s in authz_mesh.mesh.sidecars if s.name == "tcp-echo")
            stats = httpx.get(f"http://127.0.0.1:{sc.admin_port}/stats").text.splitlines()
            seen = [line for line in stats if "ext_authz" in line or "rbac" in line]
            raise AssertionError(f"{both()}: {seen}\n{provider.log.read_text()[-2000:]}") from exc
        assert both() == ("open", "closed")
        # An HTTP provider cannot check a TCP connection: Istio leaves the policy out of TCP
        # chains (it does not deny them all).
        policies.apply(provider_mesh_config("envoyExtAuthzHttp"))
        eventually(lambda: exchange(tcp_echo, other) == "open", 30, "HTTP provider on TCP")
        assert exchange(tcp_echo, allowed) == "open"
    finally:
        authz_mesh.mesh.cp.cli("delete", "authorizationpolicy", "tcp-custom", "--ignore-not-found")
        provider.stop()
