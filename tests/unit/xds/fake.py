"""Fake Envoy requests and response readers for driving ``ProxyConnection`` without gRPC."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from pilotfish.testing.ads_client import resource_name, unpack
from pilotfish.xds.connection import DeltaResponse, ProxyConnection, Response
from pilotfish.xds.resources import ResourceCache, Snapshot, build_snapshot
from tests.unit.xds import builders as b


def sotw(
    type_url: str,
    names: Iterable[str] = (),
    *,
    nonce: str = "",
    version: str = "",
    error: str | None = None,
) -> discovery_pb2.DiscoveryRequest:
    return discovery_pb2.DiscoveryRequest(
        type_url=type_url,
        resource_names=list(names),
        response_nonce=nonce,
        version_info=version,
        error_detail=status_pb2.Status(code=3, message=error) if error else None,
    )


def delta(
    type_url: str,
    subscribe: Iterable[str] = (),
    unsubscribe: Iterable[str] = (),
    *,
    nonce: str = "",
    error: str | None = None,
    initial: Mapping[str, str] | None = None,
) -> discovery_pb2.DeltaDiscoveryRequest:
    return discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url,
        resource_names_subscribe=list(subscribe),
        resource_names_unsubscribe=list(unsubscribe),
        response_nonce=nonce,
        error_detail=status_pb2.Status(code=3, message=error) if error else None,
        initial_resource_versions=dict(initial or {}),
    )


def names(response: Response) -> list[str]:
    """Resource names in a response (SotW or Delta)."""
    if isinstance(response, DeltaResponse):
        return [r.name for r in response.message().resources]
    return [resource_name(unpack(response.type_url, a)) for a in response.resources]


def contents(response: Response) -> dict[str, Message]:
    if isinstance(response, DeltaResponse):
        message = response.message()
        return {r.name: unpack(response.type_url, r.resource) for r in message.resources}
    out = {}
    for packed in response.resources:
        message = unpack(response.type_url, packed)
        out[resource_name(message)] = message
    return out


def kinds(responses: Iterable[Response]) -> list[str]:
    short = {
        b.CLUSTER_TYPE: "CDS",
        b.ENDPOINT_TYPE: "EDS",
        b.LISTENER_TYPE: "LDS",
        b.ROUTE_TYPE: "RDS",
    }
    return [short.get(r.type_url, r.type_url) for r in responses]


def snapshot(
    clusters: Mapping[str, int],
    route_to: str | Mapping[str, int] | None = None,
    cache: ResourceCache | None = None,
    *,
    listener_port: int = 8000,
) -> Snapshot:
    """Clusters name -> endpoint port, one listener ``http`` using route config ``r``."""
    resources = b.resources(
        clusters={name: [("127.0.0.1", port)] for name, port in clusters.items()},
        listeners={"http": (listener_port, "r")},
        routes={"r": b.route_config("r", next(iter(clusters)) if route_to is None else route_to)},
    )
    return build_snapshot(resources, cache if cache is not None else ResourceCache())


class FakeEnvoy:
    """Answers like Envoy: ACKs everything with the nonce and current names (unless told)."""

    def __init__(self, conn: ProxyConnection) -> None:
        self.conn = conn
        self.delta = conn.delta
        self.names: dict[str, list[str]] = {}
        self.versions: dict[str, str] = {}

    def request(self, type_url: str, names: Iterable[str] = ()) -> list[Response]:
        """First request of a type."""
        self.names[type_url] = list(names)
        if self.delta:
            return self.conn.handle_request(delta(type_url, subscribe=names))
        return self.conn.handle_request(sotw(type_url, names))

    def ack(self, response: Response, error: str | None = None) -> list[Response]:
        t = response.type_url
        if self.delta:
            return self.conn.handle_request(delta(t, nonce=response.nonce, error=error))
        if error is None:
            self.versions[t] = response.version_info
        return self.conn.handle_request(
            sotw(
                t,
                self.names.get(t, []),
                nonce=response.nonce,
                version=self.versions.get(t, ""),
                error=error,
            )
        )

    def resubscribe(self, type_url: str, new_names: Iterable[str]) -> list[Response]:
        """Change the names of a type, echoing the latest nonce as Envoy does."""
        old = set(self.names.get(type_url, []))
        self.names[type_url] = list(new_names)
        state = self.conn.types[type_url]
        if self.delta:
            new = set(new_names)
            return self.conn.handle_request(
                delta(type_url, subscribe=sorted(new - old), unsubscribe=sorted(old - new))
            )
        return self.conn.handle_request(
            sotw(
                type_url,
                self.names[type_url],
                nonce=state.sent_nonce,
                version=self.versions.get(type_url, ""),
            )
        )

    def sync(self, responses: list[Response]) -> list[Response]:
        """ACK every response, and the ones that follow, until nothing more comes."""
        queue = list(responses)
        seen: list[Response] = []
        while queue:
            response = queue.pop(0)
            seen.append(response)
            queue += self.ack(response)
        return seen

    def connect(self) -> None:
        """Envoy's start: CDS, EDS for the clusters, LDS, RDS; all ACKed."""
        self.sync(self.request(b.CLUSTER_TYPE))
        eds = sorted(self.conn.target.eds_of_cluster.values())
        self.sync(self.request(b.ENDPOINT_TYPE, eds))
        self.sync(self.request(b.LISTENER_TYPE))
        self.sync(self.request(b.ROUTE_TYPE, ["r"]))
