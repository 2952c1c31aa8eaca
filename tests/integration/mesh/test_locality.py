"""Locality load balancing on real traffic, as Istio's "Locality failover" and "Locality
weighted distribution" tasks: workloads carry their locality in their topology labels; a
caller in region1/zone1 is served by its own zone while it is healthy, by the failover
region once outlier detection ejects the local backend, and by the regions ``distribute``
names; ``failoverPriority`` puts the endpoints whose labels match first."""

from __future__ import annotations

import httpx

from tests.integration.harness import Mesh, eventually

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: helloworld}
spec:
  selector: {app: helloworld}
  ports: [{name: http, port: 9080}]
"""


def rule(lb: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: helloworld}}
spec:
  host: helloworld
  trafficPolicy:
    connectionPool: {{http: {{maxRequestsPerConnection: 1}}}}
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        enabled: true
{lb}
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 1m
      maxEjectionPercent: 100
"""


FAILOVER = rule("        failover: [{from: region1, to: region2}]")
DISTRIBUTE = rule(
    """        distribute:
        - from: region1/zone1/*
          to: {"region2/zone1/*": 100}"""
)

#: Endpoints labelled ``version: r3z1`` first (a value given in the list replaces the caller's
#: own label, as Istio), ahead of the caller's healthy zone.
FAILOVER_PRIORITY = rule('        failoverPriority: ["version=r3z1"]')

VIRTUAL_SERVICE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: helloworld}
spec:
  hosts: [helloworld]
  http:
  - route: [{destination: {host: helloworld}}]
    retries: {attempts: 2, retryOn: 5xx, retryRemoteLocalities: true}
"""


def topo(region: str, zone: str) -> dict[str, str]:
    return {"topology.kubernetes.io/region": region, "topology.kubernetes.io/zone": zone}


def test_locality_failover_and_distribution(mesh: Mesh) -> None:
    mesh.apply("\n---\n".join([SERVICE, FAILOVER, VIRTUAL_SERVICE]))
    local = mesh.add(
        "hw-region1", {"app": "helloworld", "version": "r1z1", **topo("region1", "zone1")}
    )
    mesh.add("hw-region2", {"app": "helloworld", "version": "r2z1", **topo("region2", "zone1")})
    mesh.add("hw-region3", {"app": "helloworld", "version": "r3z1", **topo("region3", "zone1")})
    client = mesh.add("sleep", {"app": "sleep", **topo("region1", "zone1")}, app_port=None)

    def served_by() -> str:
        r = client.request("helloworld:9080", "/hello")
        assert r.status_code == 200, (r.status_code, r.text)
        return str(r.json()["version"])

    # Only the caller's own zone serves it while it is healthy.
    eventually(lambda: all(served_by() == "r1z1" for _ in range(10)), 30, "the local zone")
    assert {served_by() for _ in range(20)} == {"r1z1"}

    # Distribute: everything from region1/zone1 to region2, although the local zone is up.
    mesh.apply(DISTRIBUTE)
    eventually(lambda: all(served_by() == "r2z1" for _ in range(10)), 30, "the distribution")
    assert {served_by() for _ in range(20)} == {"r2z1"}

    # failoverPriority: the endpoints whose labels match come first, before locality.
    mesh.apply(FAILOVER_PRIORITY)
    eventually(lambda: all(served_by() == "r3z1" for _ in range(10)), 30, "failoverPriority")
    assert {served_by() for _ in range(20)} == {"r3z1"}

    # Failover again; then the local backend fails (503s): outlier detection ejects it and
    # the failover region (region2, not region3) takes over.
    mesh.apply(FAILOVER)
    eventually(lambda: all(served_by() == "r1z1" for _ in range(10)), 30, "failover config")
    assert httpx.get(f"http://{local.ip}:9080/fail/on", timeout=5).status_code == 200
    eventually(lambda: all(served_by() == "r2z1" for _ in range(10)), 30, "the failover region")
    assert {served_by() for _ in range(20)} == {"r2z1"}
