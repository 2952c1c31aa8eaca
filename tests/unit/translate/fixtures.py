"""Config builders shared by the translation tests: stored objects and a Bookinfo mesh."""

from __future__ import annotations

from typing import Any

import yaml

from pilotfish.api.node import NodeInfo
from pilotfish.config.store.base import StoredObject, key_of
from pilotfish.model.push_context import MeshSettings, PushContext
from pilotfish.registry.registry import Registry

API = {
    "VirtualService": "networking.istio.io/v1",
    "DestinationRule": "networking.istio.io/v1",
    "Gateway": "networking.istio.io/v1",
    "ServiceEntry": "networking.istio.io/v1",
    "WorkloadEntry": "networking.istio.io/v1",
}


def stored(docs: list[dict[str, Any]]) -> list[StoredObject]:
    out = []
    for i, body in enumerate(docs, start=1):
        body = dict(body)
        body.setdefault("apiVersion", API.get(body["kind"], "v1"))
        body.setdefault("metadata", {}).setdefault("namespace", "default")
        out.append(StoredObject(key_of(body), body, i))
    return out


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


def pod(name: str, ip: str, labels: dict[str, str], ns: str = "default", sa: str = "") -> dict[str, Any]:
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


def push_for(docs: list[dict[str, Any]], settings: MeshSettings | None = None) -> PushContext:
    objects = stored(docs)
    snap = Registry().snapshot(objects)
    return PushContext.build(objects, snap, settings=settings)


def bookinfo_push(extra: list[dict[str, Any]] | None = None) -> PushContext:
    return push_for(BOOKINFO_CORE + BOOKINFO_NETWORKING + (extra or []))


def sidecar_node(app: str = "productpage", ip: str = "10.1.0.10", ns: str = "default", **kw: Any) -> NodeInfo:
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
