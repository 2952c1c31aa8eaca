"""Istio routing through real Envoys: a control plane, sidecars in explicit mode, real requests.

Each test applies Istio YAML with the CLI and asserts what the client's requests reach.
"""

from __future__ import annotations

import collections
import json
import math
from collections.abc import Iterator

import pytest

from tests.integration.harness import Mesh, Sidecar, eventually

SERVICES = """
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
  - {name: v3, labels: {version: v3}}
"""


def weighted(weights: dict[str, int]) -> str:
    routes = "\n".join(
        f"    - destination: {{host: reviews, subset: {s}}}\n      weight: {w}"
        for s, w in weights.items()
    )
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route:
{routes}
"""


JASON_V2 = """
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination: {host: reviews, subset: v2}
  - match:
    - uri: {prefix: /api/v3}
    route:
    - destination: {host: reviews, subset: v3}
  - route:
    - destination: {host: reviews, subset: v1}
"""


@pytest.fixture
def bookinfo_reviews(mesh: Mesh) -> Iterator[tuple[Mesh, Sidecar]]:
    mesh.apply(SERVICES)
    for v in ("v1", "v2", "v3"):
        mesh.add(f"reviews-{v}", {"app": "reviews", "version": v})
    client = mesh.add("productpage", {"app": "productpage", "version": "v1"}, app_port=None)
    # Every version reachable before the test starts.
    seen: set[str] = set()

    def all_seen() -> bool:
        r = client.request("reviews:9080")
        if r.status_code == 200:
            seen.add(r.json()["version"])
        return seen == {"v1", "v2", "v3"}

    eventually(all_seen, 30, "default routing to reach every version")
    yield mesh, client


def versions(client: Sidecar, n: int, **headers: str) -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    for _ in range(n):
        r = client.request("reviews:9080", headers=headers)
        assert r.status_code == 200, r.text
        out[r.json()["version"]] += 1
    return out


def test_default_route_without_virtual_service_spreads_over_all_versions(
    bookinfo_reviews: tuple[Mesh, Sidecar],
) -> None:
    _, client = bookinfo_reviews
    got = versions(client, 60)
    assert set(got) == {"v1", "v2", "v3"}
    # Every name a pod would use reaches the service.
    for host in ("reviews", "reviews.default", "reviews.default.svc.cluster.local:9080"):
        assert client.request(host).status_code == 200


def test_header_and_path_match_first_match_wins(bookinfo_reviews: tuple[Mesh, Sidecar]) -> None:
    mesh, client = bookinfo_reviews
    mesh.apply(JASON_V2)
    # Both routes seen: the default spread answers v1 five times in a row now and then.
    eventually(
        lambda: (
            versions(client, 5, **{"end-user": "jason"}) == {"v2": 5}
            and versions(client, 5) == {"v1": 5}
        ),
        what="jason on v2, the rest on v1",
    )
    assert versions(client, 20, **{"end-user": "jason"}) == {"v2": 20}
    assert versions(client, 10, **{"end-user": "alice"}) == {"v1": 10}
    r = client.request("reviews:9080", "/api/v3/x")
    assert r.json()["version"] == "v3"
    # Header match is listed first, so it wins over the path.
    r = client.request("reviews:9080", "/api/v3/x", headers={"end-user": "jason"})
    assert r.json()["version"] == "v2"
    # The app sees the headers it sent.
    assert r.json()["headers"]["end-user"] == "jason"


@pytest.mark.parametrize(
    "split",
    [
        {"v1": 90, "v2": 10},
        {"v1": 80, "v2": 20},
        {"v1": 50, "v3": 50},
        {"v1": 50, "v2": 25, "v3": 25},
    ],
)
def test_weighted_split(bookinfo_reviews: tuple[Mesh, Sidecar], split: dict[str, int]) -> None:
    mesh, client = bookinfo_reviews
    # From v1 only, so that the wait below sees the split arrive: every version of the
    # default spread is in a split over all three.
    mesh.apply(weighted({"v1": 100}))
    eventually(lambda: versions(client, 10) == {"v1": 10}, what="v1 only")
    mesh.apply(weighted(split))
    eventually(lambda: set(versions(client, 30)) == set(split), what="the split to apply")
    n = 200
    got = versions(client, n)
    for v, w in split.items():
        # Envoy picks each request's cluster at random by weight: the count is binomial.
        # Four standard deviations: a right split fails about once in 16,000 checks (the
        # fixed ±20 before failed ~0.7% of runs of the three-way split).
        p = w / 100
        expected = n * p
        allowed = 4 * math.sqrt(n * p * (1 - p))
        assert abs(got[v] - expected) <= allowed, (
            f"{v}: {got[v]} of {n}, expected {expected:.0f}±{allowed:.0f} ({got})"
        )


def test_subset_only_and_delete_restores_default(bookinfo_reviews: tuple[Mesh, Sidecar]) -> None:
    mesh, client = bookinfo_reviews
    mesh.apply(weighted({"v3": 100}))
    eventually(lambda: versions(client, 10) == {"v3": 10}, what="v3 only")
    assert mesh.cp.cli("delete", "vs", "reviews").returncode == 0
    eventually(lambda: len(versions(client, 30)) == 3, what="default routing back")


def test_proxy_status_shows_every_proxy_synced(bookinfo_reviews: tuple[Mesh, Sidecar]) -> None:
    mesh, _ = bookinfo_reviews
    mesh.apply(JASON_V2)

    def all_synced() -> bool:
        out = mesh.cp.cli("proxy-status").stdout.splitlines()
        rows = [ln.split() for ln in out[1:] if ln.strip() and not ln.startswith(" ")]
        return len(rows) == 4 and all(r[2:6] == ["SYNCED"] * 4 for r in rows if len(r) >= 6)

    eventually(all_synced, what="every proxy SYNCED")
    out = mesh.cp.cli("proxy-status").stdout
    assert out.splitlines()[0].split()[:6] == ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS"]
    assert "reviews-v1.default" in out and "productpage.default" in out


def test_proxy_config_shows_what_the_proxy_gets(bookinfo_reviews: tuple[Mesh, Sidecar]) -> None:
    mesh, _ = bookinfo_reviews
    mesh.apply(JASON_V2)
    clusters = mesh.cp.cli("proxy-config", "cluster", "productpage.default", check=True).stdout
    rows = [ln.split() for ln in clusters.splitlines()]
    assert rows[0] == [
        "SERVICE",
        "FQDN",
        "PORT",
        "SUBSET",
        "DIRECTION",
        "TYPE",
        "DESTINATION",
        "RULE",
    ]
    subsets = {r[2] for r in rows[1:] if r[0] == "reviews.default.svc.cluster.local"}
    assert subsets == {"-", "v1", "v2", "v3"}

    def jason_route_present() -> bool:
        res = mesh.cp.cli("proxy-config", "route", "productpage", "-n", "default", "-o", "json")
        routes = json.loads(res.stdout)
        return any(
            h.get("name") == "end-user"
            for rc in routes
            for vh in rc.get("virtual_hosts") or []
            for r in vh.get("routes") or []
            for h in (r.get("match") or {}).get("headers") or []
        )

    eventually(jason_route_present, what="the end-user header match in the routes")
    missing = mesh.cp.cli("proxy-config", "cluster", "nobody.default")
    assert missing.returncode != 0 and "not connected" in missing.stderr
