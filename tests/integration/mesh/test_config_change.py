"""Config changes under a steady request loop cause no failed request (make-before-break)."""

from __future__ import annotations

import threading
import time
from collections import Counter

from tests.integration.harness import Mesh, eventually
from tests.integration.mesh.test_routing import SERVICES, weighted

DR_WITH_V4 = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
  - {name: v4, labels: {version: v2}}
"""

V4_ROUTE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v4}
"""

WITH_EXTRA_ROUTE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /extra}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""


class Loop(threading.Thread):
    """Requests as fast as one client can, recording every status."""

    def __init__(self, send: object) -> None:
        super().__init__(daemon=True)
        self.send = send
        self.results: Counter[int] = Counter()
        self.errors: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stopped.is_set():
            path = "/extra" if i % 2 else "/"
            i += 1
            try:
                r = self.send(path)  # type: ignore[operator]
                self.results[r.status_code] += 1
                if r.status_code != 200:
                    flags = r.headers.get("x-envoy-response-flags", "")
                    self.errors.append(f"{r.status_code} {flags} {r.text[:80]}")
            except Exception as e:  # a transport error is a failed request too
                self.results[0] += 1
                self.errors.append(repr(e))


def test_no_failed_request_while_config_changes(mesh: Mesh) -> None:
    mesh.apply(SERVICES + "---" + weighted({"v1": 100}))
    for v in ("v1", "v2", "v3"):
        mesh.add(f"reviews-{v}", {"app": "reviews", "version": v})
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
    eventually(lambda: client.request("reviews:9080").status_code == 200, what="first route")

    loop = Loop(lambda path: client.request("reviews:9080", path))
    loop.start()
    try:
        # Weights flipped 20 times.
        for i in range(20):
            split = {"v1": 80, "v2": 20} if i % 2 == 0 else {"v1": 20, "v3": 80}
            mesh.apply(weighted(split))
            time.sleep(0.05)
        # A subset added, routed to, then unrouted and removed.
        mesh.apply(DR_WITH_V4 + "---" + V4_ROUTE)
        eventually(
            lambda: client.request("reviews:9080").json()["version"] == "v2", what="v4 subset"
        )
        mesh.apply(SERVICES + "---" + weighted({"v1": 100}))
        # A route added, then deleted.
        mesh.apply(WITH_EXTRA_ROUTE)
        eventually(
            lambda: client.request("reviews:9080", "/extra").json()["version"] == "v3",
            what="the extra route",
        )
        mesh.apply(weighted({"v1": 100}))
        eventually(
            lambda: client.request("reviews:9080", "/extra").json()["version"] == "v1",
            what="the extra route removed",
        )
        # And the whole VirtualService deleted: back to the default route.
        assert mesh.cp.cli("delete", "vs", "reviews").returncode == 0
        eventually(lambda: client.request("reviews:9080").json()["version"] != "", what="default")
        # Enough requests sampled whatever the machine's speed (counted, not timed).
        eventually(lambda: sum(loop.results.values()) >= 300, 60, "300 requests in the loop")
    finally:
        loop.stopped.set()
        loop.join(10)
    total = sum(loop.results.values())
    assert total >= 300, f"the loop sent only {total} requests"
    assert loop.results[200] == total, (
        f"{total - loop.results[200]} failed of {total}: {loop.errors[:5]}"
    )
