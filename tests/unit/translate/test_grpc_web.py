"""gRPC-Web: Envoy's ``grpc_web`` filter where Istio adds it (GRPC-Web service ports, inbound
and outbound; Gateway servers with ``protocol: GRPC-WEB``), after the security filters and
before fault, CORS and the router; nowhere else."""

from __future__ import annotations

from typing import Any

from pilotfish.translate import generate
from pilotfish.translate.filters import (
    CORS_FILTER,
    FAULT_FILTER,
    GRPC_WEB_FILTER,
    ROUTER_FILTER,
)
from tests.unit.translate.fixtures import (
    BOOKINFO_CORE,
    from_yaml,
    listener,
    pod,
    push_for,
    router_node,
    service,
    sidecar_node,
    unpack_hcm,
)

ECHO = [
    service("echo", ports=[{"name": "grpc-web", "port": 9090}]),
    pod("echo-1", "10.1.0.30", {"app": "echo"}),
]
ECHO_NODE = sidecar_node(app="echo", ip="10.1.0.30", labels={"app": "echo"})
POLICY = from_yaml(
    """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: default}
spec:
  rules: [{}]
"""
)


def names(chain: Any) -> list[str]:
    return [f.name for f in unpack_hcm(chain).http_filters]


def chains_by_port(lst: Any) -> dict[int, list[str]]:
    return {
        c.filter_chain_match.destination_port.value: names(c)
        for c in lst.filter_chains
        if c.filters and c.filters[0].name == "envoy.filters.network.http_connection_manager"
    }


def test_inbound_grpc_web_port_after_security_before_fault() -> None:
    push = push_for(BOOKINFO_CORE + ECHO + POLICY)
    inbound = chains_by_port(listener(generate(ECHO_NODE, push), "virtualInbound"))
    got = inbound[9090]
    at = got.index(GRPC_WEB_FILTER)
    assert got.index("envoy.filters.http.rbac") < at
    assert got[at + 1 :] == [FAULT_FILTER, CORS_FILTER, ROUTER_FILTER]


def test_outbound_only_on_grpc_web_ports() -> None:
    push = push_for(BOOKINFO_CORE + ECHO)
    outbound = chains_by_port(listener(generate(sidecar_node(), push), "virtualOutbound"))
    assert GRPC_WEB_FILTER in outbound[9090]
    assert GRPC_WEB_FILTER not in outbound[9080]


def test_gateway_only_on_grpc_web_servers() -> None:
    gateway = from_yaml(
        """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: web, protocol: GRPC-WEB}
    hosts: ["*"]
  - port: {number: 81, name: http, protocol: HTTP}
    hosts: ["*"]
"""
    )
    res = generate(router_node(), push_for(BOOKINFO_CORE + ECHO + gateway))
    assert GRPC_WEB_FILTER in names(listener(res, "0.0.0.0_80").filter_chains[0])
    assert GRPC_WEB_FILTER not in names(listener(res, "0.0.0.0_81").filter_chains[0])
