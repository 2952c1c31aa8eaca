"""Istio's standard metrics and access logs from real Envoys on real traffic.

A control plane and sidecars in explicit mode on loopback with mesh certificates; requests go
from one app through its sidecar to another's. Each sidecar's merged Prometheus output (the
agent's ``:15020/stats/prometheus``) must then hold Istio's series with Istio's labels for both
reporters -
including what the server reports about its caller, which must not be forgeable.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from tests.integration.harness import REVIEWS_SERVICE, Mesh, Sidecar, eventually

GRPC_BACKEND = Path(__file__).parents[1] / "grpc_backend.py"
ECHO_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: grpc, port: 9090}]
"""

pytestmark = pytest.mark.integration


_SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} ([0-9.eE+-]+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def series(sidecar: Sidecar, name: str) -> list[tuple[dict[str, str], float]]:
    """``name``'s series as the sidecar's agent serves them (``:15020/stats/prometheus``, Envoy's
    ``istio_*`` renamed to Istio's ``istio_*``): (labels, value)."""
    text = httpx.get(f"http://127.0.0.1:{sidecar.agent_port}/stats/prometheus", timeout=5).text
    out = []
    for line in text.splitlines():
        m = _SERIES.match(line)
        if m and m.group(1) == name:
            out.append((dict(_LABEL.findall(m.group(2))), float(m.group(3))))
    return out


def one(sidecar: Sidecar, name: str, **labels: str) -> dict[str, str]:
    """The single series of ``name`` with ``labels`` (waits for it to appear)."""
    found: list[dict[str, str]] = []

    def check() -> bool:
        found[:] = [
            s for s, _ in series(sidecar, name) if all(s.get(k) == v for k, v in labels.items())
        ]
        return len(found) == 1

    eventually(check, 15, f"one {name} series with {labels} on {sidecar.name}")
    return found[0]


@pytest.fixture
def meshed(mesh: Mesh) -> Iterator[tuple[Mesh, Sidecar, Sidecar]]:
    mesh.apply(REVIEWS_SERVICE)
    server = mesh.add(
        "reviews-v1", {"app": "reviews", "version": "v1"}, service_account="bookinfo-reviews",
        mtls=True,
    )  # fmt: skip
    client = mesh.add(
        "productpage-v1", {"app": "productpage", "version": "v1"}, app_port=None,
        service_account="bookinfo-productpage", mtls=True,
    )  # fmt: skip
    eventually(
        lambda: client.request("reviews:9080", "/").status_code == 200, 30, "reviews through mesh"
    )
    yield mesh, server, client


def test_both_reporters_with_istios_labels_over_mtls(
    meshed: tuple[Mesh, Sidecar, Sidecar],
) -> None:
    _, server, client = meshed
    # The app tries to pass itself off as another workload: its own sidecar overwrites that.
    r = client.request("reviews:9080", "/r", headers={"x-pilotfish-peer-workload": "forged"})
    assert r.status_code == 200
    # The server's app never sees the peer headers.
    assert not [h for h in r.json()["headers"] if h.startswith("x-pilotfish-peer")]
    src = one(client, "istio_requests_total", reporter="source", response_code="200")
    assert src["source_workload"] == "productpage-v1"
    assert src["source_workload_namespace"] == "default"
    assert src["source_app"] == "productpage" and src["source_version"] == "v1"
    assert src["source_principal"] == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    assert src["destination_workload"] == "reviews-v1"
    assert src["destination_workload_namespace"] == "default"
    assert src["destination_app"] == "reviews" and src["destination_version"] == "v1"
    assert src["destination_canonical_service"] == "reviews"
    assert src["destination_canonical_revision"] == "v1"
    assert src["destination_service"] == "reviews.default.svc.cluster.local"
    assert src["destination_service_name"] == "reviews"
    assert src["destination_service_namespace"] == "default"
    assert src["destination_principal"] == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    assert src["request_protocol"] == "http" and src["source_cluster"] == "Kubernetes"
    assert src["connection_security_policy"] == "unknown"
    dst = one(server, "istio_requests_total", reporter="destination", response_code="200")
    assert dst["source_workload"] == "productpage-v1"  # not "forged"
    assert dst["source_workload_namespace"] == "default"
    assert dst["source_app"] == "productpage" and dst["source_version"] == "v1"
    assert dst["source_principal"] == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    assert dst["destination_workload"] == "reviews-v1"
    assert dst["destination_service"] == "reviews.default.svc.cluster.local"
    assert dst["connection_security_policy"] == "mutual_tls"
    # gRPC is told by its content type, on both sides.
    grpc = {"content-type": "application/grpc"}
    assert client.request("reviews:9080", "/g", headers=grpc).status_code == 200
    one(client, "istio_requests_total", reporter="source", request_protocol="grpc")
    one(server, "istio_requests_total", reporter="destination", request_protocol="grpc")
    # The request duration histogram, with Istio's buckets (after Envoy's 5 s stats flush).
    eventually(
        lambda: any(
            s.get("le") == "0.5" and s.get("reporter") == "source"
            for s, _ in series(client, "istio_request_duration_milliseconds_bucket")
        ),
        20,
        "request duration buckets",
    )


def test_a_plaintext_caller_cannot_claim_a_workload(
    meshed: tuple[Mesh, Sidecar, Sidecar],
) -> None:
    _, server, _ = meshed
    forged = {
        "x-pilotfish-peer-workload": "ratings-v1",
        "x-pilotfish-peer-namespace": "default",
        "x-pilotfish-peer-app": "ratings",
    }
    r = httpx.get(f"http://{server.ip}:{server.inbound_port}/plain", headers=forged, timeout=5)
    assert r.status_code == 200
    assert not [h for h in r.json()["headers"] if h.startswith("x-pilotfish-peer")]
    dst = one(
        server, "istio_requests_total", reporter="destination",
        connection_security_policy="none",
    )  # fmt: skip
    assert dst["source_workload"] == "unknown" and dst["source_app"] == "unknown"
    assert dst["source_principal"] == "unknown"


TAG_OVERRIDES = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: namespace-metrics, namespace: default}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT}
      tagOverrides:
        request_host: {value: "request.host"}
        request_protocol: {operation: REMOVE}
"""

MESH_ACCESS_LOG = """
apiVersion: telemetry.istio.io/v1alpha1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: envoy}]
"""


def test_telemetry_tag_overrides_and_the_mesh_wide_access_log(
    meshed: tuple[Mesh, Sidecar, Sidecar],
) -> None:
    mesh, server, client = meshed
    mesh.apply(TAG_OVERRIDES)
    mesh.apply(MESH_ACCESS_LOG)

    def overridden() -> bool:
        client.request("reviews:9080", "/after-override")
        return any(
            s.get("request_host") == "reviews:9080" and "request_protocol" not in s
            for s, _ in series(client, "istio_requests_total")
        )

    eventually(overridden, 30, "request_host added and request_protocol removed")
    # The duration histogram keeps request_protocol: the override matched REQUEST_COUNT only.
    assert all(
        "request_host" not in s
        for s, _ in series(client, "istio_request_duration_milliseconds_bucket")
    )

    def logged() -> bool:
        client.request("reviews:9080", "/access-logged")
        return '"GET /access-logged HTTP/1.1" 200' in server.log.read_text()

    eventually(logged, 30, "the server sidecar's access log line")
    # Envoy flushes each access log file on its own (about every second).
    eventually(
        lambda: '"GET /access-logged HTTP/1.1" 200' in client.log.read_text(),
        10,
        "the client sidecar's access log line",
    )


def test_grpc_requests_and_their_messages_are_counted_by_both_reporters(mesh: Mesh) -> None:
    """A real gRPC client and server through their sidecars over mTLS: a unary call and a
    bidirectional stream of three messages each way."""
    mesh.apply(ECHO_SERVICE)
    app = (sys.executable, str(GRPC_BACKEND), "--host", "{ip}", "--port", "{port}")
    server = mesh.add(
        "echo-v1", {"app": "echo", "version": "v1"}, app_port=9090, mtls=True,
        service_account="echo", app_command=app,
    )  # fmt: skip
    client = mesh.add("caller-v1", {"app": "caller"}, app_port=None, mtls=True)
    target = f"127.0.0.1:{client.outbound_port}"
    with grpc.insecure_channel(target, options=[("grpc.default_authority", "echo:9090")]) as ch:
        say = ch.unary_unary("/echo.Echo/Say")
        chat = ch.stream_stream("/echo.Echo/Chat")

        def unary_ok() -> bool:
            try:
                return bool(say(b"hi", timeout=2) == b"hi")
            except grpc.RpcError:
                return False

        eventually(unary_ok, 30, "a unary call through the mesh")
        replies = list(chat(iter([b"a", b"b", b"c"]), timeout=5))
        assert replies == [b"a", b"b", b"c"]

    def total(sidecar: Sidecar, name: str, reporter: str) -> float:
        return sum(
            v
            for s, v in series(sidecar, name)
            if s.get("reporter") == reporter and s.get("destination_service_name") == "echo"
        )

    for sidecar, reporter in ((client, "source"), (server, "destination")):
        # At least the stream's three messages each way and the successful unary call's one.
        eventually(
            lambda sc=sidecar, r=reporter: (
                total(sc, "istio_request_messages_total", r) >= 4
                and total(sc, "istio_response_messages_total", r) >= 4
            ),
            20,
            f"gRPC message counts on the {reporter} reporter",
        )
        grpc_ok = one(
            sidecar, "istio_requests_total", reporter=reporter, request_protocol="grpc",
            grpc_response_status="0", destination_service_name="echo", response_code="200",
        )  # fmt: skip
        assert grpc_ok["destination_workload"] == "echo-v1"
    # Exactly: successful unary calls (each one message) plus the stream's three.
    calls = sum(
        v
        for s, v in series(client, "istio_requests_total")
        if s.get("reporter") == "source" and s.get("destination_service_name") == "echo"
        and s.get("grpc_response_status") == "0"
    )  # fmt: skip
    assert total(client, "istio_request_messages_total", "source") >= calls - 1 + 3
