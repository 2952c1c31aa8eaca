"""On-demand virtual hosts over Delta VHDS: a wildcard gets only what is not on demand (the
placeholder); a host Envoy asks for (``<route config>/<host>``) is answered with the virtual
host it resolves to, carrying the alias; a host nothing matches gets the fallback made for it,
or "no such virtual host"; what the aliases resolve to is kept current across pushes (Envoy
asks for an alias once)."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from google.protobuf.message import Message

from pilotfish.api.vhost_directory import HostDirectory, RouteConfigHosts
from pilotfish.xds.connection import DeltaResponse, ProxyConnection
from pilotfish.xds.push import PushRequest
from pilotfish.xds.resources import Generated, ResourceCache, Snapshot, build_snapshot
from tests.unit.xds import builders as b
from tests.unit.xds.fake import FakeEnvoy, names
from tests.unit.xds.fake import delta as delta_req

PUSH = PushRequest.of("test")
VHDS = b.VIRTUAL_HOST_TYPE
PLACEHOLDER = "9080/on-demand"
REVIEWS = "9080/reviews:9080"
RATINGS = "9080/ratings:9080"
EXAMPLE = "9080/example.com:9080"
BLOCK = rc.VirtualHost(
    name="block_all",
    domains=["*"],
    routes=[
        rc.Route(
            match=rc.RouteMatch(prefix="/"), direct_response=rc.DirectResponseAction(status=502)
        )
    ],
)


def vh(name: str, domains: list[str], status: int = 200) -> rc.VirtualHost:
    route = rc.Route(
        match=rc.RouteMatch(prefix="/"), direct_response=rc.DirectResponseAction(status=status)
    )
    return rc.VirtualHost(name=name, domains=domains, routes=[route])


def snapshot(
    services: dict[str, rc.VirtualHost], cache: ResourceCache, *, resolve: bool = True
) -> Snapshot:
    placeholder = vh(PLACEHOLDER, ["on-demand.pilotfish.invalid"], 404)
    vhosts: dict[str, Message] = {PLACEHOLDER: placeholder, **services}
    directory = HostDirectory((("9080", RouteConfigHosts(services, BLOCK)),)) if resolve else None
    return build_snapshot(
        Generated({VHDS: vhosts}, {VHDS: frozenset(services)}, directory=directory), cache
    )


SERVICES = {
    REVIEWS: vh(REVIEWS, ["reviews", "reviews:9080"]),
    RATINGS: vh(RATINGS, ["ratings", "ratings:9080"]),
}


def connect(cache: ResourceCache, *, resolve: bool = True) -> tuple[ProxyConnection, FakeEnvoy]:
    conn = ProxyConnection("1", b.node(), delta=True, ack_timeout=5.0)
    conn.set_target(snapshot(SERVICES, cache, resolve=resolve))
    envoy = FakeEnvoy(conn)
    [first] = envoy.request(VHDS)
    # Only the placeholder: Envoy serves the route config once VHDS answered for it.
    assert names(first) == [PLACEHOLDER]
    assert envoy.ack(first) == []
    return conn, envoy


def ask(conn: ProxyConnection, *aliases: str) -> DeltaResponse:
    [answer] = conn.handle_request(delta_req(VHDS, subscribe=aliases))
    assert isinstance(answer, DeltaResponse)
    return answer


def aliases_of(answer: DeltaResponse) -> dict[str, list[str]]:
    return {r.name: list(r.aliases) for r in answer.message().resources}


def removed(responses: list[object]) -> list[str]:
    out: list[str] = []
    for r in responses:
        if isinstance(r, DeltaResponse) and r.type_url == VHDS:
            out += r.message().removed_resources
    return out


def sent(responses: list[object]) -> list[str]:
    return [
        n
        for r in responses
        if isinstance(r, DeltaResponse) and r.type_url == VHDS
        for n in names(r)
    ]


def test_a_host_asked_for_is_answered_with_its_virtual_host_and_the_aliases() -> None:
    cache = ResourceCache()
    conn, envoy = connect(cache)
    answer = ask(conn, "9080/reviews", "9080/Reviews:9080")
    assert aliases_of(answer) == {REVIEWS: ["9080/Reviews:9080", "9080/reviews"]}
    envoy.ack(answer)
    assert set(conn.types[VHDS].have) == {PLACEHOLDER, REVIEWS}

    # A host no service has: the route config's fallback, made for that one host.
    made = ask(conn, "9080/example.com:9080")
    [resource] = made.message().resources
    assert resource.name == EXAMPLE and list(resource.aliases) == [EXAMPLE]
    vhost = rc.VirtualHost.FromString(resource.resource.value)
    assert list(vhost.domains) == ["example.com:9080"] and vhost.name == EXAMPLE
    assert vhost.routes[0].direct_response.status == 502
    envoy.ack(made)

    # A service changed: the virtual host the proxy holds is sent; ratings never asked for
    # is not. The fallback's host became a service (a ServiceEntry): its made virtual host is
    # removed and the service's is sent for the alias Envoy will not ask for again.
    changed = {
        REVIEWS: vh(REVIEWS, ["reviews", "reviews:9080"], 201),
        RATINGS: vh(RATINGS, ["ratings", "ratings:9080"], 201),
        "9080/example.com:9080-se": vh("9080/example.com:9080-se", ["example.com:9080"]),
    }
    out = envoy.sync(conn.begin_push(snapshot(changed, cache), PUSH))
    assert sorted(sent(out)) == ["9080/example.com:9080-se", REVIEWS]
    assert removed(out) == [EXAMPLE]

    # The services go away: each alias gets the fallback made for its host (one of them
    # under the name the service's virtual host had: an update, not a removal).
    out = envoy.sync(conn.begin_push(snapshot({RATINGS: SERVICES[RATINGS]}, cache), PUSH))
    assert sorted(sent(out)) == [EXAMPLE, "9080/reviews", REVIEWS]
    assert removed(out) == ["9080/example.com:9080-se"]
    assert set(conn.types[VHDS].have) == {PLACEHOLDER, EXAMPLE, "9080/reviews", REVIEWS}


def test_a_host_nothing_answers_is_said_to_have_no_virtual_host() -> None:
    conn, envoy = connect(ResourceCache(), resolve=False)
    answer = ask(conn, "9080/nowhere")
    [resource] = answer.message().resources
    assert resource.name == "9080/nowhere" and list(resource.aliases) == ["9080/nowhere"]
    assert not resource.HasField("resource")
    envoy.ack(answer)
    assert set(conn.types[VHDS].have) == {PLACEHOLDER}


def test_a_resumed_stream_keeps_what_its_aliases_resolve_to() -> None:
    cache = ResourceCache()
    conn = ProxyConnection("2", b.node(), delta=True, ack_timeout=5.0)
    conn.set_target(snapshot(SERVICES, cache))
    envoy = FakeEnvoy(conn)
    held = snapshot(SERVICES, cache).get(VHDS)
    # After a control-plane restart Envoy declares what it holds and the aliases it asked for.
    first = conn.handle_request(
        delta_req(
            VHDS,
            subscribe=["*", "9080/reviews", "9080/example.com:9080"],
            initial={PLACEHOLDER: held[PLACEHOLDER].hash, REVIEWS: held[REVIEWS].hash},
        )
    )
    out = envoy.sync(first)
    # Nothing it holds is removed; the made fallback is sent; ratings is not.
    assert removed(out) == []
    assert sent(out) == [EXAMPLE]
    assert set(conn.types[VHDS].have) == {PLACEHOLDER, REVIEWS, EXAMPLE}
