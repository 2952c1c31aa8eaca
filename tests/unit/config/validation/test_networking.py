"""ServiceEntry, WorkloadEntry, Sidecar, EnvoyFilter and Telemetry rules."""

from __future__ import annotations

from typing import Any

from pilotfish.config.validation import validate

from ._util import body, has, ok, problems


def se(**spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "hosts": ["api.example.com"],
        "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
    }
    s.update(spec)
    return body("ServiceEntry", s)


def test_service_entry_wildcard_host() -> None:
    has(se(hosts=["*"]), "spec.hosts[0]", "invalid host *")
    ok(se(hosts=["*.example.com"], resolution="NONE"))


def test_service_entry_hosts_required() -> None:
    has(se(hosts=[]), "spec.hosts", "service entry must have at least one host")


def test_service_entry_cidr_with_dns() -> None:
    has(
        se(addresses=["10.0.0.0/24"], resolution="DNS"),
        "spec.addresses",
        "CIDR addresses are allowed only for NONE/STATIC resolution types",
    )
    ok(se(addresses=["10.0.0.0/24"], resolution="STATIC", endpoints=[{"address": "10.0.0.1"}]))


def test_service_entry_ports_unique() -> None:
    ports = [
        {"number": 80, "name": "http", "protocol": "HTTP"},
        {"number": 80, "name": "http", "protocol": "HTTP"},
    ]
    has(se(ports=ports), "spec.ports[1].number", "service entry port 80 already defined")
    has(se(ports=ports), "spec.ports[1].name", 'service entry port name "http" already defined')
    ok(
        se(
            ports=[ports[0], {"number": 443, "name": "https", "protocol": "HTTPS"}],
            resolution="DNS",
        )
    )


def test_service_entry_endpoints_by_resolution() -> None:
    has(
        se(resolution="NONE", endpoints=[{"address": "1.2.3.4"}]),
        "spec.endpoints",
        "no endpoints should be provided for resolution type none",
    )
    has(
        se(resolution="STATIC", endpoints=[{"address": "db.example.com"}]),
        "spec.endpoints[0].address",
        "is not a valid IP address",
    )
    has(
        se(resolution="DNS", endpoints=[{"address": "bad_host"}]),
        "spec.endpoints[0].address",
        "is not a valid FQDN or an IP address",
    )
    has(
        se(resolution="DNS", endpoints=[{"address": "a.example.com", "ports": {"http": 8080}}]),
        "spec.endpoints[0].ports[http]",
        "endpoint port 8080 is not defined by the service entry",
    )
    ok(se(resolution="DNS", endpoints=[{"address": "a.example.com", "ports": {"https": 8443}}]))
    has(
        se(
            resolution="DNS",
            hosts=["a.example.com", "b.example.com"],
            ports=[{"number": 3306, "name": "mysql", "protocol": "TCP"}],
        ),
        "spec.hosts",
        "multiple hosts provided with non-HTTP, non-TLS ports",
    )


def test_workload_entry() -> None:
    has(body("WorkloadEntry", {"labels": {"app": "a"}}), "spec.address", "address is required")
    has(
        body("WorkloadEntry", {"address": "10.0.0.1", "ports": {"http": 70000}}),
        "spec.ports[http]",
        "must be in the range 1..65535",
    )
    ok(
        body(
            "WorkloadEntry",
            {
                "address": "10.0.0.1",
                "ports": {"http": 8080},
                "labels": {"app": "a"},
                "serviceAccount": "sa",
            },
        )
    )
    ok(body("WorkloadEntry", {"address": "vm1.example.com"}))


def test_workload_group() -> None:
    has(body("WorkloadGroup", {"metadata": {"labels": {"app": "a"}}}), "spec.template", "required")
    has(
        body("WorkloadGroup", {"template": {"address": "10.0.0.1"}}),
        "spec.template.address",
        "must be empty",
    )
    has(
        body("WorkloadGroup", {"template": {"ports": {"http": 70000}}}),
        "spec.template.ports[http]",
        "must be in the range 1..65535",
    )
    has(
        body("WorkloadGroup", {"template": {}, "metadata": {"labels": {"a": "b c"}}}),
        "spec.metadata.labels[a]",
        "invalid label value",
    )
    # The probe the agent runs is accepted; what it does not run is refused by field.
    ok(
        body(
            "WorkloadGroup",
            {
                "template": {},
                "probe": {
                    "httpGet": {"path": "/ready", "port": 8080, "httpHeaders": []},
                    "periodSeconds": 2,
                    "failureThreshold": 1,
                },
            },
        )
    )
    ok(body("WorkloadGroup", {"template": {}, "probe": {"exec": {"command": ["true"]}}}))
    has(
        body("WorkloadGroup", {"template": {}, "probe": {"grpc": {"port": 8080}}}),
        "spec.probe.grpc",
        "not supported",
    )
    has(
        body("WorkloadGroup", {"template": {}, "probe": {"tcpSocket": {"port": 0}}}),
        "spec.probe.tcpSocket.port",
        "1..65535",
    )
    has(
        body("WorkloadGroup", {"template": {}, "probe": {"periodSeconds": 1}}),
        "spec.probe",
        "exactly one of httpGet, tcpSocket, exec",
    )
    ok(
        body(
            "WorkloadGroup",
            {
                "metadata": {"labels": {"app": "vm"}, "annotations": {"a": "b"}},
                "template": {"ports": {"http": 8080}, "serviceAccount": "vm", "network": "n1"},
            },
        )
    )


def test_sidecar() -> None:
    has(body("Sidecar", {}), "spec", "sidecar: empty configuration provided")
    has(
        body("Sidecar", {"egress": [{"hosts": ["foo.com"]}]}),
        "spec.egress[0].hosts[0]",
        "host must be of form namespace/dnsName",
    )
    ok(body("Sidecar", {"egress": [{"hosts": ["./*", "istio-system/*"]}]}))
    ok(body("Sidecar", {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}))
    ok(
        body(
            "Sidecar",
            {
                "workloadSelector": {"labels": {"app": "r"}},
                "ingress": [
                    {
                        "port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                        "defaultEndpoint": "127.0.0.1:8080",
                    }
                ],
            },
        )
    )
    has(
        body(
            "Sidecar",
            {
                "ingress": [
                    {
                        "port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                        "defaultEndpoint": "10.0.0.1:80",
                    }
                ]
            },
        ),
        "spec.ingress[0].defaultEndpoint",
        "sidecar: defaultEndpoint must be of form",
    )


def ef(
    patch: dict[str, Any], apply_to: str = "HTTP_FILTER", match: dict[str, Any] | None = None
) -> dict[str, Any]:
    cp: dict[str, Any] = {"applyTo": apply_to, "patch": patch}
    if match is not None:
        cp["match"] = match
    return body("EnvoyFilter", {"configPatches": [cp]})


def test_envoy_filter() -> None:
    has(
        ef({"operation": "INSERT_BEFORE"}),
        "spec.configPatches[0].patch.value",
        "missing patch value for non-remove operation",
    )
    has(
        ef({"value": {"name": "x"}}),
        "spec.configPatches[0].patch.operation",
        "missing patch operation",
    )
    has(
        ef({"operation": "MERGE", "value": {}}, "CLUSTER", {"listener": {"portNumber": 80}}),
        "spec.configPatches[0].match",
        "applyTo for cluster class objects cannot have non cluster match",
    )
    ok(
        ef(
            {"operation": "REMOVE"},
            "HTTP_FILTER",
            {
                "context": "SIDECAR_OUTBOUND",
                "listener": {
                    "filterChain": {
                        "filter": {
                            "name": "envoy.filters.network.http_connection_manager",
                            "subFilter": {"name": "envoy.filters.http.cors"},
                        }
                    }
                },
            },
        )
    )
    ok(
        ef(
            {"operation": "MERGE", "value": {"connect_timeout": "1s"}},
            "CLUSTER",
            {"cluster": {"service": "reviews.default.svc.cluster.local"}},
        )
    )


def test_telemetry() -> None:
    has(
        body("Telemetry", {"tracing": [{"randomSamplingPercentage": 120}]}),
        "spec.tracing[0].randomSamplingPercentage",
        "must be in range [0.0, 100.0]",
    )
    has(
        body("Telemetry", {"accessLogging": [{"providers": [{"name": ""}]}]}),
        "spec.accessLogging[0].providers[0].name",
        "providers.name may not be empty",
    )
    has(
        body(
            "Telemetry",
            {
                "metrics": [
                    {"overrides": [{"tagOverrides": {"x": {"operation": "REMOVE", "value": "v"}}}]}
                ]
            },
        ),
        "spec.metrics[0].overrides[0].tagOverrides[x].value",
        "tagOverrides.value may only be set when operation is UPSERT",
    )
    ok(
        body(
            "Telemetry",
            {
                "selector": {"matchLabels": {"app": "r"}},
                "tracing": [
                    {
                        "providers": [{"name": "zipkin"}],
                        "randomSamplingPercentage": 10.5,
                        "customTags": {"env": {"literal": {"value": "prod"}}},
                    }
                ],
                "metrics": [
                    {
                        "providers": [{"name": "prometheus"}],
                        "overrides": [
                            {
                                "match": {"metric": "ALL_METRICS", "mode": "CLIENT_AND_SERVER"},
                                "disabled": True,
                            }
                        ],
                    }
                ],
                "accessLogging": [
                    {
                        "providers": [{"name": "envoy"}],
                        "filter": {"expression": "response.code >= 400"},
                    }
                ],
            },
        )
    )


def test_sidecar_fields_pilotfish_does_not_enforce_are_refused_or_warned_by_path() -> None:
    def run(spec: dict[str, object]) -> tuple[list[str], list[str]]:
        b = body("Sidecar", spec)
        errors = [path for path, _ in problems(b)]
        return errors, ([w.path for w in validate(b).warnings] if not errors else [])

    def ingress_tls(protocol: str, **tls: object) -> list[str]:
        port = {"number": 9080, "protocol": protocol, "name": "external"}
        ingress = {"port": port, "defaultEndpoint": "127.0.0.1:8080", "tls": tls}
        return run({"ingress": [ingress]})[0]

    simple = {"serverCertificate": "/c", "privateKey": "/k"}
    assert ingress_tls("HTTPS", mode="SIMPLE", **simple) == []
    assert ingress_tls("TLS", mode="MUTUAL", caCertificates="/ca", **simple) == []
    # Istio's checks: TLS settings on an HTTPS/TLS port only; terminating modes only.
    assert ingress_tls("HTTP", mode="SIMPLE", **simple) == ["spec.ingress[0].port.protocol"]
    assert ingress_tls("HTTPS", mode="ISTIO_MUTUAL") == ["spec.ingress[0].tls.mode"]
    assert ingress_tls("HTTPS", **simple) == ["spec.ingress[0].tls.mode"]  # PASSTHROUGH
    assert ingress_tls("HTTPS", mode="SIMPLE", credentialNames=["a"]) == [
        "spec.ingress[0].tls.credentialNames"
    ]
    assert ingress_tls("HTTPS", mode="MUTUAL", **simple) == ["spec.ingress[0].tls.caCertificates"]
    tcp_bound = {
        "port": {"number": 3306, "protocol": "TCP", "name": "tcp"},
        "captureMode": "NONE",
        "hosts": ["./*"],
    }
    assert run({"egress": [tcp_bound]})[0] == []
    tls_bound = {**tcp_bound, "port": {"number": 443, "protocol": "TLS", "name": "tls"}}
    assert run({"egress": [tls_bound]})[0] == []
    udp_bound = {**tcp_bound, "port": {"number": 53, "protocol": "UDP", "name": "udp"}}
    assert run({"egress": [udp_bound]})[0] == ["spec.egress[0].port.protocol"]
    errors, warnings = run(
        {
            "egress": [{"bind": "127.0.0.2", "hosts": ["./*"]}],
            "outboundTrafficPolicy": {
                "mode": "ALLOW_ANY",
                "egressProxy": {"host": "egress.example.com", "port": {"number": 80}},
            },
            "inboundConnectionPool": {"tcp": {"maxConnections": 10, "idleTimeout": "1h"}},
        }
    )
    assert errors == []
    assert warnings == [
        "spec.inboundConnectionPool.tcp.idleTimeout",
        "spec.egress[0].bind",
    ]
    # Istio's warning: HTTP settings of a pool on a port that does not speak HTTP.
    tcp_port = {"number": 9000, "protocol": "TCP", "name": "tcp"}
    pool = {"http": {"http1MaxPendingRequests": 1}}
    _, warnings = run({"ingress": [{"port": tcp_port, "connectionPool": pool}]})
    assert warnings == ["spec.ingress[0].connectionPool.http"]


def _warnings(b: dict[str, Any]) -> list[str]:
    return [f"{w.path}: {w.reason}" for w in ok(b).warnings]


def test_service_entry_fields_not_enforced_are_warned_by_field() -> None:
    # subjectAltNames is enforced (mesh mTLS to the entry's endpoints verifies them).
    assert _warnings(se(resolution="DNS", subjectAltNames=["spiffe://x/ns/a/sa/b"])) == []
    network = se(resolution="STATIC", endpoints=[{"address": "10.0.0.1", "network": "n2"}])
    assert any(w.startswith("spec.endpoints[0].network: not supported") for w in _warnings(network))
    # TLS ports of a wildcard host are matched by SNI, HTTP ports by Host: nothing to warn.
    assert _warnings(se(hosts=["*.wikipedia.org"], resolution="NONE")) == []
    http = [{"number": 80, "name": "http", "protocol": "HTTP"}]
    assert _warnings(se(hosts=["*.wikipedia.org"], resolution="NONE", ports=http)) == []
    assert _warnings(se(resolution="DNS")) == []


def test_service_entry_unix_endpoints_are_refused() -> None:
    has(
        se(resolution="STATIC", ports=[{"number": 80, "name": "http", "protocol": "HTTP"}],
           endpoints=[{"address": "unix:///var/run/app.sock"}]),
        "spec.endpoints[0].address",
        "not supported yet: unix domain socket endpoints",
    )  # fmt: skip
