"""HTTP filters and the HTTP connection manager, and per-route filter configs.

Every HCM Pilotfish builds carries, in Istio's order (after ``envoy.filters.http.grpc_web`` on
GRPC-Web ports and Gateway servers): ``envoy.filters.http.fault``,
``envoy.filters.http.cors`` and ``envoy.filters.http.router``. Fault and CORS do nothing
unless a route carries its own config in ``typed_per_filter_config`` (built here from a
VirtualService ``fault`` / ``corsPolicy``). Later issues insert their filters (stats...)
through ``http_filters``.

Inbound and gateway HCMs put the security filters first (``inbound_http_filters``): in Istio's
order ``envoy.filters.http.jwt_authn`` (``authn``), then ``envoy.filters.http.rbac`` once per
AuthorizationPolicy action in evaluation order (``authz``); inbound TCP chains get
``envoy.filters.network.rbac`` before ``tcp_proxy`` (``inbound_network_filters``).
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.grpc_web.v3 import grpc_web_pb2
from envoy.extensions.filters.http.on_demand.v3 import on_demand_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2

from pilotfish.api.virtualservice import (
    CorsPolicy,
    FaultAbort,
    FaultDelay,
    HTTPFaultInjection,
    StringMatch,
)
from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext
from pilotfish.translate.authn import jwt_authn_filters
from pilotfish.translate.authz import http_rbac_filters, network_rbac_filters
from pilotfish.translate.common import duration, given, pack, proto_duration
from pilotfish.translate.extauthz import ext_authz_filters, ext_authz_network_filters
from pilotfish.translate.telemetry import (
    HEADER_TO_METADATA,
    HcmTelemetry,
    grpc_message_filters,
    peer_metadata_filter,
    request_metadata_filter,
)

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
#: Envoy's gRPC-Web translation: a browser's gRPC-Web request (HTTP/1.1 or HTTP/2,
#: ``application/grpc-web*``) goes on as gRPC, and the gRPC answer (trailers included) comes
#: back framed as gRPC-Web. Istio adds it where the port (or Gateway server) is GRPC-Web.
GRPC_WEB_FILTER = "envoy.filters.http.grpc_web"
ROUTER_FILTER = "envoy.filters.http.router"
ON_DEMAND_FILTER = "envoy.filters.http.on_demand"
#: How long a request waits for a cluster it is the first to use (Envoy's default).
ON_DEMAND_TIMEOUT_S = 5.0
HCM_FILTER = "envoy.filters.network.http_connection_manager"

HCM = hcm_pb2.HttpConnectionManager
HttpFilter = hcm_pb2.HttpFilter


def string_match(m: StringMatch, ignore_case: bool = False) -> string_pb2.StringMatcher | None:
    """Istio StringMatch -> Envoy StringMatcher (None for an empty match: presence)."""
    if m.exact is not None:
        return string_pb2.StringMatcher(exact=m.exact, ignore_case=ignore_case)
    if m.prefix is not None:
        return string_pb2.StringMatcher(prefix=m.prefix, ignore_case=ignore_case)
    if m.regex is not None:
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=m.regex))
    return None


def _percent(spec: FaultDelay | FaultAbort) -> percent_pb2.FractionalPercent:
    """Istio ``percentage.value`` (or the old integer ``percent``), 100% when unset."""
    percent = spec.percent if isinstance(spec, FaultDelay) else None
    if spec.percentage is not None and "value" in spec.percentage.model_fields_set:
        value = spec.percentage.value
    elif percent is not None:
        value = float(percent)
    else:
        value = 100.0
    return percent_pb2.FractionalPercent(
        numerator=round(value * 10000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def fault_per_route(fault: HTTPFaultInjection) -> any_pb2.Any | None:
    out = fault_pb2.HTTPFault()
    delay = fault.delay
    if given(delay) and (delay.fixedDelay or delay.exponentialDelay):
        d = common_fault.FaultDelay(percentage=_percent(delay))
        d.fixed_delay.CopyFrom(
            proto_duration(delay.fixedDelay) if delay.fixedDelay else duration(0)
        )
        out.delay.CopyFrom(d)
    abort = fault.abort
    if given(abort):
        a = fault_pb2.FaultAbort(percentage=_percent(abort))
        if abort.grpcStatus:
            a.grpc_status = _grpc_code(abort.grpcStatus)
        else:
            a.http_status = abort.httpStatus or 500
        out.abort.CopyFrom(a)
    if not out.HasField("delay") and not out.HasField("abort"):
        return None
    return pack(out)


_GRPC_CODES = [
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
]  # fmt: skip


def _grpc_code(text: str) -> int:
    if text.isdigit():
        return int(text)
    return _GRPC_CODES.index(text.upper()) if text.upper() in _GRPC_CODES else 2


def cors_per_route(cors: CorsPolicy) -> any_pb2.Any | None:
    origins = [string_match(o) for o in cors.allowOrigins]
    origins += [string_match(StringMatch(exact=o)) for o in cors.allowOrigin]
    policy = cors_pb2.CorsPolicy(
        allow_origin_string_match=[o for o in origins if o is not None],
        allow_methods=",".join(cors.allowMethods),
        allow_headers=",".join(cors.allowHeaders),
        expose_headers=",".join(cors.exposeHeaders),
    )
    if cors.maxAge:
        policy.max_age = str(proto_duration(cors.maxAge).seconds)
    if cors.allowCredentials is not None:
        policy.allow_credentials.value = cors.allowCredentials
    # As Istio: a preflight from an origin not allowed goes on to the service unless
    # unmatchedPreflights is IGNORE (then Envoy answers it, without CORS headers).
    policy.forward_not_matching_preflights.value = cors.unmatchedPreflights != "IGNORE"
    policy.filter_enabled.CopyFrom(
        base_pb2.RuntimeFractionalPercent(
            default_value=percent_pb2.FractionalPercent(numerator=100)
        )
    )
    return pack(policy)


def on_demand_filter() -> hcm_pb2.HttpFilter:
    """Envoy's on-demand CDS over ADS: a request routed to a cluster the proxy does not have
    yet waits (up to ``ON_DEMAND_TIMEOUT_S``) while Envoy asks for that cluster by name, then
    goes on (see ``pilotfish.translate.ondemand``)."""
    config = on_demand_pb2.OnDemand()
    config.odcds.source.ads.SetInParent()
    config.odcds.source.resource_api_version = config_source_pb2.V3
    config.odcds.timeout.CopyFrom(duration(ON_DEMAND_TIMEOUT_S))
    return hcm_pb2.HttpFilter(name=ON_DEMAND_FILTER, typed_config=pack(config))


def http_filters(
    security: Sequence[hcm_pb2.HttpFilter] = (),
    *,
    on_demand: bool = False,
    grpc_web: bool = False,
) -> list[hcm_pb2.HttpFilter]:
    """The HCM's filters: ``security`` (jwt_authn, RBAC) first, then gRPC-Web (``grpc_web``:
    a GRPC-Web port or Gateway server, where Istio puts it, after the security filters), fault,
    CORS, the on-demand cluster filter (outbound, with the mesh's ``onDemandClusters``), router."""
    return [
        *security,
        *([grpc_web_filter()] if grpc_web else []),
        hcm_pb2.HttpFilter(name=FAULT_FILTER, typed_config=pack(fault_pb2.HTTPFault())),
        hcm_pb2.HttpFilter(name=CORS_FILTER, typed_config=pack(cors_pb2.Cors())),
        *([on_demand_filter()] if on_demand else []),
        hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=pack(router_pb2.Router())),
    ]


def grpc_web_filter() -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=GRPC_WEB_FILTER, typed_config=pack(grpc_web_pb2.GrpcWeb()))


def http_connection_manager(
    stat_prefix: str,
    route_config_name: str | None = None,
    route_config: route_pb2.RouteConfiguration | None = None,
    *,
    use_remote_address: bool = False,
    security_filters: Sequence[hcm_pb2.HttpFilter] = (),
    telemetry: HcmTelemetry | None = None,
    local_reply: hcm_pb2.LocalReplyConfig | None = None,
    on_demand: bool = False,
    grpc_web: bool = False,
) -> hcm_pb2.HttpConnectionManager:
    """An HCM that takes its routes from RDS over ADS (``route_config_name``) or inline;
    ``security_filters`` (from ``inbound_http_filters``) run before the others; ``telemetry``
    adds Istio's metrics, access logs and tracing (and, inbound, the peer header edge first);
    ``on_demand`` fetches a routed cluster the proxy lacks (on-demand CDS); ``grpc_web``
    translates gRPC-Web requests to gRPC (``grpc_web_filter``)."""
    edge: list[hcm_pb2.HttpFilter] = []
    if telemetry is not None and telemetry.peer_edge:
        edge.append(HttpFilter(name=HEADER_TO_METADATA, typed_config=pack(peer_metadata_filter())))
    elif telemetry is not None and telemetry.request_edge:
        edge.append(
            HttpFilter(name=HEADER_TO_METADATA, typed_config=pack(request_metadata_filter()))
        )
    if telemetry is not None and telemetry.grpc_messages:
        # Before any filter that may answer locally, so a denied stream is counted too.
        edge += [HttpFilter(name=n, typed_config=pack(c)) for n, c in grpc_message_filters()]
    hcm = HCM(
        stat_prefix=stat_prefix,
        codec_type=HCM.CodecType.AUTO,
        http_filters=http_filters(
            [*edge, *security_filters], on_demand=on_demand, grpc_web=grpc_web
        ),
    )
    if telemetry is not None:
        hcm.access_log.extend(telemetry.access_logs)
        if telemetry.tracing is not None:
            hcm.tracing.CopyFrom(telemetry.tracing)
    if local_reply is not None:  # denials that name their policy (``denials``)
        hcm.local_reply_config.CopyFrom(local_reply)
    hcm.use_remote_address.value = use_remote_address
    hcm.normalize_path.value = True
    if route_config is not None:
        hcm.route_config.CopyFrom(route_config)
    else:
        hcm.rds.route_config_name = route_config_name or ""
        hcm.rds.config_source.ads.SetInParent()
        hcm.rds.config_source.resource_api_version = config_source_pb2.V3
    return hcm


# ---- security filters on the inbound side ------------------------------------------------------


def inbound_http_filters(
    push: PushContext, proxy: Proxy, port: int | None
) -> list[hcm_pb2.HttpFilter]:
    """The security HTTP filters of an inbound (or gateway) HCM serving ``port``, in Istio's
    order: ``jwt_authn`` (RequestAuthentication), then the CUSTOM policies' shadow RBAC and
    ext_authz (``extauthz``), then RBAC for AUDIT, DENY and ALLOW policies
    (AuthorizationPolicy). Empty when no policy applies to ``proxy``."""
    custom = ext_authz_filters(push, proxy, port)
    return [
        *jwt_authn_filters(push, proxy),
        *(custom or []),
        *http_rbac_filters(push, proxy, port, custom_handled=bool(custom)),
    ]


def inbound_network_filters(push: PushContext, proxy: Proxy, port: int | None) -> list[lc.Filter]:
    """The security network filters to put before ``tcp_proxy`` on an inbound TCP chain for
    ``port``: the CUSTOM policies' shadow RBAC and ext_authz (gRPC providers), then RBAC for
    AUDIT, DENY and ALLOW policies."""
    custom = ext_authz_network_filters(push, proxy, port)
    return [
        *(custom or []),
        *network_rbac_filters(push, proxy, port, custom_handled=custom is not None),
    ]
