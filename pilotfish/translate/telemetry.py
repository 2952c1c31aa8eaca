"""Istio's standard metrics, access logs and the peer headers, as stock Envoy config.

**Metrics** come from Envoy's stats access logger (``envoy.access_loggers.stats``), which
counts every request (or TCP connection) into ``istio.*`` stats with Istio's labels; Envoy
exports them as ``envoy_istio_*`` and the agent serves them as ``istio_*`` on
``:15020/stats/prometheus``. The labels:

- the proxy's own workload labels (``source_*`` on the client, ``destination_*`` on the
  server) are not in Envoy's config: they are the same for every series a proxy reports, so
  its agent adds them when it serves ``/stats/prometheus``
  (:func:`pilotfish.telemetry.promtext.with_own_labels`). That spares Envoy eight label values
  per metric per request and keeps the config the same for every proxy that sees the same
  services (the peer headers a client sends read the same values from Envoy's environment,
  ``%ENVIRONMENT(PILOTFISH_*)%``, see :data:`PEER_ENV`);
- on the client, the destination workload from the endpoint's metadata (EDS,
  ``filter_metadata.istio``), the destination service from the cluster's metadata (CDS), the
  destination principal from the upstream certificate;
- on the server, the source principal from the peer certificate; on a mutual-TLS chain the
  caller's namespace from its verified certificate (the peer URI in the
  ``x-forwarded-client-cert`` element this proxy appends) and its workload, app and version
  from the ``x-pilotfish-peer`` header its sidecar adds, so a caller can at most name a
  workload of its own namespace; on a plaintext chain ``unknown``. The header (and the older
  one-per-value ``x-pilotfish-peer-*`` form) is removed at the inbound edge before the app
  sees it.

Nothing in a metric is computed per request by an expression: what differs per chain (the
security policy, whether the caller can be trusted) is fixed in that chain's config, and what
differs per request is read from dynamic metadata the edge filter (``header_to_metadata``)
stores once: the peer's labels, the verified namespace and ``request_protocol``. Expressions
appear only where a Telemetry ``tagOverrides`` writes one.

Envoy formats every label of every metric once per request, and what costs is looking the
values up; so each metric's labels travel packed in one Envoy tag (:func:`pack_tags`), the
destination workload's seven values in one endpoint metadata value, the destination service's
three in one cluster metadata value and the caller's six in one peer header, and the agent
unpacks them into Istio's labels (:func:`pilotfish.api.peer.unpack_labels`). Prometheus sees
Istio's series either way.

Values Envoy cannot fill are written empty; the agent reports them as Istio's ``unknown``.

**Access logs** are Envoy file access logs in Istio's default text format (or the mesh's
``accessLogFormat``, or JSON with ``accessLogEncoding: JSON``), to the proxy's stdout by
default, with the Telemetry ``filter`` as a CEL access-log filter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.accesslog.v3 import accesslog_pb2 as al
from envoy.config.core.v3 import base_pb2
from envoy.config.core.v3 import substitution_format_string_pb2 as sfs
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2, zipkin_pb2
from envoy.data.accesslog.v3 import accesslog_pb2 as al_data
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.access_loggers.stats.v3 import stats_pb2
from envoy.extensions.filters.http.grpc_stats.v3 import config_pb2 as grpc_stats_pb2
from envoy.extensions.filters.http.header_to_metadata.v3 import header_to_metadata_pb2 as h2m
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import struct_pb2

from pilotfish.api.meshconfig import DEFAULT_ACCESS_LOG_FORMAT
from pilotfish.api.peer import (
    ENDPOINT_FIELDS,
    FIELD_SEPARATOR,
    OWN_LABEL_REMOVED,
    PACK_SEPARATOR,
    PACKED_GROUPS,
    PACKED_TAG,
    PEER_ENV,
    PEER_ENV_PACKED,
    PEER_FIELDS,
    own_label,
)
from pilotfish.model.telemetry import AccessLogSpec, MetricOverride, TracingSpec
from pilotfish.translate.common import pack

__all__ = [
    "PEER_HEADER",
    "PEER_HEADERS",
    "HcmTelemetry",
    "access_logs",
    "grpc_message_filters",
    "http_metrics_log",
    "pack_tags",
    "peer_headers_to_add",
    "peer_metadata_filter",
    "request_metadata_filter",
    "server_tcp_tags",
    "tcp_metrics_logs",
    "tracing_config",
]

STATS_LOGGER = "envoy.access_loggers.stats"
FILE_LOGGER = "envoy.access_loggers.file"
CEL_FILTER = "envoy.access_loggers.extension_filters.cel"
HEADER_TO_METADATA = "envoy.filters.http.header_to_metadata"
PEER_METADATA = "pilotfish.peer"
#: Where the edge puts the one-per-value peer headers it removes (read by nothing).
STRIPPED_METADATA = "pilotfish.stripped"

#: The header a client sidecar adds about its workload (the server's source labels): its
#: values of :data:`~pilotfish.api.peer.PEER_FIELDS`, joined by ``;``.
PEER_HEADER = "x-pilotfish-peer"
#: Headers the server's edge removes besides: the one-per-value form of the peer header.
PEER_HEADERS = {
    key: f"x-pilotfish-peer-{key.replace('_', '-')}"
    for key in ("workload", "namespace", "app", "version", "canonical_service",
                "canonical_revision", "cluster")
}  # fmt: skip

#: Telemetry API metric names -> the stat each one is.
METRIC_NAMES = {
    "REQUEST_COUNT": "requests_total",
    "REQUEST_DURATION": "request_duration_milliseconds",
    "REQUEST_SIZE": "request_bytes",
    "RESPONSE_SIZE": "response_bytes",
    "TCP_OPENED_CONNECTIONS": "tcp_connections_opened_total",
    "TCP_CLOSED_CONNECTIONS": "tcp_connections_closed_total",
    "TCP_SENT_BYTES": "tcp_sent_bytes_total",
    "TCP_RECEIVED_BYTES": "tcp_received_bytes_total",
    "GRPC_REQUEST_MESSAGES": "request_messages_total",
    "GRPC_RESPONSE_MESSAGES": "response_messages_total",
}


#: The caller's namespace as its verified certificate says it, from the ``x-forwarded-client-cert``
#: this proxy sets on mutual-TLS connections: only the last element (the one this proxy appends
#: for the peer it verified) counts, whatever the caller put before it.
VERIFIED_NAMESPACE = r"^(?:.*,)?(?:[^,]*;)?URI=spiffe://[^/;,]+/ns/([^/;,|]+)/sa/[^;,]*(?:;[^,]*)?$"

#: A peer header as a sidecar writes it (six fields, no separator inside one); anything else
#: rewrites to empty, which the edge filter does not store (the caller's labels are unknown).
PEER_HEADER_VALUE = rf"^(?:((?:[^;|]*;){{{len(PEER_FIELDS) - 1}}}[^;|]*)|.*)$"


def _peer(key: str) -> str:
    """What the caller's sidecar says about its workload (``key``), as the peer edge filter
    stored it; only read on mutual-TLS chains (see :func:`server_http_tags`)."""
    return f"%DYNAMIC_METADATA({PEER_METADATA}:{key})%"


def tag_value(expression: str) -> str:
    """A Telemetry tag value (an Istio CEL expression) as an Envoy formatter. Envoy turns the
    result into a string itself, so Istio's ``string(...)`` wrapper (which Envoy's CEL does not
    provide) is unwrapped. Pure."""
    e = expression.strip()
    if e.startswith("string(") and e.endswith(")") and e.count("(") == 1:
        e = e[len("string(") : -1]
    return f"%CEL({e})%"


#: Where the edge filters put what a request is (``grpc`` or ``http``, Istio's
#: ``request_protocol``), so that no metric evaluates an expression per request.
REQUEST_METADATA = "pilotfish.request"
REQUEST_PROTOCOL = f"%DYNAMIC_METADATA({REQUEST_METADATA}:protocol)%"

#: gRPC as Envoy and Istio tell it: ``application/grpc``, ``application/grpc+proto``,
#: ``application/grpc;...`` (gRPC-Web is not gRPC). Everything else rewrites to empty, which
#: the filter does not store, so the ``http`` stored by the rule before it stays.
GRPC_CONTENT_TYPE = r"^(?:application/(grpc)(?:[+;].*)?|.*)$"


def client_http_tags() -> list[tuple[str, str]]:
    """``reporter=source`` labels of an HTTP request, in Istio's order, less the proxy's own
    (``source_*``), which the agent adds (:func:`pilotfish.telemetry.promtext.with_own_labels`)."""
    return [
        ("reporter", "source"),
        ("destination_workload", "%METADATA(UPSTREAM_HOST:istio:workload)%"),
        ("destination_workload_namespace", "%METADATA(UPSTREAM_HOST:istio:namespace)%"),
        ("destination_principal", "%UPSTREAM_PEER_URI_SAN%"),
        ("destination_app", "%METADATA(UPSTREAM_HOST:istio:app)%"),
        ("destination_version", "%METADATA(UPSTREAM_HOST:istio:version)%"),
        ("destination_service", "%METADATA(CLUSTER:istio:service)%"),
        ("destination_service_name", "%METADATA(CLUSTER:istio:name)%"),
        ("destination_service_namespace", "%METADATA(CLUSTER:istio:namespace)%"),
        ("destination_canonical_service", "%METADATA(UPSTREAM_HOST:istio:canonical_service)%"),
        ("destination_canonical_revision", "%METADATA(UPSTREAM_HOST:istio:canonical_revision)%"),
        ("destination_cluster", "%METADATA(UPSTREAM_HOST:istio:cluster)%"),
        ("request_protocol", REQUEST_PROTOCOL),
        ("response_code", "%RESPONSE_CODE%"),
        ("grpc_response_status", "%GRPC_STATUS_NUMBER%"),
        ("response_flags", "%RESPONSE_FLAGS%"),
        ("connection_security_policy", "unknown"),
    ]


def server_http_tags(service: tuple[str, str, str], mtls: bool) -> list[tuple[str, str]]:
    """``reporter=destination`` labels; ``service``: (FQDN, name, namespace) served here.

    Each inbound filter chain has its own connection manager, so what depends on the chain is
    fixed in its config rather than computed per request: over mutual TLS (``mtls``) the
    caller's namespace is the one of its verified certificate (from the
    ``x-forwarded-client-cert`` element this proxy appends) and its workload, app and version
    what its sidecar sent (so a caller can name only a workload of its own namespace), and
    ``connection_security_policy`` is ``mutual_tls``; on a plaintext chain nothing about the
    caller can be trusted, so those labels are ``unknown`` and the policy ``none``.
    """
    host, name, namespace = service

    def source(key: str) -> str:
        if not mtls:
            return "unknown"
        return _peer("verified_namespace" if key == "namespace" else key)

    return [
        ("reporter", "destination"),
        ("source_workload", source("workload")),
        ("source_workload_namespace", source("namespace")),
        ("source_principal", "%DOWNSTREAM_PEER_URI_SAN%"),
        ("source_app", source("app")),
        ("source_version", source("version")),
        ("source_canonical_service", source("canonical_service")),
        ("source_canonical_revision", source("canonical_revision")),
        ("source_cluster", source("cluster")),
        ("destination_service", host),
        ("destination_service_name", name),
        ("destination_service_namespace", namespace),
        ("request_protocol", REQUEST_PROTOCOL),
        ("response_code", "%RESPONSE_CODE%"),
        ("grpc_response_status", "%GRPC_STATUS_NUMBER%"),
        ("response_flags", "%RESPONSE_FLAGS%"),
        ("connection_security_policy", "mutual_tls" if mtls else "none"),
    ]


def server_tcp_tags(service: tuple[str, str, str], mtls: bool) -> list[tuple[str, str]]:
    """``reporter=destination`` labels of a TCP connection: no headers, so of the caller only
    its certificate's identity is known."""
    tags = tcp_tags(server_http_tags(service, mtls=False))
    policy = "mutual_tls" if mtls else "none"
    return [(k, policy if k == "connection_security_policy" else v) for k, v in tags]


def _apply_overrides(
    stat: str, tags: list[tuple[str, str]], overrides: Sequence[MetricOverride]
) -> list[tuple[str, str]] | None:
    """The stat's tags after Telemetry overrides (``None``: the metric is disabled). Removing
    one of the proxy's own labels, which the agent adds, leaves a marker for it to drop."""
    out = dict(tags)
    order = [t for t, _ in tags]
    reporter = out.get("reporter", "")
    own = {own_label(reporter, key) for key in PEER_ENV}
    own |= {label for labels in PACKED_GROUPS.values() for label in labels}
    for o in overrides:
        if o.metric is not None and METRIC_NAMES.get(o.metric, o.metric) != stat:
            continue
        if o.disabled and not o.tags:
            return None
        for tag, op, value in o.tags:
            if op == "REMOVE" and tag in own:
                if tag not in out:
                    order.append(tag)
                out[tag] = OWN_LABEL_REMOVED
            elif op == "REMOVE":
                out.pop(tag, None)
            else:
                if tag not in out:
                    order.append(tag)
                out[tag] = tag_value(value)
    return [(t, out[t]) for t in order if t in out]


#: Group token -> (its labels' formats as the tag lists above write them, the one lookup that
#: gives all of them packed). See :data:`~pilotfish.api.peer.PACKED_GROUPS`.
GROUP_FORMATS: dict[str, tuple[dict[str, str], str]] = {
    "destination_peer": (
        {
            label: f"%METADATA(UPSTREAM_HOST:istio:{key})%"
            for label, key in zip(PACKED_GROUPS["destination_peer"], ENDPOINT_FIELDS, strict=True)
        },
        "%METADATA(UPSTREAM_HOST:istio:labels)%",
    ),
    "destination_svc": (
        {
            label: f"%METADATA(CLUSTER:istio:{key})%"
            for label, key in zip(
                PACKED_GROUPS["destination_svc"], ("service", "name", "namespace"), strict=True
            )
        },
        "%METADATA(CLUSTER:istio:service_labels)%",
    ),
    "source_peer": (
        {
            label: _peer(key)
            for label, key in zip(PACKED_GROUPS["source_peer"], PEER_FIELDS, strict=True)
        },
        _peer("labels"),
    ),
}
#: Formats whose values never contain the pack separator (numbers, Envoy's flags, the values
#: the edge filters store).
_PACKABLE = frozenset(
    {
        "%RESPONSE_CODE%",
        "%GRPC_STATUS_NUMBER%",
        "%RESPONSE_FLAGS%",
        REQUEST_PROTOCOL,
        _peer("verified_namespace"),
    }
)
#: A peer certificate's URI may contain anything: packed last, where it is split off whole.
_LAST = frozenset({"%UPSTREAM_PEER_URI_SAN%", "%DOWNSTREAM_PEER_URI_SAN%"})


def pack_tags(tags: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """A metric's tags as Envoy gets them: the labels whose values are known not to contain
    the pack separator, and one peer URI, in one packed tag (a group's labels as one metadata
    lookup when its formats are the defaults); the rest (Telemetry overrides, markers) as
    tags of their own, which the agent prefers to the packed values
    (:func:`pilotfish.api.peer.unpack_labels`). Pure."""
    by_label = dict(tags)
    position = {label: i for i, (label, _) in enumerate(tags)}
    packed: list[tuple[int, str, str]] = []
    own: list[tuple[str, str]] = []
    done: set[str] = set()
    for token, (members, group_format) in GROUP_FORMATS.items():
        present = [m for m in members if m in by_label]
        if not any(by_label[m] == members[m] for m in present):
            continue
        packed.append((min(position[m] for m in present), token, group_format))
        for label, default in members.items():
            done.add(label)
            if label not in by_label:
                own.append((label, OWN_LABEL_REMOVED))
            elif by_label[label] != default:
                own.append((label, by_label[label]))
    last: tuple[str, str] | None = None
    for label, fmt in tags:
        if label in done:
            continue
        literal = "%" not in fmt and PACK_SEPARATOR not in fmt and FIELD_SEPARATOR not in fmt
        if literal or fmt in _PACKABLE:
            packed.append((position[label], label, fmt))
        elif fmt in _LAST and last is None:
            last = (label, fmt)
        else:
            own.append((label, fmt))
    packed.sort()
    tokens = [(token, fmt) for _, token, fmt in packed]
    if last is not None:
        tokens.append(last)
    if len(tokens) < 2:
        return [*tokens, *own]
    name = "__".join([PACKED_TAG, *(t for t, _ in tokens)])
    return [(name, PACK_SEPARATOR.join(f for _, f in tokens)), *own]


def _stat(name: str, tags: Sequence[tuple[str, str]]) -> stats_pb2.Config.Stat:
    return stats_pb2.Config.Stat(
        name=name, tags=[stats_pb2.Config.Tag(name=k, value_format=v) for k, v in pack_tags(tags)]
    )


def _stats_log(
    config: stats_pb2.Config, log_filter: al.AccessLogFilter | None = None
) -> al.AccessLog:
    log = al.AccessLog(name=STATS_LOGGER, typed_config=pack(config))
    if log_filter is not None:
        log.filter.CopyFrom(log_filter)
    return log


def http_metrics_log(
    tags: list[tuple[str, str]], overrides: Sequence[MetricOverride], grpc: bool = False
) -> al.AccessLog | None:
    """The stats logger of an HTTP connection manager: Istio's four HTTP metrics, and with
    ``grpc`` its two gRPC message counters (from what :func:`grpc_message_filters` store)."""
    config = stats_pb2.Config(stat_prefix="istio")
    counter = _apply_overrides("requests_total", tags, overrides)
    if counter is not None:
        config.counters.add(stat=_stat("requests_total", counter)).value_fixed.value = 1
    for stat, key in (
        ("request_messages_total", "request_messages"),
        ("response_messages_total", "response_messages"),
    ):
        message_tags = _apply_overrides(stat, tags, overrides) if grpc else None
        if message_tags is not None:
            config.counters.add(
                stat=_stat(stat, message_tags),
                value_format=f"%DYNAMIC_METADATA({GRPC_METADATA}:{key})%",
            )
    for stat, value in (
        ("request_duration_milliseconds", "%DURATION%"),
        ("request_bytes", "%BYTES_RECEIVED%"),
        ("response_bytes", "%BYTES_SENT%"),
    ):
        hist_tags = _apply_overrides(stat, tags, overrides)
        if hist_tags is not None:
            unit = (
                stats_pb2.Config.Histogram.Milliseconds
                if stat.endswith("milliseconds")
                else stats_pb2.Config.Histogram.Bytes
            )
            config.histograms.add(stat=_stat(stat, hist_tags), unit=unit, value_format=value)
    if not config.counters and not config.histograms:
        return None
    return _stats_log(config)


#: Where the gRPC message counts of a request are stored for the metrics.
GRPC_METADATA = "pilotfish.grpc"
GRPC_STATS = "envoy.filters.http.grpc_stats"
LUA = "envoy.filters.http.lua"

#: Envoy's ``grpc_stats`` filter counts the messages of a gRPC stream into its filter state
#: (textual form ``REQUEST,RESPONSE``), which no formatter can split; once the stream has
#: ended (its trailers), this moves the two numbers into dynamic metadata, where the stats
#: logger reads them as counter values. Zero when the request was not gRPC or was answered
#: before reaching the counting filter.
GRPC_MESSAGES_LUA = f"""\
function envoy_on_response(handle)
  handle:trailers()
  local info = handle:streamInfo()
  local counts = info:filterState():get("{GRPC_STATS}")
  local req, resp = string.match(tostring(counts), "^(%d+),(%d+)$")
  local md = info:dynamicMetadata()
  md:set("{GRPC_METADATA}", "request_messages", tonumber(req) or 0)
  md:set("{GRPC_METADATA}", "response_messages", tonumber(resp) or 0)
end
"""


def grpc_message_filters() -> list[tuple[str, Any]]:
    """(name, typed config) of the HTTP filters that count a gRPC stream's messages for
    ``istio_request_messages_total`` / ``istio_response_messages_total``, in their order (the
    Lua filter first, so that on the response path it runs after the counting)."""
    lua = lua_pb2.Lua(default_source_code=base_pb2.DataSource(inline_string=GRPC_MESSAGES_LUA))
    stats = grpc_stats_pb2.FilterConfig(emit_filter_state=True)
    stats.stats_for_all_methods.value = False
    return [(LUA, lua), (GRPC_STATS, stats)]


def _log_type(*types: int) -> al.AccessLogFilter:
    return al.AccessLogFilter(log_type_filter=al.LogTypeFilter(types=list(types)))


def tcp_tags(http_tags: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Istio's TCP metrics carry the HTTP labels less the request ones."""
    drop = {"request_protocol", "response_code", "grpc_response_status"}
    return [(k, v) for k, v in http_tags if k not in drop]


def tcp_metrics_logs(
    tags: list[tuple[str, str]], overrides: Sequence[MetricOverride]
) -> list[al.AccessLog]:
    """``tcp_proxy`` stats loggers: opened on connect, closed and bytes at the end."""
    opened = stats_pb2.Config(stat_prefix="istio")
    open_tags = _apply_overrides("tcp_connections_opened_total", tags, overrides)
    if open_tags is not None:
        opened.counters.add(
            stat=_stat("tcp_connections_opened_total", open_tags)
        ).value_fixed.value = 1
    ended = stats_pb2.Config(stat_prefix="istio")
    for stat, value in (
        ("tcp_connections_closed_total", ""),
        ("tcp_sent_bytes_total", "%BYTES_SENT%"),
        ("tcp_received_bytes_total", "%BYTES_RECEIVED%"),
    ):
        stat_tags = _apply_overrides(stat, tags, overrides)
        if stat_tags is None:
            continue
        end_counter = ended.counters.add(stat=_stat(stat, stat_tags))
        if value:
            end_counter.value_format = value
        else:
            end_counter.value_fixed.value = 1
    T = al_data.AccessLogType
    out = []
    if opened.counters:
        out.append(_stats_log(opened, _log_type(T.TcpUpstreamConnected)))
    if ended.counters:
        out.append(_stats_log(ended, _log_type(T.TcpConnectionEnd)))
    return out


def access_logs(specs: Sequence[AccessLogSpec], mode: str) -> list[al.AccessLog]:
    """File access logs of ``mode`` (``CLIENT``: outbound, ``SERVER``: inbound)."""
    out = []
    for spec in specs:
        file_provider = spec.provider.envoyFileAccessLog
        if spec.mode != mode or file_provider is None:
            continue
        config = file_pb2.FileAccessLog(path=file_provider.path or "/dev/stdout")
        log_format = file_provider.logFormat
        if log_format is not None and log_format.labels:
            fields = struct_pb2.Struct()
            fields.update(json.loads(json.dumps(log_format.labels)))
            config.log_format.CopyFrom(sfs.SubstitutionFormatString(json_format=fields))
        elif log_format is not None and log_format.text:
            config.log_format.CopyFrom(_text(log_format.text))
        elif spec.encoding == "JSON":
            config.log_format.CopyFrom(sfs.SubstitutionFormatString(json_format=_json_default()))
        else:
            config.log_format.CopyFrom(_text(spec.format or DEFAULT_ACCESS_LOG_FORMAT))
        log = al.AccessLog(name=FILE_LOGGER, typed_config=pack(config))
        if spec.filter:
            log.filter.CopyFrom(
                al.AccessLogFilter(
                    extension_filter=al.ExtensionFilter(
                        name=CEL_FILTER,
                        typed_config=pack(cel_pb2.ExpressionFilter(expression=spec.filter)),
                    )
                )
            )
        out.append(log)
    return out


def _text(text: str) -> sfs.SubstitutionFormatString:
    text = text if text.endswith("\n") else text + "\n"
    return sfs.SubstitutionFormatString(text_format_source=base_pb2.DataSource(inline_string=text))


#: Istio's JSON access log fields (``accessLogEncoding: JSON``).
JSON_FIELDS = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "authority": "%REQ(:AUTHORITY)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "route_name": "%ROUTE_NAME%",
}


def _json_default() -> struct_pb2.Struct:
    fields = struct_pb2.Struct()
    fields.update(JSON_FIELDS)
    return fields


def peer_headers_to_add() -> list[base_pb2.HeaderValueOption]:
    """What a client sidecar's routes add about its workload (replacing what the app sent):
    one header, its values packed (:data:`PEER_HEADER`), read whole from one environment
    variable (:data:`PEER_ENV_PACKED`): this header is on every in-mesh virtual host, so its
    size counts once per service in every sidecar's route configuration."""
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=PEER_HEADER, value=f"%ENVIRONMENT({PEER_ENV_PACKED})%"),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )
    ]


def _protocol_rules(config: h2m.Config) -> None:
    """Store ``request_protocol``: ``http``, then ``grpc`` over it for a gRPC content type."""
    http = config.request_rules.add(header="content-type")
    for on in (http.on_header_present, http.on_header_missing):
        on.metadata_namespace = REQUEST_METADATA
        on.key = "protocol"
        on.value = "http"
        on.type = h2m.Config.STRING
    grpc = config.request_rules.add(header="content-type")
    grpc.on_header_present.metadata_namespace = REQUEST_METADATA
    grpc.on_header_present.key = "protocol"
    grpc.on_header_present.type = h2m.Config.STRING
    grpc.on_header_present.regex_value_rewrite.pattern.regex = GRPC_CONTENT_TYPE
    grpc.on_header_present.regex_value_rewrite.substitution = "\\1"


def request_metadata_filter() -> h2m.Config:
    """The outbound edge: what the request is, for the metrics' ``request_protocol``."""
    config = h2m.Config()
    _protocol_rules(config)
    return config


def peer_metadata_filter() -> h2m.Config:
    """The inbound edge: move the caller's peer headers into metadata and remove them, take
    the verified namespace from the ``x-forwarded-client-cert`` element this proxy appended,
    and store what the request is."""
    config = h2m.Config()
    rule = config.request_rules.add(header=PEER_HEADER, remove=True)
    rule.on_header_present.metadata_namespace = PEER_METADATA
    rule.on_header_present.key = "labels"
    rule.on_header_present.type = h2m.Config.STRING
    rule.on_header_present.regex_value_rewrite.pattern.regex = PEER_HEADER_VALUE
    rule.on_header_present.regex_value_rewrite.substitution = "\\1"
    for key, header in PEER_HEADERS.items():  # removed only (a rule must store something)
        stripped = config.request_rules.add(header=header, remove=True)
        stripped.on_header_present.metadata_namespace = STRIPPED_METADATA
        stripped.on_header_present.key = key
        stripped.on_header_present.type = h2m.Config.STRING
    xfcc = config.request_rules.add(header="x-forwarded-client-cert")
    xfcc.on_header_present.metadata_namespace = PEER_METADATA
    xfcc.on_header_present.key = "verified_namespace"
    xfcc.on_header_present.type = h2m.Config.STRING
    rewrite = xfcc.on_header_present.regex_value_rewrite
    rewrite.pattern.regex = VERIFIED_NAMESPACE
    rewrite.substitution = "\\1"
    _protocol_rules(config)
    return config


@dataclass(frozen=True)
class HcmTelemetry:
    access_logs: tuple[al.AccessLog, ...] = ()
    tracing: hcm_pb2.HttpConnectionManager.Tracing | None = None
    #: Inbound: move the caller's peer headers into metadata first (and remove them).
    peer_edge: bool = False
    #: Outbound with metrics: store what the request is first (``request_protocol``).
    request_edge: bool = False
    #: A gRPC port with metrics: count the messages of each stream (:func:`grpc_message_filters`).
    grpc_messages: bool = False


# ---- tracing --------------------------------------------------------------------------------

ZIPKIN_TRACER = "envoy.tracers.zipkin"
OTEL_TRACER = "envoy.tracers.opentelemetry"


def tracing_config(
    spec: TracingSpec, cluster: str, authority: str, service_name: str
) -> hcm_pb2.HttpConnectionManager.Tracing:
    """An HTTP connection manager's tracing: Istio's provider, sampling and custom tags.

    ``cluster`` is the collector's outbound cluster, ``authority`` its ``host:port`` and
    ``service_name`` Istio's span service name (``app.namespace``). Sampling is decided once,
    by the first proxy on the path (client sampling off, as Istio); later proxies honour the
    caller's ``x-b3-sampled``/``traceparent`` decision.
    """
    T = hcm_pb2.HttpConnectionManager.Tracing
    tracing = T()
    tracing.random_sampling.value = spec.sampling
    tracing.client_sampling.value = 100.0
    tracing.overall_sampling.value = 100.0
    if spec.provider.zipkin is not None:
        zipkin = zipkin_pb2.ZipkinConfig(
            collector_cluster=cluster,
            collector_endpoint=spec.provider.zipkin.path or "/api/v2/spans",
            collector_endpoint_version=zipkin_pb2.ZipkinConfig.HTTP_JSON,
            collector_hostname=authority,
            trace_id_128bit=True,
        )
        zipkin.shared_span_context.value = False
        tracing.provider.CopyFrom(http_tracer(ZIPKIN_TRACER, pack(zipkin)))
    elif spec.provider.opentelemetry is not None:
        otel = opentelemetry_pb2.OpenTelemetryConfig(service_name=service_name)
        otel.grpc_service.envoy_grpc.cluster_name = cluster
        otel.grpc_service.envoy_grpc.authority = authority
        tracing.provider.CopyFrom(http_tracer(OTEL_TRACER, pack(otel)))
    for tag, kind, value, default in spec.custom_tags:
        custom = tracing.custom_tags.add(tag=tag)
        if kind == "literal":
            custom.literal.value = value
        elif kind == "environment":
            custom.environment.name = value
            custom.environment.default_value = default
        else:
            custom.request_header.name = value
            custom.request_header.default_value = default
    return tracing


def http_tracer(name: str, config: Any) -> http_tracer_pb2.Tracing.Http:
    return http_tracer_pb2.Tracing.Http(name=name, typed_config=config)
