"""DestinationRule rules."""

from __future__ import annotations

from typing import Any

import pytest

from ._util import body, has, ok


def dr(**spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"host": "reviews"}
    s.update(spec)
    return body("DestinationRule", s)


def test_host_required() -> None:
    has(body("DestinationRule", {"subsets": []}), "spec.host", "host is required")
    has(dr(host="bad host"), "spec.host", "invalid")
    ok(dr(host="*.example.com"))


def test_duplicate_subset_names() -> None:
    subsets = [
        {"name": "v1", "labels": {"version": "v1"}},
        {"name": "v1", "labels": {"version": "v2"}},
    ]
    has(dr(subsets=subsets), "spec.subsets[1].name", "duplicate subset names: v1")
    subsets[1]["name"] = "v2"
    ok(dr(subsets=subsets))


def test_subset_without_labels_is_valid_as_in_istio() -> None:
    ok(dr(subsets=[{"name": "all"}]))
    ok(dr(subsets=[{"name": "lb", "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}}]))


def test_subset_name_and_labels_checked() -> None:
    has(
        dr(subsets=[{"name": "V_1", "labels": {"version": "v1"}}]),
        "spec.subsets[0].name",
        "subset name is invalid",
    )
    has(
        dr(subsets=[{"name": "v1", "labels": {"version": "bad value!"}}]),
        "spec.subsets[0].labels[version]",
        "invalid label value",
    )


@pytest.mark.parametrize(
    ("pool", "path", "reason"),
    [
        (
            {"tcp": {"maxConnections": -1}},
            "tcp.maxConnections",
            "max connections must be non-negative",
        ),
        (
            {"http": {"http1MaxPendingRequests": -1}},
            "http.http1MaxPendingRequests",
            "must be non-negative",
        ),
        (
            {"http": {"http2MaxRequests": -5}},
            "http.http2MaxRequests",
            "http2 max requests must be non-negative",
        ),
        ({"http": {"maxRetries": -1}}, "http.maxRetries", "max retries must be non-negative"),
        ({"tcp": {"connectTimeout": "10"}}, "tcp.connectTimeout", "invalid duration"),
        (
            {"http": {"idleTimeout": "0.1ms"}},
            "http.idleTimeout",
            "duration must be greater than 1ms",
        ),
        (
            {"tcp": {"connectTimeout": "0s"}},
            "tcp.connectTimeout",
            "duration must be greater than 1ms",
        ),
        (
            {"http": {"h2UpgradePolicy": "UPGRADE", "useClientProtocol": True}},
            "http.useClientProtocol",
            "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
        ),
    ],
)
def test_connection_pool_out_of_range(pool: dict[str, Any], path: str, reason: str) -> None:
    has(
        dr(trafficPolicy={"connectionPool": pool}),
        f"spec.trafficPolicy.connectionPool.{path}",
        reason,
    )


def test_connection_pool_valid_and_empty() -> None:
    ok(
        dr(
            trafficPolicy={
                "connectionPool": {
                    "tcp": {
                        "maxConnections": 100,
                        "connectTimeout": "30ms",
                        "tcpKeepalive": {"time": "7200s", "interval": "75s"},
                    },
                    "http": {
                        "http1MaxPendingRequests": 1,
                        "maxRequestsPerConnection": 1,
                        "idleTimeout": "1h",
                    },
                }
            }
        )
    )
    has(
        dr(trafficPolicy={"connectionPool": {}}),
        "spec.trafficPolicy.connectionPool",
        "connection pool must have at least one field",
    )
    has(dr(trafficPolicy={}), "spec.trafficPolicy", "traffic policy must have at least one field")


@pytest.mark.parametrize(
    ("od", "path", "reason"),
    [
        (
            {"maxEjectionPercent": 101},
            "maxEjectionPercent",
            "percentage 101 is not in range 0..100",
        ),
        ({"minHealthPercent": -1}, "minHealthPercent", "is not in range 0..100"),
        ({"interval": "0.5ms"}, "interval", "duration must be greater than 1ms"),
        ({"baseEjectionTime": "30"}, "baseEjectionTime", "invalid duration"),
        ({"consecutive5xxErrors": -1}, "consecutive5xxErrors", "must be non-negative"),
        (
            {"consecutiveLocalOriginFailures": 3},
            "consecutiveLocalOriginFailures",
            "split external local origin errors is set to false",
        ),
    ],
)
def test_outlier_detection_out_of_range(od: dict[str, Any], path: str, reason: str) -> None:
    has(
        dr(trafficPolicy={"outlierDetection": od}),
        f"spec.trafficPolicy.outlierDetection.{path}",
        reason,
    )


def test_outlier_detection_valid() -> None:
    ok(
        dr(
            trafficPolicy={
                "outlierDetection": {
                    "consecutive5xxErrors": 7,
                    "interval": "1ms",
                    "baseEjectionTime": "15m",
                    "maxEjectionPercent": 100,
                    "splitExternalLocalOriginErrors": True,
                    "consecutiveLocalOriginFailures": 3,
                }
            }
        )
    )


def test_insecure_skip_verify_with_ca_or_credentials() -> None:
    msg = (
        "cannot specify CaCertificates or CredentialName or SubjectAltNames when "
        "InsecureSkipVerify is set true"
    )
    for extra in (
        {"caCertificates": "/etc/ca.pem"},
        {"credentialName": "c"},
        {"subjectAltNames": ["a"]},
    ):
        tls = {"mode": "SIMPLE", "insecureSkipVerify": True, **extra}
        has(dr(trafficPolicy={"tls": tls}), "spec.trafficPolicy.tls", msg)
    ok(dr(trafficPolicy={"tls": {"mode": "SIMPLE", "insecureSkipVerify": True, "sni": "a.com"}}))
    ok(dr(trafficPolicy={"tls": {"mode": "SIMPLE", "caCertificates": "/etc/ca.pem"}}))


def test_mutual_tls_needs_client_certificate() -> None:
    has(
        dr(trafficPolicy={"tls": {"mode": "MUTUAL"}}),
        "spec.trafficPolicy.tls.clientCertificate",
        "client certificate required",
    )
    ok(dr(trafficPolicy={"tls": {"mode": "MUTUAL", "credentialName": "client-cred"}}))
    ok(dr(trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}}))


def test_load_balancer() -> None:
    has(
        dr(
            trafficPolicy={
                "loadBalancer": {"consistentHash": {"httpCookie": {"name": "", "ttl": "0s"}}}
            }
        ),
        "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
        "name required for HttpCookie",
    )
    has(
        dr(
            trafficPolicy={
                "loadBalancer": {
                    "consistentHash": {"httpHeaderName": "x", "maglev": {"tableSize": 100}}
                }
            }
        ),
        "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
        "tableSize must be a prime number for maglev",
    )
    has(
        dr(
            trafficPolicy={
                "loadBalancer": {"simple": "ROUND_ROBIN", "consistentHash": {"useSourceIp": True}}
            }
        ),
        "spec.trafficPolicy.loadBalancer",
        "only one of simple or consistentHash",
    )
    ok(
        dr(
            trafficPolicy={
                "loadBalancer": {
                    "consistentHash": {
                        "httpCookie": {"name": "user", "path": "/", "ttl": "0s"},
                        "ringHash": {"minimumRingSize": 1024},
                    },
                    "localityLbSetting": {
                        "enabled": True,
                        "distribute": [{"from": "us/*", "to": {"us/a/*": 80, "us/b/*": 20}}],
                    },
                    "warmupDurationSecs": "60s",
                }
            }
        )
    )
    has(
        dr(
            trafficPolicy={
                "loadBalancer": {
                    "localityLbSetting": {"distribute": [{"from": "us/*", "to": {"us/a/*": 50}}]}
                }
            }
        ),
        "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
        "total locality weight 50 != 100",
    )
    has(
        dr(trafficPolicy={"loadBalancer": {"simple": "RANDOM", "minimumRingSize": 3}}),
        "spec.trafficPolicy.loadBalancer.minimumRingSize",
        'unknown field "minimumRingSize"',
    )


def test_port_level_settings_and_tunnel() -> None:
    has(
        dr(trafficPolicy={"portLevelSettings": [{"loadBalancer": {"simple": "RANDOM"}}]}),
        "spec.trafficPolicy.portLevelSettings[0].port",
        "portTrafficPolicy must have valid port",
    )
    ok(
        dr(
            trafficPolicy={
                "portLevelSettings": [
                    {"port": {"number": 80}, "loadBalancer": {"simple": "LEAST_REQUEST"}}
                ]
            }
        )
    )
    has(
        dr(
            trafficPolicy={
                "tunnel": {"protocol": "GET", "targetHost": "proxy.example.com", "targetPort": 8080}
            }
        ),
        "spec.trafficPolicy.tunnel.protocol",
        'tunnel protocol must be "CONNECT" or "POST"',
    )
    ok(dr(trafficPolicy={"tunnel": {"targetHost": "10.0.0.1", "targetPort": 3128}}))
    ok(dr(trafficPolicy={"proxyProtocol": {"version": "V2"}}))


def test_workload_selector_and_export_to() -> None:
    has(
        dr(workloadSelector={"matchLabels": {"app": "x"}}, exportTo=["other"]),
        "spec.exportTo",
        "destination rule with workload selector cannot have exportTo beyond current namespace",
    )
    ok(dr(workloadSelector={"matchLabels": {"app": "x"}}, exportTo=["."]))
