"""EnvoyFilter patches on generated config: matching, operations, order, scoping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2

from pilotfish.translate import generate
from tests.unit.translate.fixtures import (
    bookinfo_push,
    listener,
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
