"""Istio's metrics, access logs, peer headers and tracing as Envoy config (protos)."""

from __future__ import annotations

from envoy.config.trace.v3 import zipkin_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.stats.v3 import stats_pb2
from envoy.extensions.filters.http.header_to_metadata.v3 import header_to_metadata_pb2

from pilotfish.api.meshconfig import effective_mesh_config
from pilotfish.api.peer import (
    OWN_LABEL_REMOVED,
    PACKED_GROUPS,
    PACKED_TAG,
    PEER_ENV,
    PEER_ENV_PACKED,
    PEER_FIELDS,
    own_label,
    peer_environment,
    unpack_labels,
    workload_values,
)
from pilotfish.model.telemetry import AccessLogSpec, MetricOverride, TracingSpec
from pilotfish.translate import telemetry as T

SERVICE = ("reviews.default.svc.cluster.local", "reviews", "default")


def stats(log: object) -> stats_pb2.Config:
    config = stats_pb2.Config()
    log.typed_config.Unpack(config)  # type: ignore[attr-defined]
    return config


def labels(stat: stats_pb2.Config.Stat) -> dict[str, str]:
    """Istio's labels of ``stat`` -> the format each is read from (a packed group's labels:
    the group's one lookup); a tag of its own wins over the packed one, as in the agent."""
    out: dict[str, str] = {}
    plain: dict[str, str] = {}
    for t in stat.tags:
        if not t.name.startswith(PACKED_TAG + "__"):
            plain[t.name] = t.value_format
            continue
        tokens = t.name.split("__")[1:]
        formats = t.value_format.split("|", len(tokens) - 1)
        assert len(formats) == len(tokens), t
        for token, fmt in zip(tokens, formats, strict=True):
            for label in PACKED_GROUPS.get(token, (token,)):
                out[label] = fmt
    return {**out, **plain}


def tag_names(stat: stats_pb2.Config.Stat) -> list[str]:
    return list(labels(stat))


def test_both_reporters_carry_istios_labels() -> None:
    client = stats(T.http_metrics_log(T.client_http_tags(), []))
    assert [c.stat.name for c in client.counters] == ["requests_total"]
    assert [h.stat.name for h in client.histograms] == [
        "request_duration_milliseconds", "request_bytes", "response_bytes"
    ]  # fmt: skip
    names = tag_names(client.counters[0].stat)
    # All in one packed tag, the peer's certificate URI (which may hold anything) last.
    (packed,) = client.counters[0].stat.tags
    assert packed.value_format.endswith("|%UPSTREAM_PEER_URI_SAN%")
    assert packed.name.endswith("__destination_principal")
    wanted = ["destination_workload", "destination_service", "destination_principal",
              "response_code", "response_flags", "request_protocol", "grpc_response_status",
              "destination_cluster"]  # fmt: skip
    assert set(wanted) <= set(names)
    # The proxy's own labels are the agent's to add, the same for all its series.
    client_own = {own_label("source", k) for k in PEER_ENV}
    assert not client_own & set(names)
    server = stats(T.http_metrics_log(T.server_http_tags(SERVICE, mtls=True), []))
    tags = labels(server.counters[0].stat)
    assert tags["reporter"] == "destination"
    assert tags["destination_service"] == SERVICE[0]
    assert tags["source_principal"] == "%DOWNSTREAM_PEER_URI_SAN%"
    assert tags["connection_security_policy"] == "mutual_tls"
    # Over mTLS: the caller's namespace from its certificate, its workload from its sidecar.
    verified = "%DYNAMIC_METADATA(pilotfish.peer:verified_namespace)%"
    assert tags["source_workload_namespace"] == verified
    # The caller's labels as its sidecar packed them: one lookup for the six of them.
    assert (
        tags["source_workload"] == tags["source_app"] == "%DYNAMIC_METADATA(pilotfish.peer:labels)%"
    )
    server_own = {own_label("destination", k) for k in PEER_ENV}
    assert not server_own & set(tags)
    # With what the agent adds, both reporters carry the same labels: Istio's.
    assert set(tags) | server_own == set(names) | client_own
    # On plaintext nothing the caller says is trusted.
    plain = stats(T.http_metrics_log(T.server_http_tags(SERVICE, mtls=False), []))
    tags = labels(plain.counters[0].stat)
    assert tags["connection_security_policy"] == "none"
    assert tags["source_workload"] == tags["source_workload_namespace"] == "unknown"
    # No metric evaluates an expression per request.
    for config in (client, server, plain):
        for stat in [*config.counters, *config.histograms]:
            assert not any("%CEL(" in t.value_format for t in stat.stat.tags)


def test_removing_an_own_label_leaves_a_marker_for_the_agent() -> None:
    overrides = [
        MetricOverride("REQUEST_COUNT", "CLIENT", False,
                       (("source_app", "REMOVE", ""), ("source_version", "UPSERT", "'x'"))),
    ]  # fmt: skip
    config = stats(T.http_metrics_log(T.client_http_tags(), overrides))
    counter = labels(config.counters[0].stat)
    assert counter["source_app"] == OWN_LABEL_REMOVED
    assert counter["source_version"] == "%CEL('x')%"
    # Other metrics keep the agent's values.
    histogram = labels(config.histograms[0].stat)
    assert "source_app" not in histogram and "source_version" not in histogram


def test_request_protocol_is_grpc_only_for_grpc_content_types() -> None:
    import re

    pattern = re.compile(T.GRPC_CONTENT_TYPE)
    for content_type, want in [
        ("application/grpc", "grpc"),
        ("application/grpc+proto", "grpc"),
        ("application/grpc; charset=utf-8", "grpc"),
        ("application/grpc-web", ""),
        ("application/json", ""),
        ("text/plain", ""),
    ]:
        assert pattern.sub(r"\1", content_type) == want, content_type
    rules = T.request_metadata_filter().request_rules
    assert [r.header for r in rules] == ["content-type", "content-type"]
    assert rules[0].on_header_present.value == rules[0].on_header_missing.value == "http"


def test_tag_overrides_upsert_and_remove_and_disabled_metrics() -> None:
    overrides = [
        MetricOverride("REQUEST_COUNT", "CLIENT", False,
                       (("response_code", "UPSERT", "string(response.code)"),
                        ("request_protocol", "REMOVE", ""),
                        ("host", "UPSERT", "request.host"))),
        MetricOverride("REQUEST_SIZE", "CLIENT", True),
    ]  # fmt: skip
    config = stats(T.http_metrics_log(T.client_http_tags(), overrides))
    counter = labels(config.counters[0].stat)
    assert counter["response_code"] == "%CEL(response.code)%"  # Envoy stringifies
    assert counter["host"] == "%CEL(request.host)%"
    assert "request_protocol" not in counter
    assert [h.stat.name for h in config.histograms] == [
        "request_duration_milliseconds", "response_bytes"
    ]  # fmt: skip
    duration = labels(config.histograms[0].stat)
    assert "request_protocol" in duration and "host" not in duration


def test_tcp_metrics_count_opens_closes_and_bytes() -> None:
    logs = T.tcp_metrics_logs(T.tcp_tags(T.client_http_tags()), [])
    opened, ended = (stats(log) for log in logs)
    assert [c.stat.name for c in opened.counters] == ["tcp_connections_opened_total"]
    assert [c.stat.name for c in ended.counters] == [
        "tcp_connections_closed_total", "tcp_sent_bytes_total", "tcp_received_bytes_total"
    ]  # fmt: skip
    assert ended.counters[1].value_format == "%BYTES_SENT%"
    assert "response_code" not in tag_names(opened.counters[0].stat)
    assert logs[0].filter.log_type_filter.types and logs[1].filter.log_type_filter.types


def test_access_logs_istio_format_json_and_cel_filter() -> None:
    mesh = effective_mesh_config([])
    envoy = mesh.provider("envoy")
    assert envoy is not None
    text = T.access_logs([AccessLogSpec(envoy, "SERVER", "response.code >= 400")], "SERVER")
    assert T.access_logs([AccessLogSpec(envoy, "SERVER")], "CLIENT") == []
    config = file_pb2.FileAccessLog()
    text[0].typed_config.Unpack(config)
    assert config.path == "/dev/stdout"
    assert config.log_format.text_format_source.inline_string.startswith("[%START_TIME%]")
    assert text[0].filter.extension_filter.name == T.CEL_FILTER
    json_log = T.access_logs([AccessLogSpec(envoy, "CLIENT", "", "JSON")], "CLIENT")[0]
    json_log.typed_config.Unpack(config)
    assert config.log_format.json_format.fields["response_code"].string_value == "%RESPONSE_CODE%"


def test_peer_headers_are_replaced_on_the_way_out_and_removed_on_the_way_in() -> None:
    (added,) = T.peer_headers_to_add()
    assert added.header.key == T.PEER_HEADER
    assert added.header.value == f"%ENVIRONMENT({PEER_ENV_PACKED})%"
    assert added.append_action == added.OVERWRITE_IF_EXISTS_OR_ADD
    config: header_to_metadata_pb2.Config = T.peer_metadata_filter()
    (peer,) = [r for r in config.request_rules if r.header == T.PEER_HEADER]
    assert peer.remove and peer.on_header_present.key == "labels"
    # The one-per-value form is removed too, never read.
    stripped = [r for r in config.request_rules if r.header in T.PEER_HEADERS.values()]
    assert all(r.remove for r in stripped) and len(stripped) == len(T.PEER_HEADERS)
    assert all(r.on_header_present.metadata_namespace != T.PEER_METADATA for r in stripped)
    xfcc = next(r for r in config.request_rules if r.header == "x-forwarded-client-cert")
    assert xfcc.on_header_present.key == "verified_namespace"


def test_a_peer_header_that_is_not_a_sidecars_is_dropped_whole() -> None:
    import re

    pattern = re.compile(T.PEER_HEADER_VALUE)
    good = "reviews-v1;reviews;v1;reviews;v1;Kubernetes"
    assert pattern.sub(r"\1", good) == good
    for forged in ("a;b", "a;b;c;d;e;f;g", "a|x;b;c;d;e;f", "a;b;c;d;e;f|reporter"):
        assert pattern.sub(r"\1", forged) == "", forged


def _envoy_formats(tags: list[tuple[str, str]], values: dict[str, str]) -> list[tuple[str, str]]:
    """What Envoy writes for ``tags``: each format replaced by its value in ``values``."""
    out = []
    for name, fmt in tags:
        for operator, value in values.items():
            fmt = fmt.replace(operator, value)
        out.append((name, fmt))
    return out


def test_packed_labels_come_back_as_istios_labels() -> None:
    envoy = {
        "%METADATA(UPSTREAM_HOST:istio:labels)%": "reviews-v1;default;reviews;v1;reviews;v1;K",
        "%METADATA(CLUSTER:istio:service_labels)%": f"{SERVICE[0]};reviews;default",
        "%DYNAMIC_METADATA(pilotfish.request:protocol)%": "http",
        "%RESPONSE_CODE%": "503",
        "%GRPC_STATUS_NUMBER%": "",
        "%RESPONSE_FLAGS%": "UF,URX",
        "%UPSTREAM_PEER_URI_SAN%": "spiffe://td/ns/default/sa/a|b",
    }  # fmt: skip
    (written,) = _envoy_formats(T.pack_tags(T.client_http_tags()), envoy)
    got = dict(unpack_labels(*written) or [])
    assert got["reporter"] == "source" and got["destination_workload"] == "reviews-v1"
    assert got["destination_workload_namespace"] == "default"
    assert got["destination_cluster"] == "K" and got["destination_service_name"] == "reviews"
    assert got["destination_service"] == "reviews.default.svc.cluster.local"
    assert got["response_flags"] == "UF,URX" and got["grpc_response_status"] == ""
    assert got["destination_principal"] == "spiffe://td/ns/default/sa/a|b"
    assert got["connection_security_policy"] == "unknown"
    assert set(got) == {label for label, _ in T.client_http_tags()}
    # No endpoint metadata (a passthrough or no route): those labels are empty (unknown).
    (written,) = _envoy_formats(
        T.pack_tags(T.client_http_tags()), {**envoy, "%METADATA(UPSTREAM_HOST:istio:labels)%": ""}
    )
    got = dict(unpack_labels(*written) or [])
    assert got["destination_workload"] == got["destination_app"] == ""
    assert got["destination_service"] == "reviews.default.svc.cluster.local"


def test_tracing_zipkin_and_opentelemetry() -> None:
    mesh = effective_mesh_config([])
    zipkin, otel = mesh.provider("zipkin"), mesh.provider("opentelemetry")
    assert zipkin is not None and otel is not None
    spec = TracingSpec(zipkin, 100.0, (("env", "literal", "dev", ""),))
    tracing = T.tracing_config(spec, "outbound|9411||zipkin", "zipkin:9411", "reviews.default")
    assert tracing.random_sampling.value == 100.0
    assert tracing.provider.name == T.ZIPKIN_TRACER
    assert tracing.custom_tags[0].literal.value == "dev"
    tracing = T.tracing_config(TracingSpec(otel, 1.0), "c", "tracing:4317", "reviews.default")
    assert tracing.provider.name == T.OTEL_TRACER


def test_generated_sidecar_reports_traces_to_the_collector_and_logs_by_the_mesh_config() -> None:
    from pilotfish.config.addons import zipkin_service_entry
    from pilotfish.translate import LISTENER_TYPE, generate
    from tests.unit.translate.fixtures import (
        BOOKINFO_CORE,
        listener,
        push_for,
        sidecar_node,
        unpack_hcm,
    )

    operator = {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": "demo", "namespace": "istio-system"},
        "spec": {"meshConfig": {"accessLogFile": "/dev/stdout",
                                "defaultConfig": {"tracing": {"sampling": 100}}}},
    }  # fmt: skip
    push = push_for([*BOOKINFO_CORE, zipkin_service_entry("10.244.0.1"), operator])
    res = generate(sidecar_node(app="reviews", ip="10.1.0.12"), push)
    outbound = [
        unpack_hcm(c) for c in listener(res, "virtualOutbound").filter_chains if c.filters
        and c.filters[0].name == "envoy.filters.network.http_connection_manager"
    ]  # fmt: skip
    assert outbound
    hcm = outbound[0]
    assert hcm.tracing.random_sampling.value == 100.0
    zipkin = zipkin_pb2.ZipkinConfig()
    hcm.tracing.provider.typed_config.Unpack(zipkin)
    assert zipkin.collector_cluster == "outbound|9411||zipkin.istio-system.svc.cluster.local"
    assert [a.name for a in hcm.access_log] == [T.STATS_LOGGER, T.FILE_LOGGER]
    inbound = unpack_hcm(listener(res, "virtualInbound").filter_chains[0])
    assert inbound.http_filters[0].name == T.HEADER_TO_METADATA
    assert [a.name for a in inbound.access_log] == [T.STATS_LOGGER, T.FILE_LOGGER]
    # Without the collector's service, no tracer points nowhere.
    res = generate(sidecar_node(app="reviews", ip="10.1.0.12"), push_for([*BOOKINFO_CORE]))
    assert not any(
        unpack_hcm(c).HasField("tracing")
        for c in listener(res, "virtualOutbound").filter_chains
        if c.filters and c.filters[0].name == "envoy.filters.network.http_connection_manager"
    )
    assert LISTENER_TYPE in res


def test_the_verified_namespace_comes_from_the_element_this_proxy_appended() -> None:
    import re

    pattern = re.compile(T.VERIFIED_NAMESPACE)

    def namespace(xfcc: str) -> str | None:
        m = pattern.match(xfcc)
        return m.group(1) if m else None

    own = 'By=spiffe://cluster.local/ns/default/sa/reviews;Hash=ab;Subject="";'
    assert namespace(own + "URI=spiffe://cluster.local/ns/default/sa/productpage") == "default"
    assert namespace(own + "URI=spiffe://td/ns/shop/sa/web;DNS=web.shop") == "shop"
    # A caller's forged element before the one this proxy appends does not count...
    forged = "By=x;URI=spiffe://cluster.local/ns/victim/sa/admin,"
    assert namespace(forged + own + "URI=spiffe://cluster.local/ns/default/sa/p") == "default"
    # ...even when the verified peer has no SPIFFE URI of its own.
    assert namespace(forged + own + "DNS=client.example.com") is None


def test_the_packed_peer_variable_holds_the_per_field_values_joined() -> None:
    values = workload_values("ns", "web-1", {"app": "web", "version": "v;2|x"})
    env = peer_environment(values)
    fields = [env[PEER_ENV[k]] for k in PEER_FIELDS]
    assert env[PEER_ENV_PACKED] == ";".join(fields)
    assert env[PEER_ENV_PACKED].split(";")[1:3] == ["web", "v_2_x"]
