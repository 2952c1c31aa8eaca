"""The xDS type URLs the control plane, the agent and the test clients name resources by.

One home for them: the xDS server orders pushes by them, translation keys its output by them,
the agent's SDS server and the bootstrap name them. Strings only (no protobuf imports), so the
light users of :mod:`pilotfish.api` stay light.
"""

from __future__ import annotations

PREFIX = "type.googleapis.com/"


def type_url(full_name: str) -> str:
    """``type.googleapis.com/<full name>`` of a protobuf message type."""
    return PREFIX + full_name


CLUSTER_TYPE = type_url("envoy.config.cluster.v3.Cluster")
ENDPOINT_TYPE = type_url("envoy.config.endpoint.v3.ClusterLoadAssignment")
LISTENER_TYPE = type_url("envoy.config.listener.v3.Listener")
ROUTE_TYPE = type_url("envoy.config.route.v3.RouteConfiguration")
#: VHDS: a sidecar's outbound virtual hosts as resources of their own (Delta xDS only).
VIRTUAL_HOST_TYPE = type_url("envoy.config.route.v3.VirtualHost")
SECRET_TYPE = type_url("envoy.extensions.transport_sockets.tls.v3.Secret")
#: ECDS: filter configs an HTTP filter's ``config_discovery`` names (EnvoyFilter EXTENSION_CONFIG).
EXTENSION_CONFIG_TYPE = type_url("envoy.config.core.v3.TypedExtensionConfig")
