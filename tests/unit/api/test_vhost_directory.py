"""How a host Envoy asks VHDS for resolves to a virtual host: Envoy's domain order (exact,
longest suffix wildcard, longest prefix wildcard, ``*``), case-insensitive, per route config,
and a route config's fallback made for a host nothing matches."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc

from pilotfish.api.vhost_directory import NOT_FOUND, HostDirectory, RouteConfigHosts


def vh(name: str, *domains: str) -> rc.VirtualHost:
    return rc.VirtualHost(name=name, domains=list(domains))


SERVICES = {
    "9080/reviews:9080": vh("9080/reviews:9080", "reviews", "reviews:9080", "10.0.0.1:9080"),
    "9080/*.wikipedia.org:9080": vh("9080/*.wikipedia.org:9080", "*.wikipedia.org"),
    "9080/*.en.wikipedia.org:9080": vh("9080/*.en.wikipedia.org:9080", "*.en.wikipedia.org"),
    "9080/api.*": vh("9080/api.*", "api.*"),
}
BLOCK = rc.VirtualHost(
    name="block_all",
    domains=["*"],
    routes=[rc.Route(direct_response=rc.DirectResponseAction(status=502))],
)


def directory(fallback: rc.VirtualHost | None) -> HostDirectory:
    return HostDirectory(
        (
            ("9080", RouteConfigHosts(SERVICES, fallback)),
            ("a/b", RouteConfigHosts({"a/b/x": vh("a/b/x", "x")}, None)),
        )
    )


def test_hosts_resolve_as_envoy_matches_domains() -> None:
    d = directory(None)
    assert d.resolve("9080/reviews").name == "9080/reviews:9080"
    assert d.resolve("9080/REVIEWS:9080").name == "9080/reviews:9080"
    assert d.resolve("9080/10.0.0.1:9080").name == "9080/reviews:9080"
    # The longest suffix wins; a suffix alone is not a match.
    assert d.resolve("9080/de.wikipedia.org").name == "9080/*.wikipedia.org:9080"
    assert d.resolve("9080/x.en.wikipedia.org").name == "9080/*.en.wikipedia.org:9080"
    assert d.resolve("9080/.wikipedia.org") == NOT_FOUND
    assert d.resolve("9080/api.example").name == "9080/api.*"
    # A route config's name may hold a slash: the host is after the last one.
    assert d.resolve("a/b/x").name == "a/b/x"
    # No fallback (explicit mode under ALLOW_ANY): nothing answers, as Envoy's 404 without
    # on-demand virtual hosts; nor for a route config this proxy does not have.
    assert d.resolve("9080/example.com") == NOT_FOUND
    assert d.resolve("8080/reviews") == NOT_FOUND
    assert d.resolve("reviews") == NOT_FOUND


def test_a_host_nothing_matches_gets_the_fallback_made_for_it() -> None:
    found = directory(BLOCK).resolve("9080/Example.com:8080")
    assert found.name == "9080/example.com:8080"
    assert found.vhost is not None
    assert found.vhost.name == found.name
    assert list(found.vhost.domains) == ["example.com:8080"]
    assert found.vhost.routes[0].direct_response.status == 502
    # The template itself is untouched.
    assert list(BLOCK.domains) == ["*"]
    assert directory(BLOCK).resolve("9080/reviews").vhost is None
