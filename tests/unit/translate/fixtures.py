"""Config builders shared by the translation tests: stored objects and a Bookinfo mesh."""

from __future__ import annotations

from typing import Any

import yaml

from pilotfish.api.node import NodeInfo
from pilotfish.config.store.base import StoredObject, key_of
from pilotfish.model.push_context import JwksLookup, MeshSettings, PushContext
from pilotfish.registry.registry import Registry
from pilotfish.xds.secrets import secrets_for

API = {
    "VirtualService": "networking.istio.io/v1",
    "DestinationRule": "networking.istio.io/v1",
    "Gateway": "networking.istio.io/v1",
    "ServiceEntry": "networking.istio.io/v1",
    "WorkloadEntry": "networking.istio.io/v1",
}


def stored(docs: list[dict[str, Any]]) -> list[StoredObject]:
    """Stored objects, one revision each; a later document replaces an earlier one with the
    same kind/namespace/name, as an apply would."""
    out: dict[Any, StoredObject] = {}
    for i, body in enumerate(docs, start=1):
        body = dict(body)
        body.setdefault("apiVersion", API.get(body["kind"], "v1"))
        body["metadata"] = {"namespace": "default", **(body.get("metadata") or {})}
        key = key_of(body)
        out.pop(key, None)
        out[key] = StoredObject(key, body, i)
    return list(out.values())


def from_yaml(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def service(name: str, ns: str = "default", ports: Any = None, **spec: Any) -> dict[str, Any]:
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": spec.pop("selector", {"app": name}),
            "ports": ports if ports is not None else [{"name": "http", "port": 9080}],
            **spec,
        },
    }


def pod(
    name: str, ip: str, labels: dict[str, str], ns: str = "default", sa: str = ""
) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"serviceAccountName": sa or f"bookinfo-{labels.get('app', name)}"},
        "status": {"podIP": ip, "phase": "Running"},
    }


BOOKINFO_CORE = [
    service("productpage"),
    service("details"),
    service("reviews"),
    service("ratings"),
    pod("productpage-v1-a", "10.1.0.10", {"app": "productpage", "version": "v1"}),
    pod("details-v1-a", "10.1.0.11", {"app": "details", "version": "v1"}),
    pod("reviews-v1-a", "10.1.0.12", {"app": "reviews", "version": "v1"}),
    pod("reviews-v2-a", "10.1.0.13", {"app": "reviews", "version": "v2"}),
    pod("reviews-v3-a", "10.1.0.14", {"app": "reviews", "version": "v3"}),
    pod("ratings-v1-a", "10.1.0.15", {"app": "ratings", "version": "v1"}),
]

BOOKINFO_NETWORKING = from_yaml(
    """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match:
    - uri: {exact: /productpage}
    - uri: {prefix: /static}
    - uri: {exact: /login}
    - uri: {exact: /logout}
    - uri: {prefix: /api/v1/products}
    route:
    - destination: {host: productpage, port: {number: 9080}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productpage}
spec:
  host: productpage
  subsets:
  - {name: v1, labels: {version: v1}}
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
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details}
spec:
  host: details
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
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
      weight: 90
    - destination: {host: reviews, subset: v3}
      weight: 10
"""
)


def push_for(
    docs: list[dict[str, Any]],
    settings: MeshSettings | None = None,
    jwks: JwksLookup | None = None,
) -> PushContext:
    objects = stored(docs)
    snap = Registry().snapshot(objects)
    # As the control plane builds it: the xDS secrets generator answers which credentials
    # are available.
    return PushContext.build(objects, snap, settings=settings, jwks=jwks, credentials=secrets_for)


def bookinfo_push(extra: list[dict[str, Any]] | None = None) -> PushContext:
    return push_for(BOOKINFO_CORE + BOOKINFO_NETWORKING + (extra or []))


def sidecar_node(
    app: str = "productpage", ip: str = "10.1.0.10", ns: str = "default", **kw: Any
) -> NodeInfo:
    labels = kw.pop("labels", {"app": app, "version": "v1"})
    return NodeInfo(
        proxy_type="sidecar",
        ip=ip,
        pod_name=f"{app}-v1-a",
        namespace=ns,
        labels=labels,
        service_account=f"bookinfo-{app}",
        **kw,
    )


def router_node(**kw: Any) -> NodeInfo:
    return NodeInfo(
        proxy_type="router",
        ip=kw.pop("ip", "127.0.0.1"),
        pod_name="istio-ingressgateway-a",
        namespace=kw.pop("namespace", "istio-system"),
        labels=kw.pop("labels", {"istio": "ingressgateway"}),
        **kw,
    )


#: Every routing feature at once, on top of Bookinfo (for validate runs and unit tests).
FEATURES = from_yaml(
    """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - name: by-everything
    match:
    - name: m1
      uri: {regex: "^/ratings/[0-9]+$"}
      headers:
        x-exact: {exact: a}
        x-prefix: {prefix: b}
        x-regex: {regex: "c+"}
        x-present: {}
      withoutHeaders:
        x-debug: {exact: "1"}
      method: {exact: GET}
      authority: {prefix: ratings}
      queryParams:
        q: {exact: v}
      ignoreUriCase: true
    - sourceLabels: {app: reviews, version: v2}
      uri: {prefix: /src}
    - port: 9999
      uri: {prefix: /other-port}
    route:
    - destination: {host: ratings, subset: v1}
      weight: 50
      headers:
        request: {set: {x-dest: v1}}
    - destination: {host: ratings, subset: v2}
      weight: 25
    - destination: {host: ratings}
      weight: 25
    timeout: 2.5s
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: "5xx,gateway-error,503"}
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 12.5}}
      abort: {httpStatus: 500, percentage: {value: 10}}
    mirror: {host: ratings, subset: v2}
    mirrorPercentage: {value: 20}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}, {regex: ".*\\\\.example\\\\.org"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-a]
      exposeHeaders: [x-b]
      maxAge: 24h
      allowCredentials: true
    headers:
      request: {set: {x-set: "1"}, add: {x-add: "2"}, remove: [x-rm]}
      response: {set: {x-resp: "3"}, remove: [server]}
  - match: [{uri: {exact: /redirect}}]
    redirect: {uri: /new, authority: new.example.com, redirectCode: 302}
  - match: [{uri: {exact: /direct}}]
    directResponse: {status: 418, body: {string: teapot}}
  - match: [{uri: {prefix: /rewrite}}]
    rewrite: {uri: /v2, authority: ratings.internal}
    route: [{destination: {host: ratings}}]
    retries: {attempts: 0}
  - route: [{destination: {host: ratings, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 3s
        tcpKeepalive: {time: 7200s, interval: 75s, probes: 9}
      http:
        http1MaxPendingRequests: 10
        http2MaxRequests: 1000
        maxRequestsPerConnection: 5
        maxRetries: 4
        idleTimeout: 30s
    outlierDetection:
      consecutive5xxErrors: 7
      interval: 5m
      baseEjectionTime: 15m
      maxEjectionPercent: 50
      minHealthPercent: 30
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-user}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpCookie: {name: session, ttl: 0s}, maglev: {tableSize: 65537}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details}
spec:
  host: details
  trafficPolicy:
    loadBalancer:
      consistentHash: {useSourceIp: true}
  subsets:
  - {name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: LEAST_CONN}}}
  - name: qp
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpQueryParameterName: user, ringHash: {minimumRingSize: 2048}}
  - {name: pt, labels: {version: v1}, trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}}
---
apiVersion: v1
kind: Service
metadata: {name: mongo}
spec:
  selector: {app: mongo}
  ports: [{name: tcp-mongo, port: 27017}]
---
apiVersion: v1
kind: Service
metadata: {name: mongo-canary}
spec:
  selector: {app: mongo, track: canary}
  ports: [{name: tcp-mongo, port: 27017}]
---
apiVersion: v1
kind: Pod
metadata: {name: mongo-a, labels: {app: mongo}}
spec: {}
status: {podIP: 10.1.0.20}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mongo}
spec:
  hosts: [mongo]
  tcp:
  - match: [{port: 27017}]
    route:
    - destination: {host: mongo, port: {number: 27017}}
      weight: 80
    - destination: {host: mongo-canary, port: {number: 27017}}
      weight: 20
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin-ext}
spec:
  hosts: [httpbin.org]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  location: MESH_EXTERNAL
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wildcard-ext}
spec:
  hosts: ["*.wikipedia.org"]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm-svc}
spec:
  hosts: [vm.internal.example]
  addresses: [10.200.0.5]
  ports: [{number: 8000, name: http-vm, protocol: HTTP, targetPort: 8080}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - {address: 10.2.0.1, labels: {version: v1}}
  - {address: 10.2.0.2, labels: {version: v2}, ports: {http-vm: 9090}}
"""
)

GATEWAYS = from_yaml(
    """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: multi, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com", "exact.test", "default/ns.test"]
  - port: {number: 8081, name: http-other, protocol: HTTP}
    hosts: ["*"]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*.example.com"]
    tls: {mode: SIMPLE, credentialName: cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wild, namespace: default}
spec:
  hosts: ["*.example.com"]
  gateways: [multi]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: ["shop.example.com", "exact.test", "ns.test", "unrelated.test"]
  gateways: [default/multi, mesh]
  http:
  - match: [{uri: {prefix: /cart}, gateways: [multi]}]
    route: [{destination: {host: details}}]
  - match: [{uri: {prefix: /mesh-only}, gateways: [mesh]}]
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: productpage}}]
"""
)


# ---- lookups into generated resources ---------------------------------------------------------


def clusters_of(res: Any) -> Any:
    from pilotfish.translate import CLUSTER_TYPE

    return res[CLUSTER_TYPE]


def route_config(res: Any, name: str) -> Any:
    from pilotfish.translate import ROUTE_TYPE

    return res[ROUTE_TYPE][name]


def vhost(rc: Any, name: str) -> Any:
    for v in rc.virtual_hosts:
        if v.name == name:
            return v
    raise AssertionError(f"no virtual host {name!r} in {[v.name for v in rc.virtual_hosts]}")


def listener(res: Any, name: str) -> Any:
    from pilotfish.translate import LISTENER_TYPE

    return res[LISTENER_TYPE][name]


def unpack_hcm(chain: Any) -> Any:
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm_pb2,
    )

    hcm = hcm_pb2.HttpConnectionManager()
    assert chain.filters[0].typed_config.Unpack(hcm)
    return hcm


def unpack_tcp(chain: Any) -> Any:
    from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

    tp = tcp_proxy_pb2.TcpProxy()
    assert chain.filters[0].typed_config.Unpack(tp)
    return tp
