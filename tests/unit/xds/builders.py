"""Hand-built Envoy resources that a real Envoy accepts (shared by unit and integration tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from pilotfish.api.node import NodeInfo
from pilotfish.xds.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    VIRTUAL_HOST_TYPE,
)


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _address(ip: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=ip, port_value=port)
    )


def eds_cluster(name: str, service_name: str = "", timeout_ms: int = 1000) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        connect_timeout=duration_pb2.Duration(
            seconds=timeout_ms // 1000, nanos=(timeout_ms % 1000) * 1_000_000
        ),
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=_ads(), service_name=service_name
        ),
    )


def load_assignment(
    name: str, endpoints: Sequence[tuple[str, int]]
) -> endpoint_pb2.ClusterLoadAssignment:
    lb = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(address=_address(ip, port))
        )
        for ip, port in endpoints
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb)],
    )


def http_listener(
    name: str, port: int, route_name: str, ip: str = "127.0.0.1"
) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm_pb2.Rds(route_config_name=route_name, config_source=_ads()),
        http_filters=[
            hcm_pb2.HttpFilter(
                name="envoy.filters.http.router", typed_config=_pack(router_pb2.Router())
            )
        ],
    )
    chain = listener_components_pb2.FilterChain(
        filters=[
            listener_components_pb2.Filter(
                name="envoy.filters.network.http_connection_manager", typed_config=_pack(hcm)
            )
        ]
    )
    return listener_pb2.Listener(name=name, address=_address(ip, port), filter_chains=[chain])


def route_config(
    name: str, clusters: Mapping[str, int] | str, tag: str = ""
) -> route_pb2.RouteConfiguration:
    """All paths of every host go to one cluster (a str) or split by weight (a mapping).

    An empty mapping gives an empty ``weighted_clusters``, which Envoy rejects.
    """
    if isinstance(clusters, str):
        action = route_components_pb2.RouteAction(cluster=clusters)
    else:
        action = route_components_pb2.RouteAction(
            weighted_clusters=route_components_pb2.WeightedCluster(
                clusters=[
                    route_components_pb2.WeightedCluster.ClusterWeight(name=c, weight=w)
                    for c, w in clusters.items()
                ]
            )
        )
    headers = []
    if tag:
        headers.append(
            base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key="x-route-tag", value=tag))
        )
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="all",
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix="/"), route=action
                    )
                ],
                response_headers_to_add=headers,
            )
        ],
    )


def resources(
    *,
    clusters: Mapping[str, Sequence[tuple[str, int]]],
    listeners: Mapping[str, tuple[int, str]] = {},
    routes: Mapping[str, Message] = {},
) -> dict[str, dict[str, Message]]:
    """Resources for a generator: EDS clusters with their endpoints, listeners, routes."""
    return {
        CLUSTER_TYPE: {name: eds_cluster(name) for name in clusters},
        ENDPOINT_TYPE: {name: load_assignment(name, eps) for name, eps in clusters.items()},
        LISTENER_TYPE: {
            name: http_listener(name, port, rn) for name, (port, rn) in listeners.items()
        },
        ROUTE_TYPE: dict(routes),
    }


def node(name: str = "client-1", ns: str = "default", ip: str = "127.0.0.1") -> NodeInfo:
    return NodeInfo(
        proxy_type="sidecar",
        ip=ip,
        pod_name=name,
        namespace=ns,
        labels={"app": name.rsplit("-", 1)[0]},
        interception_mode="NONE",
    )


__all__ = [
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "LISTENER_TYPE",
    "ROUTE_TYPE",
    "VIRTUAL_HOST_TYPE",
    "eds_cluster",
    "http_listener",
    "load_assignment",
    "node",
    "resources",
    "route_config",
]
