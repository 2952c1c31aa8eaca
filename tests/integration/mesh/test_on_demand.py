"""On demand (mesh config ``onDemandClusters``) on real traffic through real Envoys.

A client in a mesh of many services holds no outbound cluster and no service's virtual host
until it calls one; its first call to a service it never called answers 200 through the mesh
with the service's routing rules (a header match to a subset, a weighted split over subsets)
applied, and afterwards it holds exactly the clusters (Envoy's ``/clusters``) and virtual
hosts (``/config_dump``) its calls used. A host no service has gets the fallback (under
REGISTRY_ONLY, 502); when a service for it appears, or goes away, the host follows without
Envoy asking again.
"""

from __future__ import annotations

import collections

import httpx

from tests.integration.harness import Mesh, Sidecar, eventually, filler_services

ON_DEMAND = """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: on-demand, namespace: istio-system}
spec:
  meshConfig: {onDemandClusters: true}
"""

FILLERS = 40

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  selector: {app: ratings}
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
---
apiVersion: networking.istio.io/v1
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
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v3}
      weight: 50
""" + filler_services(FILLERS, 8080)

REVIEWS = "reviews.default.svc.cluster.local"


def outbound_clusters(sc: Sidecar) -> set[str]:
    dump = httpx.get(f"http://127.0.0.1:{sc.admin_port}/clusters?format=json", timeout=5).json()
    names = {c["name"] for c in dump.get("cluster_statuses", [])}
    return {n for n in names if n.startswith("outbound|")}


def routes_of(sc: Sidecar) -> set[str]:
    """The virtual hosts of the sidecar's route configurations (its /config_dump), as
    ``host:port`` (over VHDS Envoy holds them as ``<route config>/host:port``)."""
    dump = httpx.get(f"http://127.0.0.1:{sc.admin_port}/config_dump", timeout=5).json()
    out: set[str] = set()
    for section in dump["configs"]:
        for rc in section.get("dynamic_route_configs", []):
            out |= {
                v["name"].rpartition("/")[2] for v in rc["route_config"].get("virtual_hosts", [])
            }
    return out


def test_a_sidecar_holds_only_the_clusters_it_called_and_first_calls_follow_the_rules(
    mesh: Mesh,
) -> None:
    mesh.apply(ON_DEMAND + "---" + SERVICES)
    for v in ("v1", "v2", "v3"):
        mesh.add(f"reviews-{v}", {"app": "reviews", "version": v})
    mesh.add("ratings", {"app": "ratings"})
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
    # No service's virtual host and no outbound cluster, in a mesh of FILLERS + 2 services:
    # only the placeholder each route config starts with.
    eventually(lambda: routes_of(client) == {"on-demand"}, what="the route config")
    assert outbound_clusters(client) == set()

    # The first call ever, with a header match to subset v2: answered by v2.
    first = client.request("reviews:9080", headers={"end-user": "jason"})
    assert first.status_code == 200, first.text
    assert first.json()["version"] == "v2"
    assert outbound_clusters(client) == {f"outbound|9080|v2|{REVIEWS}"}
    assert routes_of(client) == {"on-demand", f"{REVIEWS}:9080"}

    # The weighted split: its first call reaches v1 or v3 (never v2), and both in time.
    seen: collections.Counter[str] = collections.Counter()

    def both_halves() -> bool:
        r = client.request("reviews:9080")
        assert r.status_code == 200, r.text
        seen[r.json()["version"]] += 1
        return {"v1", "v3"} <= set(seen)

    eventually(both_halves, what="both halves of the split")
    assert set(seen) == {"v1", "v3"}

    # A service of its own, with a body on the first request.
    r = httpx.post(
        f"http://127.0.0.1:{client.outbound_port}/rate",
        headers={"Host": "ratings:9080"},
        content=b'{"stars": 5}',
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "ratings"
    assert outbound_clusters(client) == {
        f"outbound|9080|v1|{REVIEWS}",
        f"outbound|9080|v2|{REVIEWS}",
        f"outbound|9080|v3|{REVIEWS}",
        "outbound|9080||ratings.default.svc.cluster.local",
    }
    assert routes_of(client) == {
        "on-demand",
        f"{REVIEWS}:9080",
        "ratings.default.svc.cluster.local:9080",
    }
    # A host no service has: no route (a sidecar without capture under ALLOW_ANY), at once.
    assert client.request("nowhere.example").status_code == 404
    # proxy-status compares with what the proxy asked for, not with every service's.
    assert_in_sync(mesh)


def assert_in_sync(mesh: Mesh) -> None:
    status = mesh.cp.cli("proxy-status", "productpage.default", check=True).stdout
    assert "Clusters Match" in status and "Routes Match" in status, status


REGISTRY_ONLY = """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: on-demand, namespace: istio-system}
spec:
  meshConfig: {onDemandClusters: true, outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
"""

LATE = """
apiVersion: v1
kind: Service
metadata: {name: late}
spec:
  selector: {app: late}
  ports: [{name: http, port: 9080}]
"""


def test_a_host_follows_its_service_appearing_and_going_away(mesh: Mesh) -> None:
    mesh.apply(REGISTRY_ONLY + "---" + SERVICES)
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
    eventually(lambda: routes_of(client) == {"on-demand"}, what="the route config")
    # Asked for before any service has it: REGISTRY_ONLY's 502, from a virtual host made for
    # that host (the route config has no ``*`` virtual host).
    assert client.request("late:9080").status_code == 502
    assert "late:9080" in routes_of(client)
    assert_in_sync(mesh)

    # The service appears: the host's virtual host becomes the service's (Envoy does not ask
    # again: the control plane keeps what the host resolves to current).
    mesh.add("late", {"app": "late"})
    mesh.apply(LATE)
    eventually(lambda: client.request("late:9080").status_code == 200, what="the late service")
    assert client.request("late:9080").json()["name"] == "late"
    assert "late.default.svc.cluster.local:9080" in routes_of(client)
    assert "late:9080" not in routes_of(client)

    # And goes away: the host is blocked again.
    mesh.live().cli("delete", "service", "late", check=True)
    eventually(lambda: client.request("late:9080").status_code == 502, what="blocked again")
    assert "late.default.svc.cluster.local:9080" not in routes_of(client)
