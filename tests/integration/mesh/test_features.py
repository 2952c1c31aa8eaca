"""Istio traffic features on real traffic through real Envoys: matches, faults, timeouts,
retries, mirroring, consistent hashing, circuit breaking and gateway wildcard hosts.

One mesh per test module (per worker): a control plane, reviews v1/v2/v3 behind sidecars, two
clients with different labels and an ingress gateway. Each test applies the whole config it
needs (DestinationRule and VirtualService) and waits until Envoy shows it.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import _free_port
from tests.integration.harness import (
    REVIEWS_SERVICE,
    Mesh,
    Sidecar,
    eventually,
    start_control_plane,
)


def rule(traffic_policy: str = "") -> str:
    """The reviews DestinationRule with subsets v1-v3 and an optional trafficPolicy block."""
    policy = f"\n  trafficPolicy:\n{traffic_policy}" if traffic_policy else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews{policy}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
  - {{name: v3, labels: {{version: v3}}}}
"""


def vs(http: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
{http}
"""


@dataclass
class Features:
    mesh: Mesh
    client: Sidecar  # app=productpage
    other: Sidecar  # app=tester
    backends: dict[str, Sidecar]

    def apply(self, *docs: str) -> None:
        self.mesh.apply("\n---\n".join([REVIEWS_SERVICE, *docs]))

    def get(self, path: str = "/", client: Sidecar | None = None, **headers: str) -> httpx.Response:
        return (client or self.client).request("reviews:9080", path, headers=headers)

    def version(self, path: str = "/", client: Sidecar | None = None, **headers: str) -> str:
        r = self.get(path, client, **headers)
        assert r.status_code == 200, (r.status_code, r.text)
        return str(r.json()["version"])


def steadily(check: Callable[[], bool], times: int = 6) -> Callable[[], bool]:
    """``check`` holding ``times`` times in a row: a wait that only the new config satisfies
    (a spread route answers any version now and then)."""
    return lambda: all(check() for _ in range(times))


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Features]:
    tmp = tmp_path_factory.mktemp("features")
    cp = start_control_plane(tmp / "data", tmp / "config", _free_port(), _free_port())
    mesh = Mesh(cp, tmp, _free_port)
    try:
        mesh.apply(REVIEWS_SERVICE + "---" + rule())
        backends = {
            v: mesh.add(f"reviews-{v}", {"app": "reviews", "version": v})
            for v in ("v1", "v2", "v3")
        }
        client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
        other = mesh.add("tester", {"app": "tester"}, app_port=None)
        f = Features(mesh, client, other, backends)
        seen: set[str] = set()
        eventually(lambda: seen.add(f.version()) or seen == {"v1", "v2", "v3"}, 30, "all versions")
        yield f
    finally:
        mesh.stop()
        cp.kill(signal.SIGKILL)


def test_method_and_query_parameter_matches(features: Features) -> None:
    features.apply(
        rule(),
        vs("""
  - match: [{method: {exact: POST}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{queryParams: {version: {exact: v3}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""),
    )
    eventually(
        steadily(lambda: features.version("/?version=v3") == "v3" and features.version() == "v1"),
        what="the query match",
    )
    assert {features.version() for _ in range(10)} == {"v1"}
    post = features.client.request("reviews:9080", "/", method="POST")
    assert post.json()["version"] == "v2"
    assert features.version("/?version=v2") == "v1"  # exact: v2 is not v3


def test_source_labels_route_by_caller(features: Features) -> None:
    features.apply(
        rule(),
        vs("""
  - match: [{sourceLabels: {app: productpage}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""),
    )
    eventually(
        steadily(
            lambda: features.version() == "v2" and features.version(client=features.other) == "v1"
        ),
        what="the source-label match",
    )
    assert {features.version() for _ in range(10)} == {"v2"}
    assert {features.version(client=features.other) for _ in range(10)} == {"v1"}


def test_fault_injection_abort_and_delay(features: Features) -> None:
    features.apply(
        rule(),
        vs("""
  - match: [{headers: {x-fault: {exact: abort}}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{headers: {x-fault: {exact: delay}}}]
    fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""),
    )
    eventually(lambda: features.get(**{"x-fault": "abort"}).status_code == 418, what="the abort")
    assert features.get().status_code == 200
    started = time.monotonic()
    assert features.version(**{"x-fault": "delay"}) == "v1"
    # A lower bound only: the response cannot come before the injected delay.
    assert time.monotonic() - started >= 1.0


def test_route_timeout(features: Features) -> None:
    features.apply(
        rule(),
        vs("""
  - timeout: 0.5s
    route: [{destination: {host: reviews, subset: v1}}]
"""),
    )
    eventually(lambda: features.get("/delay/3000").status_code == 504, what="the timeout")
    assert features.get("/delay/10").status_code == 200


def test_retries_on_5xx_and_disabled(features: Features) -> None:
    features.apply(
        rule(),
        vs("""
  - retries: {attempts: 3, retryOn: 5xx, perTryTimeout: 2s}
    route: [{destination: {host: reviews, subset: v1}}]
"""),
    )
    # Three failures need three retries: more than Istio's default policy (two) gives.
    eventually(
        lambda: features.get(f"/flaky/a-{time.monotonic_ns()}/3").status_code == 200,
        what="three failures retried away",
    )
    features.apply(
        rule(),
        vs("""
  - retries: {attempts: 0}
    route: [{destination: {host: reviews, subset: v1}}]
"""),
    )
    eventually(
        lambda: features.get(f"/flaky/b-{time.monotonic_ns()}/1").status_code == 503,
        what="a failure passed through with retries disabled",
    )


def test_mirroring_copies_requests_to_another_subset(features: Features) -> None:
    features.apply(
        rule(),
        vs("""
  - route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 100}
"""),
    )
    v2 = features.backends["v2"]

    def mirrored() -> bool:
        path = f"/mirror/{time.monotonic_ns()}"
        assert features.version(path) == "v1"  # the answer comes from v1 only
        counts = httpx.get(f"http://{v2.ip}:9080/counts", timeout=5).json()
        return counts.get(path, 0) >= 1

    eventually(mirrored, what="a request mirrored to v2")


def test_consistent_hash_keeps_each_user_on_one_endpoint(features: Features) -> None:
    users = [f"user-{i}" for i in range(12)]
    # Without a hash policy, one user's requests spread over the versions.
    features.apply(rule(), vs("  - route: [{destination: {host: reviews}}]"))
    eventually(
        lambda: len({features.version(**{"x-user": "u"}) for _ in range(9)}) > 1,
        what="round robin across versions",
    )
    features.apply(
        rule("    loadBalancer:\n      consistentHash: {httpHeaderName: x-user}"),
        vs("  - route: [{destination: {host: reviews}}]"),
    )

    def sticky() -> bool:
        return all(len({features.version(**{"x-user": u}) for _ in range(6)}) == 1 for u in users)

    eventually(sticky, what="every user pinned to one version")
    spread = {features.version(**{"x-user": u}) for u in users}
    assert len(spread) > 1, "all users hashed to one version"


def test_circuit_breaker_rejects_excess_concurrent_requests(features: Features) -> None:
    features.apply(
        rule(
            "    connectionPool:\n"
            "      tcp: {maxConnections: 1}\n"
            "      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}"
        ),
        vs("  - route: [{destination: {host: reviews, subset: v1}}]\n    retries: {attempts: 0}"),
    )

    def overloaded() -> bool:
        results: collections.Counter[tuple[int, str]] = collections.Counter()
        lock = threading.Lock()

        def call() -> None:
            r = features.get("/delay/700")
            with lock:
                results[(r.status_code, r.headers.get("x-envoy-overloaded", ""))] += 1

        threads = [threading.Thread(target=call) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return results[(503, "true")] >= 1 and results[(200, "")] >= 1

    eventually(overloaded, 40, what="503s marked x-envoy-overloaded beside successes")


def test_gateway_routes_wildcard_hosts(features: Features) -> None:
    gw = features.mesh.add(
        "ingressgateway",
        {"istio": "ingressgateway"},
        namespace="istio-system",
        proxy_type="router",
        gateway_ports=(80,),
    )
    assert gw.gateway_ports is not None
    port = gw.gateway_ports[80]
    features.apply(
        rule(),
        """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com"]
""",
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: [app.example.com]
  gateways: [web]
  http:
  - route: [{destination: {host: reviews, subset: v3}}]
""",
    )

    def via_gateway(host: str) -> httpx.Response:
        return httpx.get(f"http://{gw.ip}:{port}/", headers={"Host": host}, timeout=10)

    eventually(lambda: via_gateway("app.example.com").status_code == 200, what="the gateway")
    assert via_gateway("app.example.com").json()["version"] == "v3"
    assert via_gateway("app.example.com:80").json()["version"] == "v3"
    assert via_gateway("other.example.com").status_code == 404  # in the Gateway, no route
    assert via_gateway("app.example.org").status_code == 404  # not in the Gateway


def test_setting_authority_or_host_rewrites_the_host(features: Features) -> None:
    """``headers.request.set`` of ``:authority``/``Host`` is a host rewrite (Istio), not a
    header Envoy would refuse: the route update is accepted and the backend sees the host."""
    features.apply(
        rule(),
        vs("""
  - match: [{headers: {x-dest: {exact: v2}}}]
    route:
    - destination: {host: reviews, subset: v2}
      headers: {request: {set: {Host: v2.reviews.internal}}}
  - match: [{headers: {x-dest: {exact: split}}}]
    route:
    - destination: {host: reviews, subset: v2}
      weight: 50
      headers: {request: {set: {":authority": split-v2.internal}}}
    - destination: {host: reviews, subset: v3}
      weight: 50
      headers: {request: {set: {":authority": split-v3.internal}}}
  - route: [{destination: {host: reviews, subset: v1}}]
    headers: {request: {set: {":authority": reviews.rewritten, x-marker: kept}}}
"""),
    )

    def host(dest: str = "") -> tuple[str, str]:
        r = features.get(**({"x-dest": dest} if dest else {}))
        assert r.status_code == 200, (r.status_code, r.text)
        body = r.json()
        return str(body["version"]), str(body["headers"].get("host"))

    eventually(lambda: host() == ("v1", "reviews.rewritten"), what="route-level host rewrite")
    assert features.get().json()["headers"]["x-marker"] == "kept"
    assert host("v2") == ("v2", "v2.reviews.internal")
    seen = {host("split") for _ in range(30)}
    assert seen == {("v2", "split-v2.internal"), ("v3", "split-v3.internal")}


def test_pseudo_header_matches(features: Features) -> None:
    features.apply(
        rule(),
        vs("""
  - match: [{headers: {":scheme": {exact: https}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - match: [{headers: {":method": {exact: POST}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match:
    - headers: {":path": {prefix: /three}}
    - headers: {":authority": {prefix: "reviews.default"}}
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""),
    )

    def version(path: str = "/", method: str = "GET", host: str = "reviews:9080") -> str:
        r = features.client.request(host, path, method=method)
        assert r.status_code == 200, (r.status_code, r.text)
        return str(r.json()["version"])

    eventually(steadily(lambda: version(method="POST") == "v2"), what=":method match")
    assert version() == "v1"  # plain http: the :scheme https rule does not match
    assert version("/three/x") == "v3"
    assert version(host="reviews.default:9080") == "v3"


def test_without_headers_matches_a_request_lacking_the_header(features: Features) -> None:
    features.apply(
        rule(),
        vs("""
  - match: [{withoutHeaders: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""),
    )
    eventually(steadily(lambda: features.version() == "v2"), what="no header at all matches")
    assert features.version(**{"end-user": "jason"}) == "v1"
    assert features.version(**{"end-user": "mike"}) == "v2"


_CORS = '{allowOrigins: [{exact: "https://ok.example"}], allowMethods: [GET]'


def test_redirect_derive_port_keeps_the_request_port(features: Features) -> None:
    """``derivePort: FROM_REQUEST_PORT``: a redirect to another host keeps the port the
    request came in on (Istio sets the port the routes are built for)."""
    features.apply(
        rule(),
        vs("""
  - match: [{uri: {prefix: /moved}}]
    redirect: {authority: elsewhere.example, derivePort: FROM_REQUEST_PORT}
  - route: [{destination: {host: reviews, subset: v1}}]
"""),
    )
    eventually(lambda: features.get("/moved").status_code == 301, what="the redirect")
    assert features.get("/moved").headers["location"] == "http://elsewhere.example:9080/moved"


def test_unmatched_preflights_ignore_answers_at_the_proxy(features: Features) -> None:
    """A CORS preflight from an origin not allowed is answered by the proxy with
    ``unmatchedPreflights: IGNORE`` and reaches the service otherwise (the backend answers
    OPTIONS with 501)."""
    features.apply(
        rule(),
        vs(f"""
  - match: [{{uri: {{prefix: /cors-ignore}}}}]
    corsPolicy: {_CORS}, unmatchedPreflights: IGNORE}}
    route: [{{destination: {{host: reviews, subset: v1}}}}]
  - corsPolicy: {_CORS}}}
    route: [{{destination: {{host: reviews, subset: v1}}}}]
"""),
    )

    def preflight(path: str) -> int:
        headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        return features.client.request("reviews:9080", path, headers, method="OPTIONS").status_code

    eventually(lambda: preflight("/cors-ignore") == 200, what="the proxy's answer")
    assert preflight("/cors-forward") == 501


def test_stat_prefix_gives_the_route_its_own_stats(features: Features) -> None:
    features.apply(
        rule(),
        vs("""
  - match: [{uri: {prefix: /}, statPrefix: reviews-all}]
    route: [{destination: {host: reviews, subset: v1}}]
"""),
    )
    admin = f"http://127.0.0.1:{features.client.admin_port}/stats"

    def requests_counted() -> bool:
        features.get("/stats-me")
        text = httpx.get(admin, params={"filter": "route.reviews-all.upstream_rq_total"}).text
        return any(int(line.rsplit(":", 1)[1]) >= 1 for line in text.splitlines() if line.strip())

    eventually(requests_counted, what="the route's own upstream_rq_total")
