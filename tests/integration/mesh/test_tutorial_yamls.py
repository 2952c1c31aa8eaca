"""The tutorials' traffic-management YAMLs (``samples/tutorials``), applied as written with
the real CLI, on real traffic: ``my-service`` v1 and v2 and ``reviews`` v1 and v2 behind
sidecars, a client sending requests through its own. Each check applies one file and waits
until the traffic shows what the tutorial says it does.
"""

from __future__ import annotations

import collections
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import _free_port
from tests.integration.harness import Mesh, Sidecar, eventually, start_control_plane

TUTORIALS = Path(__file__).resolve().parents[3] / "samples" / "tutorials"

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: my-service}
spec:
  selector: {app: my-service}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


@dataclass
class Tutorial:
    mesh: Mesh
    client: Sidecar
    my_service: list[Sidecar]

    def apply(self, name: str) -> None:
        """Apply the file as written and wait until every proxy acknowledged it."""
        path = str(TUTORIALS / name)
        res = self.mesh.cp.cli("apply", "-f", path, "--wait", "--timeout", "30s")
        assert res.returncode == 0, res.stderr

    def delete(self, kind: str, name: str) -> None:
        self.mesh.cp.cli("delete", kind, name, "--ignore-not-found", check=True)

    def version(
        self, path: str = "/", host: str = "my-service", headers: dict[str, str] | None = None
    ) -> str:
        """The version that answered, or the status code when it was not a 200."""
        r = self.client.request(f"{host}:9080", path, headers=headers)
        return str(r.json()["version"]) if r.status_code == 200 else str(r.status_code)

    def versions(self, n: int) -> collections.Counter[str]:
        return collections.Counter(self.version() for _ in range(n))

    def only(
        self,
        want: str,
        n: int = 10,
        path: str = "/",
        host: str = "my-service",
        headers: dict[str, str] | None = None,
    ) -> bool:
        return all(self.version(path, host, headers) == want for _ in range(n))


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tutorial]:
    tmp = tmp_path_factory.mktemp("tutorials")
    cp = start_control_plane(tmp / "data", tmp / "config", _free_port(), _free_port())
    mesh = Mesh(cp, tmp, _free_port)
    try:
        mesh.apply(SERVICES)
        mine = [
            mesh.add(f"my-service-{v}", {"app": "my-service", "version": v}) for v in ["v1", "v2"]
        ]
        for v in ("v1", "v2"):
            mesh.add(f"reviews-{v}", {"app": "reviews", "version": v})
        client = mesh.add("sleep", {"app": "sleep"}, app_port=None)
        t = Tutorial(mesh, client, mine)
        seen: list[collections.Counter[str]] = []

        def both() -> bool:
            seen[:] = [t.versions(10)]
            return seen[0].keys() == {"v1", "v2"}

        try:
            eventually(both, 60, "both versions served")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last answers: {seen}") from None
        # The subsets the routing examples name.
        t.apply("destination-rule-connection-pool-subsets.yaml")
        yield t
    finally:
        mesh.stop()
        cp.kill(signal.SIGKILL)


def test_subset_and_header_routing_examples(tutorial: Tutorial) -> None:
    t = tutorial
    t.apply("virtual-service-reviews-v1.yaml")
    eventually(lambda: t.only("v1", host="reviews"), 30, "reviews: all traffic to v1")

    t.apply("virtual-service-ab-testing.yaml")
    eventually(lambda: t.only("v2", headers={"x-user-type": "beta"}), 30, "x-user-type: beta -> v2")
    assert t.only("v1")

    t.apply("virtual-service-header-user-agent.yaml")
    mozilla = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64)"}
    eventually(lambda: t.only("v2", headers=mozilla), 30, "user-agent prefix Mozilla -> v2")
    assert t.only("v1", headers={"user-agent": "curl/8.0"})

    t.apply("virtual-service-request-routing.yaml")
    eventually(lambda: t.only("v2", path="/api/v2/items"), 30, "prefix /api/v2 -> v2")
    assert t.only("v2", headers={"end-user": "jason"})
    assert t.only("v1", headers={"end-user": "someone-else"})
    t.delete("virtualservice", "my-service")


@pytest.mark.parametrize(
    ("name", "minor"),
    [("virtual-service-80-20.yaml", 20), ("virtual-service-canary-90-10.yaml", 10)],
)
def test_weighted_examples(tutorial: Tutorial, name: str, minor: int) -> None:
    """Both subsets serve, v1 the larger share (counts, not exact ratios: the split is
    random per request)."""
    t = tutorial
    t.apply(name)
    seen = t.versions(200)
    assert seen["v1"] + seen["v2"] == 200, seen
    assert seen["v1"] > seen["v2"] >= 1, seen
    t.delete("virtualservice", "my-service")


def test_timeouts_retries_example_retries_three_times(tutorial: Tutorial) -> None:
    """``retries: {attempts: 3, retryOn: gateway-error,...}``: a request that always gets
    503 is tried four times in all (Istio's default policy, without the example, three)."""
    t = tutorial

    def attempts() -> int:
        def total() -> int:
            return sum(
                httpx.get(f"http://{sc.ip}:9080/counts", timeout=5).json().get("/status/503", 0)
                for sc in t.my_service
            )

        before = total()
        assert t.version("/status/503") == "503"
        return total() - before

    assert attempts() == 3
    t.apply("virtual-service-timeouts-retries.yaml")
    eventually(lambda: attempts() == 4, 30, "three retries")
    t.delete("virtualservice", "my-service")


def test_circuit_breaker_example_ejects_a_failing_instance(tutorial: Tutorial) -> None:
    """``outlierDetection: consecutive5xxErrors: 5``: once v1 fails five times in a row the
    client's sidecar ejects it (Envoy's own counter), and v2 serves every request."""
    t = tutorial
    stat = (
        "cluster.outbound|9080||my-service.default.svc.cluster.local."
        "outlier_detection.ejections_enforced_consecutive_5xx: "
    )

    def ejections() -> int:
        text = httpx.get(f"http://127.0.0.1:{t.client.admin_port}/stats", timeout=5).text
        return sum(int(x[len(stat) :]) for x in text.splitlines() if x.startswith(stat))

    t.apply("destination-rule-circuit-breaker.yaml")  # replaces the subsets' rule
    v1 = t.my_service[0]
    assert ejections() == 0
    assert httpx.get(f"http://{v1.ip}:9080/fail/on", timeout=5).status_code == 200
    try:
        eventually(lambda: t.only("v2", 20) and ejections() >= 1, 30, "v1 ejected")
    finally:
        httpx.get(f"http://{v1.ip}:9080/fail/off", timeout=5)
        t.apply("destination-rule-connection-pool-subsets.yaml")


def test_fault_injection_example_delays_and_aborts_some_requests(tutorial: Tutorial) -> None:
    """10% of requests delayed 5 s and 5% aborted with 500: among 200 requests sent at once
    some answer 500, and the client's sidecar counts injected delays and aborts (Envoy's
    fault filter counters, not timings)."""
    t = tutorial

    def injected(kind: str) -> int:
        text = httpx.get(f"http://127.0.0.1:{t.client.admin_port}/stats", timeout=5).text
        suffix = f".fault.{kind}_injected: "
        return sum(int(x.rsplit(": ", 1)[1]) for x in text.splitlines() if suffix in x)

    assert injected("delays") == injected("aborts") == 0
    t.apply("virtual-service-fault-injection.yaml")
    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = collections.Counter(pool.map(lambda _: t.version(), range(200)))
    t.delete("virtualservice", "my-service")
    assert answers["500"] >= 1 and answers["v1"] + answers["v2"] >= 150, answers
    assert injected("delays") >= 1 and injected("aborts") >= 1


GATEWAY_SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: api-service}
spec:
  selector: {app: api-service}
  ports: [{name: http, port: 8080, targetPort: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-service}
spec:
  selector: {app: web-service}
  ports: [{name: http, port: 80, targetPort: 9080}]
"""


def test_gateway_routes_example_routes_by_prefix_at_the_gateway(tutorial: Tutorial) -> None:
    """``gateway-https.yaml``'s HTTP server and ``virtual-service-gateway-routes.yaml``:
    ``app.example.com/api...`` reaches ``api-service:8080``, anything else ``web-service:80``;
    a host the Gateway does not list gets 404."""
    t = tutorial
    t.mesh.apply(GATEWAY_SERVICES)
    t.mesh.add("api-service", {"app": "api-service", "version": "api"})
    t.mesh.add("web-service", {"app": "web-service", "version": "web"})
    gw = t.mesh.add(
        "istio-ingressgateway",
        {"istio": "ingressgateway"},
        namespace="istio-system",
        proxy_type="router",
        gateway_ports=(80,),
    )
    assert gw.gateway_ports is not None
    url = f"http://{gw.ip}:{gw.gateway_ports[80]}"
    t.apply("gateway-https.yaml")
    t.apply("virtual-service-gateway-routes.yaml")

    def via_gateway(path: str, host: str = "app.example.com") -> str:
        r = httpx.get(url + path, headers={"Host": host}, timeout=10)
        return str(r.json()["version"]) if r.status_code == 200 else str(r.status_code)

    eventually(lambda: via_gateway("/api/users") == "api", 30, "/api to api-service")
    assert via_gateway("/") == "web"
    assert via_gateway("/index.html") == "web"
    assert via_gateway("/", "other.test") == "404"
    t.delete("virtualservice", "my-service")
    t.delete("gateway", "my-gateway")
