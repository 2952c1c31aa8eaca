"""gRPC through the mesh with a real gRPC client and server (``grpc_backend.py``) behind real
sidecars: HTTP/2 upstreams chosen by the port name, ``appProtocol`` or a DestinationRule's
``h2UpgradePolicy``, ``grpcStatus`` fault aborts, retries on gRPC status codes and
``perTryTimeout``. Each test applies the config it needs and waits until Envoy shows it.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from tests.conftest import _free_port
from tests.integration.harness import Mesh, Sidecar, eventually, start_control_plane

pytestmark = pytest.mark.integration

GRPC_BACKEND = Path(__file__).parents[1] / "grpc_backend.py"


def service(port: str = "{name: grpc, port: 9090}") -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec:
  selector: {{app: echo}}
  ports: [{port}]
"""


WEB = """
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 9080}]
"""


def vs(http: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo}}
spec:
  hosts: [echo]
  http:
{http}
"""


@dataclass
class GrpcMesh:
    mesh: Mesh
    client: Sidecar
    channel: grpc.Channel
    web: Sidecar
    web_channel: grpc.Channel

    def apply(self, *docs: str) -> None:
        self.mesh.apply("\n---\n".join(docs))

    def call(self, method: str, payload: str, timeout: float = 10) -> str:
        """A unary call; the reply, or the status code's name when the call fails."""
        try:
            reply = self.channel.unary_unary(f"/echo.Echo/{method}")(
                payload.encode(), timeout=timeout
            )
        except grpc.RpcError as exc:
            return str(exc.code().name)
        return bytes(reply).decode()

    def delete(self, kind: str, name: str) -> None:
        res = self.mesh.live().cli("delete", kind, name)
        assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def grpc_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcMesh]:
    tmp = tmp_path_factory.mktemp("grpc")
    cp = start_control_plane(tmp / "data", tmp / "config", _free_port(), _free_port())
    mesh = Mesh(cp, tmp, _free_port)
    try:
        mesh.apply(service() + WEB)
        app = (sys.executable, str(GRPC_BACKEND), "--host", "{ip}", "--port", "{port}")
        mesh.add("echo-v1", {"app": "echo", "version": "v1"}, app_port=9090, app_command=app)
        web = mesh.add("web-v1", {"app": "web"}, app_port=9080)
        client = mesh.add("caller", {"app": "caller"}, app_port=None)
        target = f"127.0.0.1:{client.outbound_port}"
        options = [("grpc.default_authority", "echo:9090"), ("grpc.enable_retries", 0)]
        web_options = [("grpc.default_authority", "web:9080"), ("grpc.enable_retries", 0)]
        with (
            grpc.insecure_channel(target, options=options) as channel,
            grpc.insecure_channel(target, options=web_options) as web_channel,
        ):
            g = GrpcMesh(mesh, client, channel, web, web_channel)
            eventually(lambda: g.call("Say", "hi", 2) == "hi", 30, "a unary call")
            yield g
    finally:
        mesh.stop()
        cp.kill(signal.SIGKILL)


def keys() -> Callable[[str], str]:
    """Fresh keys for Flaky/Stall, so each check starts with no attempt counted."""
    n = iter(range(10**6))
    return lambda prefix: f"{prefix}{next(n)}"


def test_grpc_status_abort_is_seen_by_the_client(grpc_mesh: GrpcMesh) -> None:
    g = grpc_mesh
    g.apply(
        vs("""
  - fault:
      abort:
        grpcStatus: PERMISSION_DENIED
        percentage: {value: 100}
    route:
    - destination: {host: echo}
""")
    )
    eventually(lambda: g.call("Say", "hi", 2) == "PERMISSION_DENIED", 30, "the fault")
    # Aborted at the client's sidecar: the server never saw these calls.
    assert g.call("Flaky", "aborted:0") == "PERMISSION_DENIED"
    g.delete("virtualservice", "echo")
    eventually(lambda: g.call("Say", "hi", 2) == "hi", 30, "the fault removed")
    assert g.call("Flaky", "aborted:0") == "aborted after 1 attempts"


def test_retries_on_grpc_status_codes(grpc_mesh: GrpcMesh) -> None:
    g = grpc_mesh
    key = keys()

    def retries(spec: str) -> str:
        return vs(f"""
  - retries: {spec}
    route:
    - destination: {{host: echo}}
""")

    # Three retries on UNAVAILABLE: a call failing three times succeeds on the fourth
    # attempt (Istio's default policy, two retries, would give up).
    g.apply(retries("{attempts: 3, retryOn: unavailable}"))
    eventually(
        lambda: g.call("Flaky", key("wait") + ":3").endswith("after 4 attempts"),
        30,
        "three retries on unavailable",
    )
    assert g.call("Flaky", "u:3") == "u after 4 attempts"
    # Each step below starts where UNAVAILABLE is retried, so that its wait sees it arrive.
    # attempts: 0 disables retries (Istio's default would retry UNAVAILABLE).
    g.apply(retries("{attempts: 0}"))
    eventually(lambda: g.call("Flaky", key("off") + ":1") == "UNAVAILABLE", 30, "retries off")
    g.delete("virtualservice", "echo")
    # Istio's default policy: two retries on UNAVAILABLE.
    eventually(
        lambda: g.call("Flaky", key("default") + ":2").endswith("after 3 attempts"),
        30,
        "the default retry policy",
    )
    # Retrying only on other codes: UNAVAILABLE reaches the client at the first failure.
    g.apply(retries("{attempts: 3, retryOn: 'cancelled,deadline-exceeded'}"))
    eventually(lambda: g.call("Flaky", key("other") + ":1") == "UNAVAILABLE", 30, "no retry")
    assert g.call("Flaky", "d:1") == "UNAVAILABLE"
    assert g.call("Flaky", "d:1") == "d after 2 attempts"  # the server saw one attempt
    g.delete("virtualservice", "echo")
    eventually(
        lambda: g.call("Flaky", key("back") + ":1").endswith("after 2 attempts"),
        30,
        "the default retry policy again",
    )


def test_per_try_timeout_retries_a_stalled_attempt(grpc_mesh: GrpcMesh) -> None:
    """``perTryTimeout`` cuts a stalled attempt. As in Envoy (and so Istio), a timed-out
    attempt is retried when ``retryOn`` has ``reset`` (or ``5xx``, which includes it); gRPC
    status codes alone retry answers, not timeouts."""
    g = grpc_mesh
    key = keys()

    def retry_on(conditions: str) -> str:
        return vs(f"""
  - retries:
      attempts: 2
      perTryTimeout: 0.5s
      retryOn: {conditions}
    route:
    - destination: {{host: echo}}
""")

    # gRPC codes only: the sidecar gives up on the stalled attempt and answers 504, which
    # the client sees as UNAVAILABLE (not its own 10 s deadline).
    g.apply(retry_on("cancelled,deadline-exceeded,unavailable"))
    eventually(
        lambda: g.call("Stall", key("cut"), timeout=10) == "UNAVAILABLE", 30, "perTryTimeout"
    )
    # With reset: the stalled first attempt is retried, and the second answers.
    g.apply(retry_on("cancelled,deadline-exceeded,unavailable,reset"))
    eventually(
        lambda: g.call("Stall", key("stall"), timeout=10).endswith("after 2 attempts"),
        30,
        "a stalled attempt retried",
    )
    g.delete("virtualservice", "echo")


def test_http2_upstream_by_port_name_or_app_protocol(grpc_mesh: GrpcMesh) -> None:
    """A port named ``http-*`` is HTTP/1.1 upstream, which a gRPC server refuses; a ``grpc``
    or ``h2c`` ``appProtocol`` (or port name, as the fixture's ``grpc``) is HTTP/2."""
    g = grpc_mesh
    try:
        g.apply(service("{name: http-rpc, port: 9090}"))
        eventually(lambda: g.call("Say", "hi", 2) != "hi", 30, "HTTP/1.1 to the gRPC server")
        g.apply(service("{name: http-rpc, port: 9090, appProtocol: h2c}"))
        eventually(lambda: g.call("Say", "hi", 2) == "hi", 30, "appProtocol: h2c")
        # appProtocol wins over the name either way.
        g.apply(service("{name: grpc, port: 9090, appProtocol: http}"))
        eventually(lambda: g.call("Say", "hi", 2) != "hi", 30, "appProtocol: http")
        g.apply(service("{name: rpc, port: 9090, appProtocol: grpc}"))
        eventually(lambda: g.call("Say", "hi", 2) == "hi", 30, "appProtocol: grpc")
    finally:
        g.apply(service())


def test_h2_upgrade_policy_and_use_client_protocol(grpc_mesh: GrpcMesh) -> None:
    """On an ``http`` port the hop between the sidecars is HTTP/1.1; ``useClientProtocol``
    keeps an HTTP/2 client's protocol, ``h2UpgradePolicy: UPGRADE`` upgrades an HTTP/1.1
    client's. Seen in the server sidecar's own counters of HTTP/2 connections."""
    g = grpc_mesh
    web = g.web

    def h2_connections() -> int:
        text = httpx.get(f"http://127.0.0.1:{web.admin_port}/stats", timeout=5).text
        return sum(
            int(line.rsplit(": ", 1)[1])
            for line in text.splitlines()
            if line.startswith("http.inbound_") and ".downstream_cx_http2_total: " in line
        )

    def http1() -> int:
        return g.client.request("web:9080", "/").status_code

    def http2() -> str:
        # A gRPC call is an HTTP/2 request; the HTTP/1.1 app's answer is no gRPC reply.
        try:
            g.web_channel.unary_unary("/any.Service/Call")(b"", timeout=5)
        except grpc.RpcError as exc:
            return str(exc.code().name)
        return "OK"

    def policy(http: str) -> str:
        return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: web
  trafficPolicy:
    connectionPool:
      http: {http}
"""

    assert http1() == 200
    http2()
    assert h2_connections() == 0
    g.apply(policy("{useClientProtocol: true}"))
    eventually(lambda: bool(http2()) and h2_connections() > 0, 30, "the client's HTTP/2 kept")
    assert http1() == 200
    before = h2_connections()
    g.apply(policy("{h2UpgradePolicy: UPGRADE}"))
    eventually(
        lambda: http1() == 200 and h2_connections() > before, 30, "HTTP/1.1 upgraded to HTTP/2"
    )
    g.delete("destinationrule", "web")


def test_max_concurrent_streams_opens_more_connections(grpc_mesh: GrpcMesh) -> None:
    """``maxConcurrentStreams: 1``: three calls in flight at once need three HTTP/2
    connections from the client's sidecar (one carries them all otherwise)."""
    g = grpc_mesh
    key = keys()
    stat = "cluster.outbound|9090||echo.default.svc.cluster.local.upstream_cx_active: "

    def active() -> int:
        text = httpx.get(f"http://127.0.0.1:{g.client.admin_port}/stats", timeout=5).text
        return sum(int(line[len(stat) :]) for line in text.splitlines() if line.startswith(stat))

    def in_flight_connections() -> int:
        stall = g.channel.unary_unary("/echo.Echo/Stall")
        calls = [stall.future(key("cx").encode(), timeout=10) for _ in range(3)]
        try:
            most = 0
            for _ in range(40):
                most = max(most, active())
                if most >= 3:
                    break
            return most
        finally:
            for call in calls:
                call.cancel()

    assert in_flight_connections() < 3
    g.apply(
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  trafficPolicy:
    connectionPool:
      http: {maxConcurrentStreams: 1}
"""
    )
    eventually(lambda: in_flight_connections() >= 3, 30, "a connection per stream")
    g.delete("destinationrule", "echo")


# ---- gRPC-Web ---------------------------------------------------------------------------------

#: An answer: HTTP status, content type, frames (flag byte, bytes).
Answer = tuple[int, str, list[tuple[int, bytes]]]


def grpc_web_call(url: str, host: str, payload: bytes) -> Answer:
    """A gRPC-Web unary call to ``echo.Echo/Say`` as a browser's library sends it (HTTP/1.1
    POST, ``application/grpc-web+proto``, one length-prefixed message): the status, the
    content type and the frames of the answer (flag byte, bytes; flag 0x80: trailers)."""
    body = b"\x00" + len(payload).to_bytes(4, "big") + payload
    res = httpx.post(
        f"{url}/echo.Echo/Say",
        content=body,
        headers={"Host": host, "Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1"},
        timeout=10,
    )
    frames, data = [], res.content
    while len(data) >= 5:
        size = int.from_bytes(data[1:5], "big")
        frames.append((data[0], data[5 : 5 + size]))
        data = data[5 + size :]
    return res.status_code, res.headers.get("content-type", ""), frames


def translated(answer: Answer, payload: bytes) -> bool:
    """The gRPC server's reply came back as gRPC-Web: the message, then the trailers
    (``grpc-status: 0``) as the last frame of the body."""
    status, content_type, frames = answer
    return (
        status == 200
        and content_type.startswith("application/grpc-web")
        and frames[:1] == [(0, payload)]
        and len(frames) == 2
        and frames[1][0] == 0x80
        and b"grpc-status:0" in frames[1][1].replace(b" ", b"")
    )


def wait_translated(url: str, host: str, payload: bytes, what: str) -> None:
    """Wait (generously) until a gRPC-Web call through ``url`` is ``translated``; the failure
    names the last answer seen."""
    last: list[Answer] = []

    def through() -> bool:
        last[:] = [grpc_web_call(url, host, payload)]
        return translated(last[0], payload)

    try:
        eventually(through, 30, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last answer: {last}") from None


def test_grpc_web_is_translated_on_grpc_web_ports(grpc_mesh: GrpcMesh) -> None:
    """A ``grpc-web`` port gets Envoy's gRPC-Web filter, as Istio adds it: a gRPC-Web request
    (HTTP/1.1) reaches the real gRPC server as gRPC and its answer, trailers included, comes
    back framed as gRPC-Web, through the caller's sidecar and straight into the server's
    (its inbound listener translates too). On a ``grpc`` port nothing translates (no trailer
    frame), and plain gRPC keeps working on a ``grpc-web`` port."""
    g = grpc_mesh
    url = f"http://127.0.0.1:{g.client.outbound_port}"
    server = next(sc for sc in g.mesh.sidecars if sc.name == "echo-v1")
    inbound = f"http://{server.ip}:{server.inbound_port}"
    untranslated = grpc_web_call(url, "echo:9090", b"web")
    assert not translated(untranslated, b"web"), untranslated
    try:
        g.apply(service("{name: grpc-web, port: 9090}"))
        wait_translated(url, "echo:9090", b"web", "a gRPC-Web answer on a grpc-web port")
        wait_translated(inbound, "echo:9090", b"in", "a gRPC-Web answer from the server sidecar")
        assert g.call("Say", "native") == "native"
    finally:
        g.apply(service())


def test_grpc_web_gateway_server_translates(grpc_mesh: GrpcMesh) -> None:
    """A Gateway server with ``protocol: GRPC-WEB`` translates at the gateway (the service's
    own port stays ``grpc``), where a browser's gRPC-Web requests enter the mesh; an ``HTTP``
    server on the same gateway does not."""
    g = grpc_mesh
    gw = g.mesh.add(
        "grpc-web-gateway", {"istio": "webgateway"}, proxy_type="router", gateway_ports=(80, 81)
    )
    assert gw.gateway_ports is not None
    g.apply(
        """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web-gateway}
spec:
  selector: {istio: webgateway}
  servers:
  - port: {number: 80, name: grpc-web, protocol: GRPC-WEB}
    hosts: ["*"]
  - port: {number: 81, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo-web}
spec:
  hosts: ["*"]
  gateways: [web-gateway]
  http:
  - route:
    - destination: {host: echo, port: {number: 9090}}
"""
    )
    try:
        web = f"http://{gw.ip}:{gw.gateway_ports[80]}"
        plain = f"http://{gw.ip}:{gw.gateway_ports[81]}"
        wait_translated(web, "echo.example.com", b"gw", "a gRPC-Web answer through the gateway")
        answer = grpc_web_call(plain, "echo.example.com", b"gw")
        assert answer[0] != 404 and not translated(answer, b"gw"), answer
    finally:
        g.delete("virtualservice", "echo-web")
        g.delete("gateway", "web-gateway")
        gw.stop()
