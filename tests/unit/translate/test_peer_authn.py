"""PeerAuthentication precedence (mesh, namespace, workload, port) and inbound chains."""

from __future__ import annotations

from typing import Any

import pytest

from pilotfish.translate import LISTENER_TYPE, generate
from pilotfish.translate.peer_authn import DISABLE, PERMISSIVE, STRICT, MtlsPolicy, compose
from pilotfish.translate.tls import TLS_MODE_LABEL
from tests.unit.translate.fixtures import bookinfo_push, push_for, sidecar_node

MESHED = {"app": "reviews", "version": "v1", TLS_MODE_LABEL: "istio"}


def pa(
    name: str,
    ns: str,
    mode: str | None = None,
    selector: dict[str, str] | None = None,
    ports: dict[Any, str] | None = None,
    created: str = "",
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if mode is not None:
        spec["mtls"] = {"mode": mode}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    if ports:
        spec["portLevelMtls"] = {k: {"mode": v} for k, v in ports.items()}
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if created:
        meta["creationTimestamp"] = created
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": meta,
        "spec": spec,
    }


def policy(docs: list[dict[str, Any]], ns: str = "default", **labels: str) -> MtlsPolicy:
    return compose(push_for(docs).peer_authentications, ns, labels or {"app": "reviews"})


def test_default_is_permissive() -> None:
    assert policy([]) == MtlsPolicy(PERMISSIVE)


@pytest.mark.parametrize(
    ("docs", "expected"),
    [
        ([pa("m", "istio-system", "STRICT")], STRICT),
        ([pa("m", "istio-system", "STRICT"), pa("n", "default", "PERMISSIVE")], PERMISSIVE),
        ([pa("m", "istio-system", "STRICT"), pa("n", "default", "UNSET")], STRICT),
        ([pa("m", "istio-system", "STRICT"), pa("n", "default")], STRICT),
        ([pa("n", "default", "DISABLE"), pa("w", "default", "STRICT", {"app": "reviews"})], STRICT),
        ([pa("n", "default", "DISABLE"), pa("w", "default", "UNSET", {"app": "reviews"})], DISABLE),
        # A workload policy for other labels, or in another namespace, does not apply.
        ([pa("w", "default", "STRICT", {"app": "ratings"})], PERMISSIVE),
        ([pa("w", "other", "STRICT", {"app": "reviews"})], PERMISSIVE),
        # A namespace-wide policy in another namespace does not apply either.
        ([pa("n", "other", "STRICT")], PERMISSIVE),
        # A selector in the root namespace is workload level there, not mesh level.
        ([pa("m", "istio-system", "STRICT", {"app": "reviews"})], PERMISSIVE),
    ],
)
def test_precedence(docs: list[dict[str, Any]], expected: str) -> None:
    assert policy(docs).mode == expected


def test_oldest_policy_wins_at_one_level() -> None:
    docs = [
        pa("b", "default", "STRICT", created="2024-01-01T00:00:00Z"),
        pa("a", "default", "DISABLE", created="2024-06-01T00:00:00Z"),
    ]
    assert policy(docs).mode == STRICT


def test_port_level_from_the_workload_policy_only() -> None:
    docs = [
        pa("n", "default", "STRICT", ports={9080: "DISABLE"}),  # ignored: no selector
        pa("w", "default", "STRICT", {"app": "reviews"}, {9080: "DISABLE", "9081": "UNSET"}),
    ]
    got = policy(docs)
    assert got.for_port(9080) == DISABLE
    assert got.for_port(9081) == STRICT  # UNSET inherits the workload's mode
    assert got.for_port(1234) == STRICT
    assert policy(docs[:1]).for_port(9080) == STRICT


def _explicit(docs: list[dict[str, Any]], labels: dict[str, str]) -> Any:
    node = sidecar_node(
        app="reviews",
        ip="10.1.0.12",
        labels=labels,
        interception_mode="NONE",
        outbound_port=15001,
        inbound_ports={9080: 19080},
    )
    return generate(node, bookinfo_push(docs))[LISTENER_TYPE]["10.1.0.12_19080"]


def _matches(listener: Any) -> list[tuple[str, tuple[str, ...], bool]]:
    return [
        (
            c.filter_chain_match.transport_protocol,
            tuple(c.filter_chain_match.application_protocols),
            c.HasField("transport_socket"),
        )
        for c in listener.filter_chains
    ]


def test_inbound_chains_per_mode() -> None:
    permissive = _explicit([], MESHED)
    assert [f.name for f in permissive.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    (tls_proto, alpn, tls), plain = _matches(permissive)
    assert (tls_proto, tls) == ("tls", True) and "istio-peer-exchange" in alpn
    assert plain == ("raw_buffer", (), False)

    strict = _explicit([pa("n", "default", "STRICT")], MESHED)
    assert _matches(strict) == [("tls", (), True)]

    disable = _explicit([pa("n", "default", "DISABLE")], MESHED)
    assert _matches(disable) == [("", (), False)] and not disable.listener_filters


def test_proxy_without_identity_stays_plaintext_and_strict_refuses() -> None:
    labels = {"app": "reviews", "version": "v1"}
    assert _matches(_explicit([], labels)) == [("", (), False)]
    strict = _explicit([pa("n", "default", "STRICT")], labels)
    (chain,) = strict.filter_chains
    assert chain.filters[0].name == "envoy.filters.network.tcp_proxy"
    assert b"BlackHoleCluster" in chain.filters[0].typed_config.value


def test_virtual_inbound_has_no_plaintext_default_under_strict() -> None:
    node = sidecar_node(app="reviews", ip="10.1.0.12", labels=MESHED)
    lst = generate(node, bookinfo_push([pa("m", "istio-system", "STRICT")]))[LISTENER_TYPE][
        "virtualInbound"
    ]
    assert not lst.HasField("default_filter_chain")
    assert {c.filter_chain_match.transport_protocol for c in lst.filter_chains} == {"tls"}
    names = [f.name for f in lst.listener_filters]
    assert names == ["envoy.filters.listener.original_dst", "envoy.filters.listener.tls_inspector"]
    permissive = generate(node, bookinfo_push())[LISTENER_TYPE]["virtualInbound"]
    assert {c.filter_chain_match.transport_protocol for c in permissive.filter_chains} == {
        "tls",
        "raw_buffer",
    }
