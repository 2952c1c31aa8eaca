"""EnvoyFilter patches on generated config: matching, operations, order, scoping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilotfish.translate import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, generate
from tests.unit.translate.fixtures import (
    bookinfo_push,
    listener,
    router_node,
    sidecar_node,
    unpack_hcm,
)

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "tutorials"


def tutorial_rate_limit(app: str = "reviews") -> dict[str, Any]:
    """The tutorials' local rate limit exactly as written, selecting ``app``."""
    body: dict[str, Any] = yaml.safe_load(
        (SAMPLES / "envoy-filter-local-ratelimit.yaml").read_text()
    )
    body["metadata"]["namespace"] = "default"
    body["spec"]["workloadSelector"]["labels"] = {"app": app}
    return body


def ef(text: str, **meta: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(text)
    body["apiVersion"] = "networking.istio.io/v1alpha3"
    body["metadata"].update(meta)
    return body


def http_filter_names(chain: Any) -> list[str]:
    return [f.name for f in unpack_hcm(chain).http_filters]


def inbound_chains(res: Any) -> list[Any]:
    return [
        c
        for c in listener(res, "virtualInbound").filter_chains
        if c.filter_chain_match.destination_port.value == 9080
    ]


def test_tutorial_rate_limit_goes_first_on_the_selected_inbound_hcm_only() -> None:
    push = bookinfo_push([tutorial_rate_limit()])
    reviews = generate(sidecar_node("reviews", ip="10.1.0.12"), push)
    chains = inbound_chains(reviews)
    assert chains
    for c in chains:
        names = http_filter_names(c)
        assert names[0] == "envoy.filters.http.local_ratelimit"
        assert names[-1] == "envoy.filters.http.router"
        cfg = local_rate_limit_pb2.LocalRateLimit()
        unpack_hcm(c).http_filters[0].typed_config.Unpack(cfg)
        assert cfg.token_bucket.max_tokens == 100
        assert cfg.token_bucket.fill_interval.seconds == 60
    # outbound chains of reviews untouched; productpage untouched
    for c in listener(reviews, "virtualOutbound").filter_chains:
        if c.name == "0.0.0.0_9080":
            assert "envoy.filters.http.local_ratelimit" not in http_filter_names(c)
    pp = generate(sidecar_node("productpage"), push)
    for c in inbound_chains(pp):
        assert "envoy.filters.http.local_ratelimit" not in http_filter_names(c)


def envoy_filter(
    name: str,
    patches: list[dict[str, Any]],
    ns: str = "default",
    selector: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"configPatches": patches, **spec},
    }
    if selector is not None:
        body["spec"]["workloadSelector"] = {"labels": selector}
    return body


CONNECTION_LIMIT = (
    "type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit"
)
HCM = {"filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager"}}}


def http_filter(
    op: str,
    filter_name: str,
    context: str = "SIDECAR_INBOUND",
    sub: str | None = None,
    **listener: Any,
) -> dict[str, Any]:
    match: dict[str, Any] = {"context": context, "listener": {**HCM, **listener}}
    if sub is not None:
        match["listener"] = {
            **listener,
            "filterChain": {"filter": {**HCM["filterChain"]["filter"], "subFilter": {"name": sub}}},
        }
    value = {
        "name": filter_name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": 1024,
        },
    }
    return {"applyTo": "HTTP_FILTER", "match": match, "patch": {"operation": op, "value": value}}


REVIEWS = {"app": "reviews"}


def reviews_inbound(*docs: dict[str, Any]) -> list[str]:
    res = generate(sidecar_node("reviews", ip="10.1.0.12"), bookinfo_push(list(docs)))
    return http_filter_names(inbound_chains(res)[0])


def test_insert_before_and_after_the_router_and_replace_remove() -> None:
    names = reviews_inbound(
        envoy_filter(
            "a",
            [
                http_filter("INSERT_BEFORE", "before-router", sub="envoy.filters.http.router"),
                http_filter("INSERT_AFTER", "after-fault", sub="envoy.filters.http.fault"),
                http_filter("REPLACE", "instead-of-cors", sub="envoy.filters.http.cors"),
            ],
            selector=REVIEWS,
        )
    )
    assert names[-2:] == ["before-router", "envoy.filters.http.router"]
    assert names[names.index("envoy.filters.http.fault") + 1] == "after-fault"
    assert "envoy.filters.http.cors" not in names and "instead-of-cors" in names
    removed = reviews_inbound(
        envoy_filter(
            "r",
            [
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {
                        "listener": {
                            "filterChain": {
                                "filter": {
                                    "name": "envoy.http_connection_manager",
                                    "subFilter": {"name": "envoy.cors"},
                                }
                            }
                        }
                    },
                    "patch": {"operation": "REMOVE"},
                }
            ],
        )
    )
    assert "envoy.filters.http.cors" not in removed and "envoy.filters.http.router" in removed


def test_order_is_priority_then_root_namespace_then_creation_and_root_is_mesh_wide() -> None:
    first = envoy_filter("z-first", [http_filter("INSERT_FIRST", "z")], priority=-5)
    second = envoy_filter("b", [http_filter("INSERT_FIRST", "b")])
    third = envoy_filter("c", [http_filter("INSERT_FIRST", "c")])
    root = envoy_filter("mesh", [http_filter("INSERT_FIRST", "root")], ns="istio-system")
    for doc, day in ((third, 1), (second, 2), (root, 3), (first, 4)):
        doc["metadata"]["creationTimestamp"] = f"2024-01-0{day}T00:00:00Z"
    other = envoy_filter("elsewhere", [http_filter("INSERT_FIRST", "other")], ns="other")
    names = reviews_inbound(third, second, first, root, other)
    # Applied z (priority), root (root namespace first at equal priority), c, b (creation):
    # each INSERT_FIRST goes before the previous, so the last applied comes first.
    assert names[:4] == ["b", "c", "root", "z"]
    assert "other" not in names


def test_port_number_selects_virtual_inbound_chains_and_outbound_listener_names() -> None:
    push = bookinfo_push(
        [
            envoy_filter(
                "ports",
                [
                    http_filter("INSERT_FIRST", "on-9080", portNumber=9080),
                    http_filter("INSERT_FIRST", "on-9999", portNumber=9999),
                    http_filter(
                        "INSERT_FIRST", "outbound-9080", "SIDECAR_OUTBOUND", name="0.0.0.0_9080"
                    ),
                ],
                selector=REVIEWS,
            )
        ]
    )
    res = generate(sidecar_node("reviews", ip="10.1.0.12"), push)
    names = http_filter_names(inbound_chains(res)[0])
    assert "on-9080" in names and "on-9999" not in names and "outbound-9080" not in names
    out = [c for c in listener(res, "virtualOutbound").filter_chains if c.name == "0.0.0.0_9080"]
    assert http_filter_names(out[0])[0] == "outbound-9080"


def test_patches_never_leak_into_messages_other_proxies_share() -> None:
    push = bookinfo_push(
        [
            envoy_filter(
                "out",
                [http_filter("INSERT_FIRST", "mine", "SIDECAR_OUTBOUND")],
                selector=REVIEWS,
            )
        ]
    )
    before = generate(sidecar_node("productpage"), push)
    reviews = generate(sidecar_node("reviews", ip="10.1.0.12"), push)
    after = generate(sidecar_node("productpage"), push)
    chain = next(c for c in listener(reviews, "virtualOutbound").filter_chains if c.name)
    assert http_filter_names(chain)[0] == "mine"
    for res in (before, after):
        for c in listener(res, "virtualOutbound").filter_chains:
            if c.filters[0].name == "envoy.filters.network.http_connection_manager":
                assert "mine" not in http_filter_names(c)


def cluster_patch(op: str, match: dict[str, Any], value: Any = None) -> dict[str, Any]:
    patch: dict[str, Any] = {"operation": op}
    if value is not None:
        patch["value"] = value
    return {
        "applyTo": "CLUSTER",
        "match": {"context": "SIDECAR_OUTBOUND", "cluster": match},
        "patch": patch,
    }


def test_cluster_merge_remove_add_and_merge_and_replace_list() -> None:
    reviews_host = "reviews.default.svc.cluster.local"
    push = bookinfo_push(
        [
            envoy_filter(
                "c",
                [
                    cluster_patch("MERGE", {"service": reviews_host}, {"connect_timeout": "2.5s"}),
                    cluster_patch("REMOVE", {"service": reviews_host, "subset": "v3"}),
                    cluster_patch(
                        "ADD",
                        {},
                        {"name": "extra", "type": "STATIC", "connect_timeout": "1s"},
                    ),
                    cluster_patch(
                        "MERGE_AND_REPLACE_LIST",
                        {"name": f"outbound|9080|v1|{reviews_host}"},
                        {"circuit_breakers": {"thresholds": [{"max_connections": 7}]}},
                    ),
                    # portNumber: the service port of the cluster.
                    cluster_patch(
                        "MERGE",
                        {"service": "ratings.default.svc.cluster.local", "portNumber": 9080},
                        {"connect_timeout": "3s"},
                    ),
                    cluster_patch(
                        "MERGE",
                        {"service": "details.default.svc.cluster.local", "portNumber": 9999},
                        {"connect_timeout": "9s"},
                    ),
                ],
                selector={"app": "productpage"},
            )
        ]
    )
    clusters = generate(sidecar_node("productpage"), push)[CLUSTER_TYPE]
    assert clusters[f"outbound|9080||{reviews_host}"].connect_timeout.ToMilliseconds() == 2500
    assert clusters[f"outbound|9080|v1|{reviews_host}"].connect_timeout.ToMilliseconds() == 2500
    assert f"outbound|9080|v3|{reviews_host}" not in clusters
    assert "extra" in clusters
    thresholds = clusters[f"outbound|9080|v1|{reviews_host}"].circuit_breakers.thresholds
    assert [t.max_connections.value for t in thresholds] == [7]
    ratings = clusters["outbound|9080||ratings.default.svc.cluster.local"]
    assert ratings.connect_timeout.ToMilliseconds() == 3000
    details = clusters["outbound|9080||details.default.svc.cluster.local"]
    assert details.connect_timeout.ToMilliseconds() not in (2500, 3000, 9000)


def test_route_configuration_virtual_host_and_route_patches() -> None:
    vh = "productpage.default.svc.cluster.local:9080"
    push = bookinfo_push(
        [
            envoy_filter(
                "routes",
                [
                    {
                        "applyTo": "ROUTE_CONFIGURATION",
                        "match": {"routeConfiguration": {"name": "9080", "portNumber": 9080}},
                        "patch": {
                            "operation": "MERGE",
                            "value": {"max_direct_response_body_size_bytes": 99},
                        },
                    },
                    {
                        "applyTo": "ROUTE_CONFIGURATION",
                        "match": {"routeConfiguration": {"name": "9999"}},
                        "patch": {
                            "operation": "MERGE",
                            "value": {"max_direct_response_body_size_bytes": 5},
                        },
                    },
                    {
                        "applyTo": "VIRTUAL_HOST",
                        "match": {
                            "context": "SIDECAR_OUTBOUND",
                            "routeConfiguration": {"vhost": {"domainName": "details"}},
                        },
                        "patch": {"operation": "REMOVE"},
                    },
                    {
                        "applyTo": "VIRTUAL_HOST",
                        "match": {"context": "SIDECAR_OUTBOUND"},
                        "patch": {
                            "operation": "ADD",
                            "value": {"name": "added", "domains": ["added.example"]},
                        },
                    },
                    {
                        "applyTo": "HTTP_ROUTE",
                        "match": {
                            "routeConfiguration": {
                                "vhost": {"name": vh, "route": {"name": "default"}}
                            }
                        },
                        "patch": {
                            "operation": "INSERT_BEFORE",
                            "value": {
                                "name": "pre",
                                "match": {"prefix": "/pre"},
                                "direct_response": {"status": 418},
                            },
                        },
                    },
                ],
            )
        ]
    )
    rc = generate(sidecar_node("productpage"), push)[ROUTE_TYPE]["9080"]
    assert rc.max_direct_response_body_size_bytes.value == 99
    names = [v.name for v in rc.virtual_hosts]
    assert "details.default.svc.cluster.local:9080" not in names and names[-1] == "added"
    routes = next(v for v in rc.virtual_hosts if v.name == vh).routes
    assert [r.name for r in routes] == ["pre", "default"]


def test_proxy_metadata_and_version_matches() -> None:
    patches = [
        {
            **http_filter("INSERT_FIRST", "meta"),
            "match": {
                **http_filter("INSERT_FIRST", "x")["match"],
                "proxy": {"metadata": {"SERVICE_ACCOUNT": "bookinfo-reviews"}},
            },
        },
        {
            **http_filter("INSERT_FIRST", "other-sa"),
            "match": {
                **http_filter("INSERT_FIRST", "x")["match"],
                "proxy": {"metadata": {"SERVICE_ACCOUNT": "nope"}},
            },
        },
        {
            **http_filter("INSERT_FIRST", "versioned"),
            "match": {
                **http_filter("INSERT_FIRST", "x")["match"],
                "proxy": {"proxyVersion": "^1\\..*"},
            },
        },
    ]
    names = reviews_inbound(envoy_filter("m", patches))
    assert "meta" in names and "other-sa" not in names and "versioned" not in names


def test_listener_merge_remove_add_and_network_filter_on_gateways() -> None:
    push = bookinfo_push(
        [
            envoy_filter(
                "gw",
                [
                    {
                        "applyTo": "LISTENER",
                        "match": {"context": "GATEWAY", "listener": {"portNumber": 80}},
                        "patch": {
                            "operation": "MERGE",
                            "value": {"per_connection_buffer_limit_bytes": 4096},
                        },
                    },
                    {
                        "applyTo": "LISTENER",
                        "match": {"context": "GATEWAY"},
                        "patch": {
                            "operation": "ADD",
                            "value": {
                                "name": "extra",
                                "address": {
                                    "socket_address": {"address": "0.0.0.0", "port_value": 9999}
                                },
                            },
                        },
                    },
                    {
                        "applyTo": "NETWORK_FILTER",
                        "match": {"context": "GATEWAY", "listener": HCM},
                        "patch": {
                            "operation": "INSERT_BEFORE",
                            "value": {
                                "name": "envoy.filters.network.connection_limit",
                                "typed_config": {
                                    "@type": CONNECTION_LIMIT,
                                    "stat_prefix": "cl",
                                    "max_connections": 10,
                                },
                            },
                        },
                    },
                    http_filter("INSERT_FIRST", "gw-filter", "GATEWAY"),
                    http_filter("INSERT_FIRST", "sidecar-only", "SIDECAR_INBOUND"),
                ],
                ns="istio-system",
                selector={"istio": "ingressgateway"},
            )
        ]
    )
    res = generate(router_node(gateway_ports={80: 8080}), push)
    gw = listener(res, "0.0.0.0_8080")
    assert gw.per_connection_buffer_limit_bytes.value == 4096
    assert "extra" in res[LISTENER_TYPE]
    chain = gw.filter_chains[0]
    assert chain.filters[0].name == "envoy.filters.network.connection_limit"
    hcm = hcm_pb2.HttpConnectionManager()
    chain.filters[1].typed_config.Unpack(hcm)
    names = [f.name for f in hcm.http_filters]
    assert names[0] == "gw-filter" and "sidecar-only" not in names
    # A sidecar is not a gateway.
    sidecar = generate(sidecar_node("reviews", ip="10.1.0.12"), push)
    assert "extra" not in sidecar[LISTENER_TYPE]


def test_a_listener_patch_for_one_port_touches_that_ports_chains_not_virtual_outbound() -> None:
    def listener_patch(op: str, value: Any = None, **match: Any) -> dict[str, Any]:
        patch: dict[str, Any] = {"operation": op}
        if value is not None:
            patch["value"] = value
        return {
            "applyTo": "LISTENER",
            "match": {"context": "SIDECAR_OUTBOUND", "listener": match},
            "patch": patch,
        }

    push = bookinfo_push(
        [
            envoy_filter(
                "l",
                [
                    listener_patch("REMOVE", name="0.0.0.0_9080"),
                    listener_patch(
                        "MERGE", {"per_connection_buffer_limit_bytes": 1}, portNumber=9080
                    ),
                ],
                selector=REVIEWS,
            )
        ]
    )
    res = generate(sidecar_node("reviews", ip="10.1.0.12"), push)
    vo = listener(res, "virtualOutbound")
    assert "0.0.0.0_9080" not in [c.name for c in vo.filter_chains]
    assert vo.HasField("default_filter_chain")
    assert not vo.HasField("per_connection_buffer_limit_bytes")


def test_merge_reaches_into_a_filters_typed_config_written_as_typed_struct() -> None:
    from envoy.extensions.filters.http.router.v3 import router_pb2

    merge = {
        "applyTo": "HTTP_FILTER",
        "match": {
            "context": "SIDECAR_INBOUND",
            "listener": {
                "filterChain": {
                    "filter": {
                        "name": "envoy.filters.network.http_connection_manager",
                        "subFilter": {"name": "envoy.filters.http.router"},
                    }
                }
            },
        },
        "patch": {
            "operation": "MERGE",
            "value": {
                "typed_config": {
                    "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                    "type_url": "type.googleapis.com/" + router_pb2.Router.DESCRIPTOR.full_name,
                    "value": {"suppress_envoy_headers": True},
                }
            },
        },
    }
    res = generate(
        sidecar_node("reviews", ip="10.1.0.12"),
        bookinfo_push([envoy_filter("m", [merge], selector=REVIEWS)]),
    )
    router = unpack_hcm(inbound_chains(res)[0]).http_filters[-1]
    assert router.name == "envoy.filters.http.router"
    cfg = router_pb2.Router()
    assert router.typed_config.Unpack(cfg)
    assert cfg.suppress_envoy_headers


MESHED_REVIEWS = sidecar_node(
    "reviews",
    ip="10.1.0.12",
    labels={"app": "reviews", "version": "v1", "security.istio.io/tlsMode": "istio"},
)


def chain_patch(op: str, context: str, value: Any = None, **chain: Any) -> dict[str, Any]:
    patch: dict[str, Any] = {"operation": op}
    if value is not None:
        patch["value"] = value
    match = {"context": context, "listener": {"filterChain": chain}}
    return {"applyTo": "FILTER_CHAIN", "match": match, "patch": patch}


def test_filter_chain_add_remove_merge_by_transport_protocol_and_destination_port() -> None:
    """FILTER_CHAIN as Istio: ``filterChain.transportProtocol`` and ``destinationPort`` pick
    the chains of a PERMISSIVE port (its ``tls`` and ``raw_buffer`` chains); a port no chain
    has matches nothing; ADD appends a chain."""
    timeout = {"transport_socket_connect_timeout": "7s"}
    added = {
        "name": "added",
        "filter_chain_match": {"destination_port": 7777},
        "filters": [
            {
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/"
                    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": "added",
                    "cluster": "BlackHoleCluster",
                },
            }
        ],
    }
    patches = [
        chain_patch(
            "REMOVE", "SIDECAR_INBOUND", transportProtocol="raw_buffer", destinationPort=9080
        ),
        chain_patch(
            "MERGE", "SIDECAR_INBOUND", timeout, transportProtocol="tls", destinationPort=9080
        ),
        chain_patch("MERGE", "SIDECAR_INBOUND", {"name": "never"}, destinationPort=9999),
        chain_patch("ADD", "SIDECAR_INBOUND", added),
    ]
    before = listener(generate(MESHED_REVIEWS, bookinfo_push()), "virtualInbound")
    res = generate(MESHED_REVIEWS, bookinfo_push([envoy_filter("fc", patches, selector=REVIEWS)]))
    after = listener(res, "virtualInbound")

    def on_9080(lst: Any) -> list[tuple[str, int]]:
        return sorted(
            (c.filter_chain_match.transport_protocol, c.transport_socket_connect_timeout.seconds)
            for c in lst.filter_chains
            if c.filter_chain_match.destination_port.value == 9080
        )

    assert on_9080(before) == [("raw_buffer", 0), ("tls", 0)]
    assert on_9080(after) == [("tls", 7)]
    assert "never" not in [c.name for c in after.filter_chains]
    assert after.filter_chains[-1].name == "added"
    # Another proxy is untouched.
    other = generate(
        sidecar_node("ratings", ip="10.1.0.13"),
        bookinfo_push([envoy_filter("fc", patches, selector=REVIEWS)]),
    )
    assert "added" not in [c.name for c in listener(other, "virtualInbound").filter_chains]


def test_filter_chain_sni_match_picks_the_tls_route_chain() -> None:
    """``filterChain.sni`` matches the outbound chain a ``tls`` route made for that SNI only."""
    docs = yaml.safe_load_all(
        """
kind: Service
metadata: {name: secure, namespace: default}
spec:
  selector: {app: secure}
  ports: [{name: tls, port: 8443}]
---
kind: VirtualService
metadata: {name: secure, namespace: default}
spec:
  hosts: [secure, "*.example.com"]
  tls:
  - match: [{sniHosts: [one.example.com]}]
    route: [{destination: {host: secure, port: {number: 8443}}}]
"""
    )
    merge = {"transport_socket_connect_timeout": "3s"}
    patch = chain_patch("MERGE", "SIDECAR_OUTBOUND", merge, sni="one.example.com")
    push = bookinfo_push([*docs, envoy_filter("sni", [patch])])
    lst = listener(generate(sidecar_node(), push), "virtualOutbound")
    touched = [c for c in lst.filter_chains if c.transport_socket_connect_timeout.seconds == 3]
    assert [list(c.filter_chain_match.server_names) for c in touched] == [["one.example.com"]]


def test_listener_filter_remove_and_insert_first_by_name() -> None:
    """LISTENER_FILTER: REMOVE the one ``listenerFilter`` names; INSERT_FIRST puts a filter
    before the others."""
    http_inspector = {
        "name": "envoy.filters.listener.http_inspector",
        "typed_config": {
            "@type": "type.googleapis.com/"
            "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
        },
    }
    inbound = {"context": "SIDECAR_INBOUND", "listener": {"name": "virtualInbound"}}
    patches = [
        {
            "applyTo": "LISTENER_FILTER",
            "match": {
                "context": "SIDECAR_INBOUND",
                "listener": {
                    "name": "virtualInbound",
                    "listenerFilter": "envoy.filters.listener.tls_inspector",
                },
            },
            "patch": {"operation": "REMOVE"},
        },
        {
            "applyTo": "LISTENER_FILTER",
            "match": inbound,
            "patch": {"operation": "INSERT_FIRST", "value": http_inspector},
        },
    ]
    before = listener(generate(MESHED_REVIEWS, bookinfo_push()), "virtualInbound")
    assert [f.name for f in before.listener_filters] == [
        "envoy.filters.listener.original_dst",
        "envoy.filters.listener.tls_inspector",
    ]
    push = bookinfo_push([envoy_filter("lf", patches, selector=REVIEWS)])
    after = listener(generate(MESHED_REVIEWS, push), "virtualInbound")
    assert [f.name for f in after.listener_filters] == [
        "envoy.filters.listener.http_inspector",
        "envoy.filters.listener.original_dst",
    ]


HEADER_MUTATION = (
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"
)


def _ecds_pair(value: str) -> list[dict[str, Any]]:
    """Istio's ECDS pair: an HTTP filter that takes its config from extension config
    discovery over ADS, and the EXTENSION_CONFIG that config is."""
    return [
        {
            "applyTo": "HTTP_FILTER",
            "match": {
                "context": "SIDECAR_INBOUND",
                "listener": HCM,
            },
            "patch": {
                "operation": "INSERT_FIRST",
                "value": {
                    "name": "add-header",
                    "config_discovery": {
                        "config_source": {"ads": {}},
                        "type_urls": [HEADER_MUTATION],
                    },
                },
            },
        },
        {
            "applyTo": "EXTENSION_CONFIG",
            "match": {"context": "SIDECAR_OUTBOUND"},
            "patch": {
                "operation": "ADD",
                "value": {
                    "name": "add-header",
                    "typed_config": {
                        "@type": HEADER_MUTATION,
                        "mutations": {
                            "response_mutations": [
                                {"append": {"header": {"key": "x-ecds", "value": value}}}
                            ]
                        },
                    },
                },
            },
        },
    ]


def test_extension_config_is_served_over_ecds_to_the_selected_proxy_by_name() -> None:
    from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2

    from pilotfish.api.typeurls import EXTENSION_CONFIG_TYPE

    push = bookinfo_push([envoy_filter("ecds", _ecds_pair("one"), selector={"app": "reviews"})])
    reviews = generate(sidecar_node("reviews", ip="10.1.0.12"), push)
    # The context of an EXTENSION_CONFIG plays no part (as Istio): served by its name.
    ecds = reviews[EXTENSION_CONFIG_TYPE]
    assert list(ecds) == ["add-header"]
    cfg = header_mutation_pb2.HeaderMutation()
    assert ecds["add-header"].typed_config.Unpack(cfg)
    assert cfg.mutations.response_mutations[0].append.header.value == "one"
    for c in inbound_chains(reviews):
        first = unpack_hcm(c).http_filters[0]
        assert first.name == "add-header"
        assert first.config_discovery.config_source.HasField("ads")
    assert generate(sidecar_node("productpage"), push)[EXTENSION_CONFIG_TYPE] == {}


def test_only_added_extension_configs_are_served_the_later_winning_a_name() -> None:
    from pilotfish.api.typeurls import EXTENSION_CONFIG_TYPE

    first = envoy_filter("a-first", _ecds_pair("one")[1:])
    later = envoy_filter("b-later", _ecds_pair("two")[1:])
    push = bookinfo_push([later, first])
    ecds = generate(sidecar_node("reviews", ip="10.1.0.12"), push)[EXTENSION_CONFIG_TYPE]
    assert b"two" in ecds["add-header"].typed_config.value


PLAIN_HTTP_GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: plain-gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["plain.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: plain, namespace: default}
spec:
  hosts: [plain.example.com]
  gateways: [plain-gw]
  http:
  - route: [{destination: {host: reviews}}]
"""


def test_route_configuration_gateway_matches_that_gateways_https_route_config_only() -> None:
    from pilotfish.server import proxy_resources
    from tests.unit.translate import test_tls as tls
    from tests.unit.translate.fixtures import push_for

    patch = {
        "applyTo": "VIRTUAL_HOST",
        "match": {"context": "GATEWAY", "routeConfiguration": {"gateway": "default/gw"}},
        "patch": {
            "operation": "MERGE",
            "value": {"response_headers_to_add": [{"header": {"key": "x-gw", "value": "1"}}]},
        },
    }
    other = {**patch, "match": {"routeConfiguration": {"gateway": "default/elsewhere"}}}
    docs = [
        *tls.DOCS,
        *tls.GATEWAY,
        tls.secret("bookinfo", tls_crt=tls.SERVER.cert, tls_key=tls.SERVER.key),
        envoy_filter("by-gateway", [patch, other], ns="istio-system"),
        *yaml.safe_load_all(PLAIN_HTTP_GATEWAY),
    ]
    node = router_node(gateway_ports={443: 8443, 8443: 9443})
    routes = proxy_resources(node, push_for(docs))[ROUTE_TYPE]
    patched = {
        n for n, rc in routes.items() if any(v.response_headers_to_add for v in rc.virtual_hosts)
    }
    assert "https.443.https.gw.default" in routes and len(routes) > 1
    assert patched == {"https.443.https.gw.default"}
