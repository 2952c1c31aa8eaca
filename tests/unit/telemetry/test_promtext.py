"""Parsing, renaming, merging and rendering Prometheus text (the agent's merged metrics)."""

from __future__ import annotations

import pytest

from pilotfish.telemetry.promtext import merge, parse, rename_prefix, render

ENVOY = """\
# TYPE envoy_istio_requests_total counter
envoy_istio_requests_total{reporter="source",response_code="200"} 3
# TYPE envoy_cluster_upstream_rq_retry counter
envoy_cluster_upstream_rq_retry{envoy_cluster_name="xds-grpc"} 0
# TYPE envoy_cluster_upstream_cx_active gauge
envoy_cluster_upstream_cx_active{envoy_cluster_name="xds-grpc"} 1
# TYPE envoy_istio_request_duration_milliseconds histogram
envoy_istio_request_duration_milliseconds_bucket{reporter="source",le="0.5"} 0
envoy_istio_request_duration_milliseconds_bucket{reporter="source",le="+Inf"} 3
envoy_istio_request_duration_milliseconds_sum{reporter="source"} 12.5
envoy_istio_request_duration_milliseconds_count{reporter="source"} 3
"""


def names(text: str) -> list[str]:
    return [ln.split("{")[0].split(" ")[0] for ln in text.splitlines() if not ln.startswith("#")]


def test_round_trip_keeps_names_types_and_values() -> None:
    out = render(parse(ENVOY))
    assert "# TYPE envoy_istio_requests_total counter" in out
    assert "# TYPE envoy_cluster_upstream_rq_retry counter" in out  # a counter without _total
    assert 'envoy_cluster_upstream_rq_retry{envoy_cluster_name="xds-grpc"} 0' in out
    assert 'envoy_istio_request_duration_milliseconds_sum{reporter="source"} 12.5' in out
    assert 'envoy_istio_request_duration_milliseconds_bucket{reporter="source",le="+Inf"} 3' in out
    assert parse(out) == parse(ENVOY)


def test_envoy_istio_series_get_istio_names() -> None:
    out = render(rename_prefix(parse(ENVOY)))
    assert "# TYPE istio_requests_total counter" in out
    assert 'istio_requests_total{reporter="source",response_code="200"} 3' in out
    assert "# TYPE istio_request_duration_milliseconds histogram" in out
    assert "istio_request_duration_milliseconds_bucket" in names(out)
    assert "istio_request_duration_milliseconds_count" in names(out)
    assert not any(n.startswith("envoy_istio_") for n in names(out))
    # Envoy's own series keep their names.
    assert "envoy_cluster_upstream_cx_active" in names(out)


def test_merge_keeps_each_family_once_first_source_wins() -> None:
    envoy = rename_prefix(parse(ENVOY))
    agent = parse('# TYPE istio_build gauge\nistio_build{component="proxy",tag="1"} 1\n')
    app = parse(
        "# HELP istio_requests_total forged\n# TYPE istio_requests_total counter\n"
        "istio_requests_total 99\n"
        "# HELP app_orders_total Orders.\n# TYPE app_orders_total counter\n"
        'app_orders_total{kind="book"} 7\n'
        "plain_untyped 2.5\n"
    )
    out = render(merge(envoy, agent, app))
    assert out.count("# TYPE istio_requests_total") == 1
    assert "istio_requests_total 99" not in out
    assert 'istio_build{component="proxy",tag="1"} 1' in out
    assert 'app_orders_total{kind="book"} 7' in out
    assert "# HELP app_orders_total Orders." in out
    assert "# TYPE plain_untyped untyped" in out
    assert "plain_untyped 2.5" in out
    parse(out)  # valid exposition


def test_escapes_survive() -> None:
    text = '# HELP odd a \\\\ b\\nc\n# TYPE odd gauge\nodd{v="q\\"\\\\\\n"} NaN\n'
    out = render(parse(text))
    assert "# HELP odd a \\\\ b\\nc" in out
    assert 'odd{v="q\\"\\\\\\n"} NaN' in out
    assert dict(parse(out)[0].samples[0].labels) == {"v": 'q"\\\n'}


def test_large_and_special_numbers() -> None:
    out = render(parse('# TYPE g gauge\ng{a="1"} 1.5e20\ng{a="2"} -Inf\ng{a="3"} 0.25\n'))
    assert 'g{a="1"} 1.5e+20' in out
    assert 'g{a="2"} -Inf' in out
    assert 'g{a="3"} 0.25' in out


def test_bad_text_raises_value_error() -> None:
    with pytest.raises(ValueError):
        parse("this is { not prometheus\n")


def test_empty() -> None:
    assert render(merge(parse(""), [])) == ""


def test_timestamps_comments_and_series_without_type() -> None:
    text = (
        "# a free comment\n"
        "# TYPE up gauge\n"
        "up 1 1700000000000\n"
        'other_series{a="b"} 2\n'
        'other_series{a="c"} 3\n'
        "# HELP h_seconds Time.\n# TYPE h_seconds summary\n"
        'h_seconds{quantile="0.5"} 0.1\nh_seconds_sum 1\nh_seconds_count 4\n'
    )
    fams = {f.name: f for f in parse(text)}
    assert fams["up"].samples[0].timestamp == 1700000000000
    assert fams["other_series"].type == "untyped"
    assert len(fams["other_series"].samples) == 2
    assert [s.name for s in fams["h_seconds"].samples] == [
        "h_seconds",
        "h_seconds_sum",
        "h_seconds_count",
    ]
    out = render(parse(text))
    assert "up 1 1700000000000" in out
    assert parse(out) == parse(text)


def test_istio_series_say_unknown_where_envoy_left_a_label_empty() -> None:
    from pilotfish.telemetry.promtext import parse, rename_prefix

    text = (
        "# TYPE envoy_istio_requests_total counter\n"
        'envoy_istio_requests_total{source_principal="",grpc_response_status="",'
        'response_code="200"} 3\n'
        "# TYPE envoy_cluster_upstream_rq counter\n"
        'envoy_cluster_upstream_rq{envoy_cluster_name=""} 1\n'
    )
    istio, other = rename_prefix(parse(text))
    (sample,) = istio.samples
    assert sample.name == "istio_requests_total"
    assert dict(sample.labels) == {
        "source_principal": "unknown", "grpc_response_status": "", "response_code": "200"
    }  # fmt: skip
    assert dict(other.samples[0].labels) == {"envoy_cluster_name": ""}


def test_the_agent_adds_the_proxys_own_labels_to_its_side() -> None:
    text = (
        "# TYPE envoy_istio_requests_total counter\n"
        'envoy_istio_requests_total{reporter="source",destination_workload="b",'
        'source_version="x",source_app="pilotfish-label-removed"} 3\n'
        'envoy_istio_requests_total{reporter="destination",source_workload="a"} 2\n'
        "# TYPE envoy_server_live gauge\n"
        'envoy_server_live{reporter="source"} 1\n'
    )
    own = {"workload": "me", "namespace": "ns", "app": "mine", "version": "v1"}
    (requests, live) = rename_prefix(parse(text), own=own)
    source, destination = (dict(s.labels) for s in requests.samples)
    assert source["source_workload"] == "me" and source["source_workload_namespace"] == "ns"
    assert source["source_version"] == "x"  # written by Envoy (a Telemetry override): kept
    assert "source_app" not in source  # removed by a Telemetry override
    assert source["destination_workload"] == "b"
    assert destination["destination_workload"] == "me" and destination["source_workload"] == "a"
    assert destination["destination_app"] == "mine"
    # Envoy's own stats are not Istio's standard metrics: untouched.
    assert dict(live.samples[0].labels) == {"reporter": "source"}


def test_packed_labels_are_served_as_istios_labels() -> None:
    name = (
        "pilotfish_labels__reporter__source_peer__source_workload_namespace__destination_service"
        "__response_code__connection_security_policy__source_principal"
    )
    text = (
        "# TYPE envoy_istio_requests_total counter\n"
        f'envoy_istio_requests_total{{{name}="destination|a-v1;a;v1;a;v1;K|ns|s.ns.svc|200'
        f'|mutual_tls|spiffe://td/ns/ns/sa/a",response_code="201"}} 3\n'
        f'envoy_istio_requests_total{{{name}="destination||ns|s.ns.svc|200|none|"}} 1\n'
        f'envoy_istio_requests_total{{{name}="destination|x;y|ns|s|200|none|",'
        'source_app="pilotfish-label-removed"} 1\n'
    )
    (requests,) = rename_prefix(parse(text), own={"workload": "me"})
    first, plain, bad = (dict(s.labels) for s in requests.samples)
    assert first["source_workload"] == "a-v1" and first["source_app"] == "a"
    assert first["source_cluster"] == "K" and first["source_workload_namespace"] == "ns"
    assert first["source_principal"] == "spiffe://td/ns/ns/sa/a"
    assert first["response_code"] == "201"  # a tag of its own (an override) wins
    assert first["destination_workload"] == "me"  # the agent's own labels still added
    assert not any(k.startswith("pilotfish_labels") for k in first)
    # Envoy found no peer header: the caller's labels are unknown, as Istio writes them.
    assert plain["source_workload"] == plain["source_version"] == "unknown"
    assert plain["source_principal"] == "unknown"
    # A group that does not split into its labels is not guessed at; a removed label goes.
    assert bad["source_workload"] == "unknown" and "source_app" not in bad
