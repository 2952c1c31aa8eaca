"""Egress with pods, as Istio's "Accessing External Services", "Egress TLS Origination" and
"Egress Gateways" tasks run it (the mesh installed with the demo profile, which runs
``istio-egressgateway``): real capture, real Envoys, curl in a pod, and an "external" host
(HTTP on 80, HTTPS on 443 with a CA of its own, dnsmasq answering the tasks' host names) in a
network namespace outside the mesh.

The client pod uses the external DNS server (``dnsPolicy: None`` + ``dnsConfig``), so names
no ServiceEntry declares resolve there and leave through PassthroughCluster (ALLOW_ANY);
ServiceEntry hosts get VIPs in the pod's hosts file (Istio's DNS auto-allocation) and the
sidecar resolves ``resolution: DNS`` through the same DNS server.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from tests.e2e.conftest import Mesh, bring_up
from tests.e2e.external import External, _certs, external_host, serve

pytestmark = pytest.mark.e2e

#: The tasks' host names; the external DNS server answers them with the external host.
NAMES = [
    "httpbin.org", "edition.cnn.com", "www.google.com", "api.example.test", "rr.example.test",
    "en.wikipedia.org", "de.wikipedia.org", "other.example.test", "my-nginx.example.test",
]  # fmt: skip

#: Istio's "Accessing External Services" task, as written.
HTTPBIN_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: httpbin-ext
spec:
  hosts:
  - httpbin.org
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: DNS
  location: MESH_EXTERNAL
"""

#: Istio's "Egress TLS Origination" task, with the test CA (credentialName), sni and SANs.
TLS_ORIGINATION = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: edition-cnn-com
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http-port
    protocol: HTTP
    targetPort: 443
  - number: 443
    name: https-port
    protocol: HTTPS
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: edition-cnn-com
spec:
  host: edition.cnn.com
  trafficPolicy:
    portLevelSettings:
    - port:
        number: 80
      tls:
        mode: SIMPLE # initiates HTTPS when accessing edition.cnn.com
        credentialName: edition-cnn-com-ca
        sni: edition.cnn.com
        subjectAltNames: [SAN]
"""

REGISTRY_ONLY = """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: egress-policy, namespace: istio-system}
spec:
  meshConfig:
    outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, External]]:
    tmp = tmp_path_factory.mktemp("egress")
    with (
        external_host(tmp, NAMES, ["edition.cnn.com"]) as ext,
        bring_up(tmp / "mesh", ("install", "-y", "--set", "profile=demo")) as mesh,
    ):
        mesh.cli("label", "namespace", "default", "istio-injection=enabled", "--overwrite")
        sleep = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "sleep", "namespace": "default"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "sleep"}},
                "template": {
                    "metadata": {"labels": {"app": "sleep"}},
                    "spec": {
                        "dnsPolicy": "None",
                        "dnsConfig": {"nameservers": [ext.ip]},
                        "containers": [
                            {
                                "name": "sleep",
                                "command": ["python3", "-c", "import time; time.sleep(1e9)"],
                            }
                        ],
                    },
                },
            },
        }
        apply(mesh, tmp, sleep)
        mesh.wait_pods_ready("default", 1)
        yield mesh, ext
        mesh.cli("delete", "istiooperator", "egress-policy", "-n", "istio-system", check=False)


def apply(mesh: Mesh, tmp: Path, *docs: dict[str, Any] | str) -> None:
    items: list[Any] = []
    for d in docs:
        items += list(yaml.safe_load_all(d)) if isinstance(d, str) else [d]
    path = tmp / "docs.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    mesh.cli("apply", "-f", str(path))


def curl(mesh: Mesh, url: str, *extra: str) -> tuple[str, str]:
    """(status code, body) of a request from the sleep pod; code ``000`` when no HTTP answer."""
    pod = mesh.pod_named("sleep")
    res = mesh.local(
        "exec", pod, "--", "curl", "-s", "-m", "5", "-w", "\n%{http_code}", *extra, url,
        check=False,
    )  # fmt: skip
    body, _, code = res.stdout.rpartition("\n")
    return (code.strip() or "000"), body.strip()


def settle(check: Any, what: str, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last is True:
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {last}")


def stat_filter(name: str) -> str:
    """Envoy's ``/stats?filter=`` is a regular expression: this one matches ``name`` only."""
    return quote(f"^{re.escape(name)}$", safe="")


def proxy_stat(mesh: Mesh, name: str) -> int:
    pod = mesh.pod_named("sleep")
    out = mesh.local(
        "exec", pod, "-c", "istio-proxy", "--", "curl", "-s",
        f"http://127.0.0.1:15000/stats?filter={stat_filter(name)}", check=False,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


def test_service_entry_registry_only_and_tls_origination(
    world: tuple[Mesh, External], tmp_path: Path
) -> None:
    mesh, ext = world
    pod = mesh.pod_named("sleep")

    # ALLOW_ANY (the default): an unregistered host leaves through PassthroughCluster.
    settle(
        lambda: (
            curl(mesh, "http://www.google.com/")[0] == "200" or curl(mesh, "http://www.google.com/")
        ),
        "passthrough",
    )
    assert curl(mesh, "https://www.google.com/", "-k")[0] == "200"

    # The task's ServiceEntry: httpbin.org gets a VIP in the pod's hosts file and its own
    # cluster (STRICT_DNS through the pod's name server).
    apply(mesh, tmp_path, HTTPBIN_ENTRY)
    entry = json.loads(mesh.cli("get", "serviceentry", "httpbin-ext", "-o", "json").stdout)
    (address,) = entry["status"]["addresses"]
    assert address["host"] == "httpbin.org"
    vip = address["value"]

    def resolved() -> bool | str:
        hosts = mesh.local("exec", pod, "--", "getent", "hosts", "httpbin.org", check=False)
        return hosts.stdout.split()[:1] == [vip] or hosts.stdout

    settle(resolved, "httpbin.org at its VIP in the pod")

    # The name resolves when the runtime has written it; the sidecar gets the entry's
    # cluster over xDS, on its own time (before it, the VIP goes nowhere).
    def through_the_entry() -> bool | tuple[str, str]:
        got = curl(mesh, "http://httpbin.org/headers")
        return got[0] == "200" or got

    settle(through_the_entry, "httpbin.org answering through the sidecar")
    stat = "cluster.outbound|80||httpbin.org.upstream_rq_200"
    before = proxy_stat(mesh, stat)
    code, body = curl(mesh, "http://httpbin.org/headers")
    assert code == "200" and "host=httpbin.org path=/headers" in body, body
    assert proxy_stat(mesh, stat) == before + 1

    # Mesh-wide REGISTRY_ONLY: the registered host still works, an unknown one gets Istio's
    # 502 (HTTP) or a reset connection (TLS), as in the task.
    apply(mesh, tmp_path, REGISTRY_ONLY)
    settle(
        lambda: (
            curl(mesh, "http://www.google.com/")[0] == "502" or curl(mesh, "http://www.google.com/")
        ),
        "block_all",
    )
    assert curl(mesh, "https://www.google.com/", "-k")[0] == "000"
    assert curl(mesh, "http://httpbin.org/status/418")[0] == "418"
    # A raw address nothing declares is blackholed too.
    assert curl(mesh, f"http://{ext.ip}/")[0] == "502"

    # TLS origination: the app speaks HTTP to port 80, its sidecar opens TLS to 443 and
    # verifies the server with the Secret's CA and the SAN.
    ca = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "edition-cnn-com-ca", "namespace": "default"},
        "data": {"ca.crt": base64.b64encode(ext.ca_pem.encode()).decode()},
    }
    apply(mesh, tmp_path, ca, TLS_ORIGINATION.replace("SAN", "edition.cnn.com"))

    def originated() -> bool | tuple[str, str]:
        got = curl(mesh, "http://edition.cnn.com/politics")
        return got == ("200", "external tls=True host=edition.cnn.com path=/politics") or got

    settle(originated, "TLS origination")
    # The HTTPS port itself passes the app's own TLS through (the app verifies, here -k).
    assert curl(mesh, "https://edition.cnn.com/", "-k")[1].startswith("external tls=True")
    # A SAN the server's certificate does not carry: the sidecar refuses the server.
    apply(mesh, tmp_path, TLS_ORIGINATION.replace("SAN", "other.example.com"))
    settle(
        lambda: (
            curl(mesh, "http://edition.cnn.com/")[0] == "503"
            or curl(mesh, "http://edition.cnn.com/")
        ),
        "SAN mismatch refused",
    )
    mesh.cli("delete", "-f", "-", input=TLS_ORIGINATION)


def test_static_entry_with_endpoints_and_addresses(
    world: tuple[Mesh, External], tmp_path: Path
) -> None:
    """``resolution: STATIC`` with ``endpoints`` and an ``addresses`` VIP of the user's: the
    app dials the VIP, the sidecar sends it to the endpoint (under REGISTRY_ONLY too)."""
    mesh, ext = world
    apply(
        mesh,
        tmp_path,
        REGISTRY_ONLY,
        f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: api-static
spec:
  hosts: [api.example.test]
  addresses: [240.0.10.10]
  location: MESH_INTERNAL
  ports:
  - {{number: 8080, name: http, protocol: HTTP, targetPort: 80}}
  resolution: STATIC
  endpoints:
  - address: {ext.ip}
""",
    )
    settle(
        lambda: (
            curl(mesh, "http://api.example.test:8080/x")[0] == "200"
            or curl(mesh, "http://api.example.test:8080/x")
        ),
        "static entry",
    )
    code, body = curl(mesh, "http://api.example.test:8080/x")
    assert code == "200"
    assert body == "external tls=False host=api.example.test:8080 path=/x"


def test_resolution_none_dns_round_robin_and_workload_selector(
    world: tuple[Mesh, External], tmp_path: Path
) -> None:
    """Under REGISTRY_ONLY, each resolution mode lets through what its entry declares:
    ``NONE`` the address the app dialled (ORIGINAL_DST), ``DNS_ROUND_ROBIN`` the host resolved
    by the pod's name server (one address at a time, LOGICAL_DNS), and ``STATIC`` with a
    ``workloadSelector`` the WorkloadEntries it selects."""
    mesh, ext = world
    apply(mesh, tmp_path, REGISTRY_ONLY)
    raw = f"http://{ext.ip}/raw"
    # No entry declares the external address: blocked (502 on an HTTP port, else closed).
    settle(lambda: curl(mesh, raw)[0] in ("000", "502") or curl(mesh, raw), "raw address blocked")
    apply(
        mesh,
        tmp_path,
        f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: raw-none}}
spec:
  hosts: [raw.example.test]
  addresses: ["{ext.ip}/32"]
  location: MESH_EXTERNAL
  ports: [{{number: 80, name: tcp, protocol: TCP}}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: rr}}
spec:
  hosts: [rr.example.test]
  location: MESH_EXTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: DNS_ROUND_ROBIN
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: ext-vm, labels: {{app: ext-vm}}}}
spec:
  address: {ext.ip}
  labels: {{app: ext-vm}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: selected}}
spec:
  hosts: [vm.example.test]
  location: MESH_INTERNAL
  ports: [{{number: 8080, name: http, protocol: HTTP, targetPort: 80}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: ext-vm}}}}
""",
    )
    expected = {
        raw: f"external tls=False host={ext.ip} path=/raw",
        "http://rr.example.test/rr": "external tls=False host=rr.example.test path=/rr",
        "http://vm.example.test:8080/vm": "external tls=False host=vm.example.test:8080 path=/vm",
    }

    def answers() -> dict[str, tuple[str, str]]:
        return {url: curl(mesh, url) for url in expected}

    settle(
        lambda: all(a == ("200", expected[u]) for u, a in answers().items()) or answers(),
        "NONE, DNS_ROUND_ROBIN and workloadSelector entries",
    )
    # Each went through its own cluster (not a passthrough).
    assert proxy_stat(mesh, "cluster.outbound|80||raw.example.test.upstream_cx_total") > 0
    assert proxy_stat(mesh, "cluster.outbound|80||rr.example.test.upstream_rq_200") > 0
    assert proxy_stat(mesh, "cluster.outbound|8080||vm.example.test.upstream_rq_200") > 0
    # The WorkloadEntry no longer selected: no endpoint left (503 from the sidecar).
    mesh.cli("delete", "workloadentry", "ext-vm", check=True)
    settle(
        lambda: curl(mesh, "http://vm.example.test:8080/vm")[0] == "503", "entry without endpoints"
    )
    for name in ("raw-none", "rr", "selected"):
        mesh.cli("delete", "serviceentry", name, check=False)


#: Istio's "Egress Gateways" task (HTTP), as written.
EGRESS_GATEWAY_TASK = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http-port
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - edition.cnn.com
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: egressgateway-for-cnn
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: direct-cnn-through-egress-gateway
spec:
  hosts:
  - edition.cnn.com
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port:
          number: 80
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 80
    route:
    - destination:
        host: edition.cnn.com
        port:
          number: 80
      weight: 100
"""


def gateway_stat(mesh: Mesh, pod: str, name: str) -> int:
    out = mesh.local(
        "exec", pod, "-n", "istio-system", "-c", "istio-proxy", "--", "curl", "-s",
        f"http://127.0.0.1:15000/stats?filter={stat_filter(name)}", check=False,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


def test_egress_gateway_task_routes_mesh_traffic_through_the_gateway(
    world: tuple[Mesh, External], tmp_path: Path
) -> None:
    mesh, ext = world
    # The demo profile runs istio-egressgateway as a pod in istio-system.
    (gw,) = mesh.wait_pods_ready("istio-system", 1)
    assert gw["metadata"]["labels"]["istio"] == "egressgateway"
    # It resolves edition.cnn.com (resolution: DNS) through a name server of its pod, given
    # here as one would with `kubectl patch deployment` (the runtime rolls the pod).
    dep = json.loads(
        mesh.cli(
            "get", "deployment", "istio-egressgateway", "-n", "istio-system", "-o", "json"
        ).stdout
    )
    for f in ("resourceVersion", "uid", "creationTimestamp", "generation"):
        dep["metadata"].pop(f, None)
    dep.pop("status", None)
    dep["spec"]["template"]["spec"]["dnsConfig"] = {"nameservers": [ext.ip]}
    apply(mesh, tmp_path, dep)

    def rolled() -> bool | list[str]:
        pods = mesh.pods("istio-system")
        names = [p["metadata"]["name"] for p in pods]
        fresh = [p for p in pods if p["metadata"]["name"] != gw["metadata"]["name"]]
        return (len(pods) == 1 and bool(fresh) and fresh[0]["status"].get("podIP") is not None
                and any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in fresh[0]["status"].get("conditions") or [])) or names  # fmt: skip

    settle(rolled, "the egress gateway's pod rolled", timeout=60)
    pod = mesh.pods("istio-system")[0]["metadata"]["name"]

    apply(mesh, tmp_path, REGISTRY_ONLY, EGRESS_GATEWAY_TASK)
    stat = "cluster.outbound|80||edition.cnn.com.upstream_rq_200"

    def through_gateway() -> bool | tuple[str, str]:
        got = curl(mesh, "http://edition.cnn.com/politics")
        return got == ("200", "external tls=False host=edition.cnn.com path=/politics") or got

    before = gateway_stat(mesh, pod, stat)
    settle(through_gateway, "edition.cnn.com through the egress gateway")
    # The request left the mesh from the egress gateway's Envoy, not from the sidecar.
    assert gateway_stat(mesh, pod, stat) > before
    assert (
        proxy_stat(
            mesh,
            "cluster.outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local.upstream_rq_200",
        )
        > 0
    )
    mesh.cli("delete", "-f", "-", input=EGRESS_GATEWAY_TASK)


#: The task's variant with mutual TLS from the sidecar to the egress gateway (ISTIO_MUTUAL).
EGRESS_GATEWAY_MTLS = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    hosts:
    - edition.cnn.com
    tls:
      mode: ISTIO_MUTUAL
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: egressgateway-for-cnn
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
      portLevelSettings:
      - port:
          number: 443
        tls:
          mode: ISTIO_MUTUAL
          sni: edition.cnn.com
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: direct-cnn-through-egress-gateway
spec:
  hosts:
  - edition.cnn.com
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port:
          number: 443
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 443
    route:
    - destination:
        host: edition.cnn.com
        port:
          number: 80
      weight: 100
"""


def test_egress_gateway_with_mutual_tls_from_the_sidecar(
    world: tuple[Mesh, External], tmp_path: Path
) -> None:
    """Runs after the HTTP variant (the gateway's pod has its name server by then)."""
    mesh, _ = world
    entry = EGRESS_GATEWAY_TASK.split("---")[0]
    apply(mesh, tmp_path, REGISTRY_ONLY, entry, EGRESS_GATEWAY_MTLS)
    (gw,) = mesh.wait_pods_ready("istio-system", 1)
    pod = gw["metadata"]["name"]
    # The gateway's 443 server terminates mesh mTLS: the sidecar's cluster to it carries TLS.
    ssl = (
        "cluster.outbound|443|cnn|istio-egressgateway.istio-system.svc.cluster.local.ssl.handshake"
    )
    stat = "cluster.outbound|80||edition.cnn.com.upstream_rq_200"
    before = gateway_stat(mesh, pod, stat)

    def through_gateway() -> bool | tuple[str, str]:
        got = curl(mesh, "http://edition.cnn.com/politics")
        return got == ("200", "external tls=False host=edition.cnn.com path=/politics") or got

    settle(through_gateway, "edition.cnn.com through the egress gateway over mTLS")
    assert gateway_stat(mesh, pod, stat) > before
    assert proxy_stat(mesh, ssl) > 0
    mesh.cli("delete", "-f", "-", input=EGRESS_GATEWAY_MTLS)
    mesh.cli("delete", "-f", "-", input=entry)


#: Istio's "Accessing External Services" / "Egress using Wildcard Hosts": TLS to any
#: wikipedia.org name, the app's own TLS passed through, matched by SNI.
WILDCARD_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: wikipedia
spec:
  hosts:
  - "*.wikipedia.org"
  ports:
  - number: 443
    name: https
    protocol: TLS
  resolution: NONE
"""


def test_wildcard_entry_matches_tls_by_sni_under_registry_only(
    world: tuple[Mesh, External], tmp_path: Path
) -> None:
    """A wildcard host has no address to match: the sidecar matches the TLS connection's SNI
    (``*.wikipedia.org``), sends it on to the address the app dialled and counts it under the
    entry's cluster; a name the entry does not cover is refused under REGISTRY_ONLY, even to
    the same address."""
    mesh, ext = world
    apply(mesh, tmp_path, REGISTRY_ONLY)
    url = "https://en.wikipedia.org/wiki/Main_Page"
    settle(lambda: curl(mesh, url, "-k")[0] == "000" or curl(mesh, url, "-k"), "blocked")
    apply(mesh, tmp_path, WILDCARD_ENTRY)
    stat = "cluster.outbound|443||*.wikipedia.org.upstream_cx_total"

    def through_the_entry() -> bool | tuple[str, str]:
        got = curl(mesh, url, "-k")
        return got == ("200", "external tls=True host=en.wikipedia.org path=/wiki/Main_Page") or got

    settle(through_the_entry, "en.wikipedia.org through the wildcard entry")
    before = proxy_stat(mesh, stat)
    assert curl(mesh, "https://de.wikipedia.org/", "-k")[0] == "200"
    assert proxy_stat(mesh, stat) == before + 1
    # The same external address with an SNI no entry declares, and without SNI: refused.
    other = ("--resolve", f"other.example.test:443:{ext.ip}")
    assert curl(mesh, "https://other.example.test/", "-k", *other)[0] == "000"
    assert curl(mesh, f"https://{ext.ip}/", "-k")[0] == "000"
    assert proxy_stat(mesh, stat) == before + 1
    # The listener as proxy-config shows it: a chain for the entry's SNI on port 443.
    pod = mesh.pod_named("sleep")
    listeners = mesh.cli("proxy-config", "listener", pod, "--port", "15001", "-o", "json").stdout
    assert '"*.wikipedia.org"' in listeners
    mesh.cli("delete", "-f", "-", input=WILDCARD_ENTRY)


#: Istio's "Egress Gateways with TLS Origination" task: the sidecar sends plain HTTP to the
#: egress gateway over mesh mTLS, the gateway originates TLS to the external server (SIMPLE;
#: here with a CA from a Secret, as the external server's CA is in no system bundle).
EGRESS_TLS_ORIGINATION = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: https-port-for-tls-origination
      protocol: HTTPS
    hosts:
    - edition.cnn.com
    tls:
      mode: ISTIO_MUTUAL
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: egressgateway-for-cnn
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
      portLevelSettings:
      - port:
          number: 80
        tls:
          mode: ISTIO_MUTUAL
          sni: edition.cnn.com
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: direct-cnn-through-egress-gateway
spec:
  hosts:
  - edition.cnn.com
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port:
          number: 80
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 80
    route:
    - destination:
        host: edition.cnn.com
        port:
          number: 443
      weight: 100
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: originate-tls-for-edition-cnn-com
spec:
  host: edition.cnn.com
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
    portLevelSettings:
    - port:
        number: 443
      tls:
        mode: SIMPLE # initiates HTTPS for connections to edition.cnn.com
        credentialName: cnn-ca
"""


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "istio-system"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def test_egress_gateway_originates_tls(world: tuple[Mesh, External], tmp_path: Path) -> None:
    """Runs after the HTTP gateway task (the gateway's pod has its name server by then)."""
    mesh, ext = world
    (gw,) = mesh.wait_pods_ready("istio-system", 1)
    pod = gw["metadata"]["name"]
    apply(mesh, tmp_path, REGISTRY_ONLY, secret("cnn-ca", {"ca.crt": ext.ca_pem}))
    apply(mesh, tmp_path, EGRESS_TLS_ORIGINATION)
    handshakes = "cluster.outbound|443||edition.cnn.com.ssl.handshake"
    before = gateway_stat(mesh, pod, handshakes)

    def originated() -> bool | tuple[str, str]:
        got = curl(mesh, "http://edition.cnn.com/politics")
        return got == ("200", "external tls=True host=edition.cnn.com path=/politics") or got

    settle(originated, "TLS originated by the egress gateway")
    # The gateway opened the TLS connection; the sidecar reached the gateway over mesh mTLS.
    assert gateway_stat(mesh, pod, handshakes) > before
    to_gateway = "cluster.outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local"
    assert proxy_stat(mesh, f"{to_gateway}.ssl.handshake") > 0
    # A CA that did not sign the server's certificate: the gateway refuses the server.
    apply(mesh, tmp_path, secret("cnn-ca", {"ca.crt": _certs(tmp_path, ["x"])[0]}))
    settle(
        lambda: (
            curl(mesh, "http://edition.cnn.com/")[0] == "503"
            or curl(mesh, "http://edition.cnn.com/")
        ),
        "an untrusted server refused",
    )
    mesh.cli("delete", "-f", "-", input=EGRESS_TLS_ORIGINATION)


#: The task's mutual TLS origination: the gateway presents a client certificate from
#: ``credentialName`` to a server that requires one (port 443 of the entry, dialled at 8443).
EGRESS_MTLS_ORIGINATION = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: nginx
spec:
  hosts:
  - my-nginx.example.test
  ports:
  - number: 80
    name: http
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
    targetPort: 8443
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    hosts:
    - my-nginx.example.test
    tls:
      mode: ISTIO_MUTUAL
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: egressgateway-for-nginx
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: nginx
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
      portLevelSettings:
      - port:
          number: 443
        tls:
          mode: ISTIO_MUTUAL
          sni: my-nginx.example.test
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: direct-nginx-through-egress-gateway
spec:
  hosts:
  - my-nginx.example.test
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: nginx
        port:
          number: 443
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 443
    route:
    - destination:
        host: my-nginx.example.test
        port:
          number: 443
      weight: 100
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: originate-mtls-for-nginx
spec:
  host: my-nginx.example.test
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
    portLevelSettings:
    - port:
        number: 443
      tls:
        mode: MUTUAL
        credentialName: client-credential # the secret that holds the client certificate
        sni: my-nginx.example.test
"""


def test_egress_gateway_originates_mutual_tls(world: tuple[Mesh, External], tmp_path: Path) -> None:
    mesh, ext = world
    (gw,) = mesh.wait_pods_ready("istio-system", 1)
    pod = gw["metadata"]["name"]
    (tmp_path / "server").mkdir()
    (tmp_path / "client").mkdir()
    server_ca, server_crt, server_key = _certs(tmp_path / "server", ["my-nginx.example.test"])
    client_ca, client_crt, client_key = _certs(tmp_path / "client", ["client.example.test"])
    client_ca_file = tmp_path / "client-ca.pem"
    client_ca_file.write_text(client_ca)
    serve(ext, 8443, server_crt, server_key, client_ca_file)
    credential = {
        "tls.crt": client_crt.read_text(),
        "tls.key": client_key.read_text(),
        "ca.crt": server_ca,
    }
    apply(mesh, tmp_path, REGISTRY_ONLY, secret("client-credential", credential))
    apply(mesh, tmp_path, EGRESS_MTLS_ORIGINATION)
    expected = (
        "200",
        "external tls=True host=my-nginx.example.test path=/mtls client=client.example.test",
    )

    def originated() -> bool | tuple[str, str]:
        got = curl(mesh, "http://my-nginx.example.test/mtls")
        return got == expected or got

    settle(originated, "mutual TLS originated by the egress gateway")
    assert gateway_stat(mesh, pod, "cluster.outbound|443||my-nginx.example.test.ssl.handshake") > 0
    # Without the client certificate the server refuses the handshake.
    apply(mesh, tmp_path, secret("client-credential", {"ca.crt": server_ca}))
    apply(
        mesh,
        tmp_path,
        EGRESS_MTLS_ORIGINATION.split("---")[-1].replace("MUTUAL", "SIMPLE"),
    )
    settle(
        lambda: (
            curl(mesh, "http://my-nginx.example.test/")[0] == "503"
            or curl(mesh, "http://my-nginx.example.test/")
        ),
        "the server refusing a client without a certificate",
    )
    mesh.cli("delete", "-f", "-", input=EGRESS_MTLS_ORIGINATION)
