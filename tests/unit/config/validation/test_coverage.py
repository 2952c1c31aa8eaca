"""The field-support table: every model field has a decision, the docs match, warnings fire."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pilotfish.config.validation import coverage, validate

from ._util import body

DOCS = Path(__file__).resolve().parents[4] / "docs" / "configuration.md"


@pytest.mark.parametrize("kind", coverage.COVERED_KINDS)
def test_every_field_has_a_decision(kind: str) -> None:
    missing = [f"{key} ({path})" for key, path, d in coverage.walk(kind) if d is None]
    assert not missing, f"{kind}: decide enforced/refused/warned in coverage.py for {missing}"


@pytest.mark.parametrize("kind", coverage.COVERED_KINDS)
def test_no_entry_without_a_field(kind: str) -> None:
    reached = {key for key, _, _ in coverage.walk(kind)}
    stale = sorted(set(coverage.FIELDS[kind]) - reached)
    assert not stale, f"{kind}: coverage.py lists fields its model does not reach: {stale}"


def test_refused_and_warned_fields_say_why() -> None:
    for kind in coverage.COVERED_KINDS:
        for key, d in coverage.FIELDS[kind].items():
            assert d.status == "enforced" or d.note, f"{kind} {key}"


def test_docs_table_in_sync() -> None:
    text = DOCS.read_text()
    begin, end = coverage.DOCS_BEGIN, coverage.DOCS_END
    table = text[text.index(begin) + len(begin) : text.index(end)]
    assert table == coverage.markdown(), (
        "docs/configuration.md is out of date: regenerate it with "
        "python -m pilotfish.config.validation.coverage"
    )


def _warned(b: dict[str, Any]) -> list[str]:
    return [w.path for w in validate(b).warnings]


_VS = {"hosts": ["reviews"]}
_ROUTE = [{"destination": {"host": "reviews"}}]

# One body per field newly warned about at apply, and the path the warning must name.
NEWLY_WARNED = [
    (
        body("DestinationRule", {"host": "r", "trafficPolicy": {"retryBudget": {"percent": 20}}}),
        "spec.trafficPolicy.retryBudget",
        ("DestinationRule", "TrafficPolicy.retryBudget"),
    ),
    (
        body(
            "DestinationRule",
            {"host": "r", "trafficPolicy": {"tunnel": {"targetHost": "x.com", "targetPort": 443}}},
        ),
        "spec.trafficPolicy.tunnel",
        ("DestinationRule", "TrafficPolicy.tunnel"),
    ),
    (
        body(
            "DestinationRule",
            {
                "host": "r",
                "trafficPolicy": {
                    "loadBalancer": {
                        "simple": "ROUND_ROBIN",
                        "warmup": {"duration": "10s", "minimumPercent": 20, "aggression": 2},
                    }
                },
            },
        ),
        "spec.trafficPolicy.loadBalancer.warmup.minimumPercent",
        ("DestinationRule", "WarmupConfiguration.minimumPercent"),
    ),
    (
        body(
            "DestinationRule",
            {
                "host": "r",
                "trafficPolicy": {
                    "loadBalancer": {"simple": "ROUND_ROBIN", "warmup": {"aggression": 2}}
                },
            },
        ),
        "spec.trafficPolicy.loadBalancer.warmup.aggression",
        ("DestinationRule", "WarmupConfiguration.aggression"),
    ),
    (
        body(
            "Gateway",
            {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {
                        "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                        "bind": "10.0.0.1",
                        "defaultEndpoint": "127.0.0.1:8080",
                        "hosts": ["*"],
                    }
                ],
            },
        ),
        "spec.servers[0].bind",
        ("Gateway", "Server.bind"),
    ),
    (
        body(
            "DestinationRule",
            {
                "host": "r",
                "trafficPolicy": {
                    "connectionPool": {
                        "http": {"http2KeepAlive": {"interval": "30s", "timeout": "5s"}}
                    }
                },
            },
        ),
        "spec.trafficPolicy.connectionPool.http.http2KeepAlive",
        ("DestinationRule", "HTTPSettings.http2KeepAlive"),
    ),
    (
        body(
            "Gateway",
            {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {
                        "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                        "name": "main",
                        "hosts": ["*"],
                    }
                ],
            },
        ),
        "spec.servers[0].name",
        ("Gateway", "Server.name"),
    ),
    (
        body(
            "RequestAuthentication",
            {"jwtRules": [{"issuer": "https://idp.example", "timeout": "5s"}]},
        ),
        "spec.jwtRules[0].timeout",
        ("RequestAuthentication", "JWTRule.timeout"),
    ),
    (
        body("Telemetry", {"metrics": [{"reportingInterval": "30s"}]}),
        "spec.metrics[0].reportingInterval",
        ("Telemetry", "Metrics.reportingInterval"),
    ),
    (
        body("Telemetry", {"tracing": [{"enableIstioTags": False}]}),
        "spec.tracing[0].enableIstioTags",
        ("Telemetry", "Tracing.enableIstioTags"),
    ),
    (
        body("Telemetry", {"tracing": [{"useRequestIdForTraceSampling": False}]}),
        "spec.tracing[0].useRequestIdForTraceSampling",
        ("Telemetry", "Tracing.useRequestIdForTraceSampling"),
    ),
    (
        body(
            "VirtualService",
            {
                **_VS,
                "http": [
                    {
                        "corsPolicy": {
                            "allowOrigins": [{"exact": "a.com"}],
                            "unmatchedPreflights": "IGNORE",
                        },
                        "route": _ROUTE,
                    }
                ],
            },
        ),
        "spec.http[0].corsPolicy.unmatchedPreflights",
        ("VirtualService", "CorsPolicy.unmatchedPreflights"),
    ),
    (
        body(
            "VirtualService",
            {**_VS, "http": [{"match": [{"statPrefix": "r1"}], "route": _ROUTE}]},
        ),
        "spec.http[0].match[0].statPrefix",
        ("VirtualService", "HTTPMatchRequest.statPrefix"),
    ),
    (
        body(
            "VirtualService",
            {**_VS, "http": [{"redirect": {"derivePort": "FROM_REQUEST_PORT"}}]},
        ),
        "spec.http[0].redirect.derivePort",
        ("VirtualService", "HTTPRedirect.derivePort"),
    ),
    (
        body("WorkloadEntry", {"address": "10.0.0.5", "network": "net2"}),
        "spec.network",
        ("WorkloadEntry", "WorkloadEntrySpec.network"),
    ),
    (
        body("AuthorizationPolicy", {"targetRefs": [{"kind": "Service", "name": "reviews"}]}),
        "spec.targetRefs",
        ("AuthorizationPolicy", "AuthorizationPolicySpec.targetRefs"),
    ),
    (
        body(
            "RequestAuthentication",
            {"targetRef": {"kind": "Service", "name": "reviews"}},
        ),
        "spec.targetRef",
        ("RequestAuthentication", "RequestAuthenticationSpec.targetRef"),
    ),
]


@pytest.mark.parametrize(("b", "path", "entry"), NEWLY_WARNED, ids=[p for _, p, _ in NEWLY_WARNED])
def test_newly_warned_fields_warn_at_apply(
    b: dict[str, Any], path: str, entry: tuple[str, str]
) -> None:
    assert path in _warned(b)
    kind, key = entry
    assert coverage.FIELDS[kind][key].status == "warned"


def test_unmatched_preflights_forward_is_not_warned() -> None:
    b = body(
        "VirtualService",
        {
            **_VS,
            "http": [
                {
                    "corsPolicy": {
                        "allowOrigins": [{"exact": "a.com"}],
                        "unmatchedPreflights": "FORWARD",
                    },
                    "route": _ROUTE,
                }
            ],
        },
    )
    assert "spec.http[0].corsPolicy.unmatchedPreflights" not in _warned(b)


def test_trust_domains_are_accepted_and_enforced() -> None:
    # Istio 1.28's AuthorizationPolicy source trustDomains / notTrustDomains.
    b = body(
        "AuthorizationPolicy",
        {"rules": [{"from": [{"source": {"trustDomains": ["td1"], "notTrustDomains": ["td2"]}}]}]},
    )
    assert _warned(b) == []
    assert coverage.FIELDS["AuthorizationPolicy"]["Source.trustDomains"].status == "enforced"


def test_merge_and_replace_list_is_accepted() -> None:
    b = body(
        "EnvoyFilter",
        {
            "configPatches": [
                {
                    "applyTo": "CLUSTER",
                    "match": {"cluster": {"service": "reviews.default.svc.cluster.local"}},
                    "patch": {
                        "operation": "MERGE_AND_REPLACE_LIST",
                        "value": {"connect_timeout": "2s"},
                    },
                }
            ]
        },
    )
    validate(b)


def _refused(b: dict[str, Any]) -> list[str]:
    from pilotfish.errors import ValidationError

    try:
        validate(b)
    except ValidationError as e:
        return [x.path for x in e.errors]
    return []


_GW_SERVER = {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
_EF_PATCH = {"applyTo": "HTTP_FILTER", "patch": {"operation": "REMOVE"}}

# Refused entries of the table, each with a body that sets the field: should one of them
# become supported, this fails until its entry in coverage.py says what happens now.
LISTED_REFUSALS = [
    (
        body(
            "Gateway",
            {"servers": [{**_GW_SERVER, "port": {**_GW_SERVER["port"], "targetPort": 8080}}]},
        ),
        "spec.servers[0].port.targetPort",
        ("Gateway", "Port.targetPort"),
    ),
    (
        body(
            "VirtualService",
            {**_VS, "http": [{"fault": {"delay": {"exponentialDelay": "1s"}}, "route": _ROUTE}]},
        ),
        "spec.http[0].fault.delay.exponentialDelay",
        ("VirtualService", "FaultDelay.exponentialDelay"),
    ),
    (
        body(
            "Sidecar",
            {
                "ingress": [
                    {
                        "port": {"number": 9080, "name": "http", "protocol": "HTTP"},
                        "defaultEndpoint": "127.0.0.1:8080",
                        "tls": {
                            "mode": "SIMPLE",
                            "serverCertificate": "/c.pem",
                            "privateKey": "/k.pem",
                        },
                    }
                ]
            },
        ),
        "spec.ingress[0].tls",
        ("Sidecar", "IstioIngressListener.tls"),
    ),
    (
        body(
            "EnvoyFilter",
            {"targetRefs": [{"kind": "Gateway", "name": "g"}], "configPatches": [_EF_PATCH]},
        ),
        "spec.targetRefs",
        ("EnvoyFilter", "EnvoyFilterSpec.targetRefs"),
    ),
    (
        body(
            "EnvoyFilter",
            {
                "configPatches": [
                    {
                        "applyTo": "HTTP_ROUTE",
                        "match": {"routeConfiguration": {"gateway": "default/gw"}},
                        "patch": {"operation": "MERGE", "value": {}},
                    }
                ]
            },
        ),
        "spec.configPatches[0].match.routeConfiguration.gateway",
        ("EnvoyFilter", "RouteConfigurationMatch.gateway"),
    ),
]


@pytest.mark.parametrize(
    ("b", "path", "entry"), LISTED_REFUSALS, ids=[p for _, p, _ in LISTED_REFUSALS]
)
def test_listed_refusals_are_refused_at_apply(
    b: dict[str, Any], path: str, entry: tuple[str, str]
) -> None:
    kind, key = entry
    assert coverage.FIELDS[kind][key].status == "refused"
    assert path in _refused(b), f"{kind} {key} is no longer refused: update coverage.py"
