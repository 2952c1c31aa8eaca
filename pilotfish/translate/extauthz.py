"""AuthorizationPolicy ``action: CUSTOM`` -> Envoy's ext_authz filter, as Istio builds it.

The provider is the mesh config's ``extensionProviders[]`` entry the policy names
(``envoyExtAuthzHttp`` or ``envoyExtAuthzGrpc``), a service of the mesh: Envoy calls it
through the outbound cluster of its ``service`` and ``port``.

Which requests are checked: the rules of the CUSTOM policies that apply to the workload,
as an RBAC filter with **shadow** DENY rules only (named ``istio-ext-authz-ns[NS]-policy[NAME]-
rule[I]``, stat prefix ``istio_ext_authz_``): it never denies, it writes the rule it matched
to dynamic metadata (``envoy.filters.http.rbac`` /
``istio_ext_authz_shadow_effective_policy_id``), and the ext_authz filter after it runs only
when that value starts with ``istio-ext-authz`` (``filter_enabled_metadata``). Both come
before the RBAC filters of DENY and ALLOW: CUSTOM, then DENY, then ALLOW, as in Istio.

Provider settings: ``timeout`` (Istio's default 600s), ``pathPrefix``, ``failOpen``
(``failure_mode_allow``), ``statusOnError`` (default 403), ``includeRequestHeadersInCheck``
(and the deprecated ``includeHeadersInCheck``: ``allowed_headers``, ``*`` as prefix/suffix
wildcard, case-insensitive), ``includeAdditionalHeadersInCheck`` (headers added to the
check request), ``includeRequestBodyInCheck`` (``with_request_body``),
``headersToUpstreamOnAllow``, ``headersToDownstreamOnAllow``, ``headersToDownstreamOnDeny``.

What fails closed (every request to the workload is denied, the reason logged once, as Istio
does when it cannot build the filter): a provider that is not defined or not an ext_authz
provider, CUSTOM policies of one workload naming different providers, a provider service that
is not in the registry.

TCP ports, as Istio: an ``envoyExtAuthzGrpc`` provider is called from Envoy's ext_authz
**network** filter (once per connection, before ``tcp_proxy``), behind a shadow network RBAC
of the policies' rules (only the connections a rule selects are checked; HTTP-only fields of
a rule are left out on TCP, so it selects more, as Istio builds CUSTOM rules like DENY ones);
``failOpen`` and ``timeout`` apply, a denied connection is closed. An ``envoyExtAuthzHttp``
provider cannot check a TCP connection: Istio leaves such policies out of TCP chains, and so
does Pilotfish (logged once per policy, and ``apply`` warns about it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2, http_uri_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as net_ext_authz_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as net_rbac_pb2
from envoy.type.matcher.v3 import metadata_pb2, string_pb2, value_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import duration_pb2

from pilotfish.api.duration import parse_duration
from pilotfish.api.hosts import resolve_host
from pilotfish.api.meshconfig import (
    BufferSettings,
    EnvoyExternalAuthorizationGrpcProvider,
    EnvoyExternalAuthorizationHttpProvider,
)
from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext
from pilotfish.translate.authz import (
    RBAC_HTTP_FILTER,
    RBAC_NETWORK_FILTER,
    TCP_STAT_PREFIX,
    AuthorizationPolicy,
    Context,
    applicable,
    rule_policy,
    warn_once,
)
from pilotfish.translate.common import ClusterKey, duration, pack

__all__ = [
    "EXT_AUTHZ_FILTER",
    "EXT_AUTHZ_NETWORK_FILTER",
    "ext_authz_filters",
    "ext_authz_network_filters",
    "resolve_provider",
]

EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
EXT_AUTHZ_NETWORK_FILTER = "envoy.filters.network.ext_authz"
SHADOW_PREFIX = "istio_ext_authz_"
POLICY_PREFIX = "istio-ext-authz"
#: Istio's default time to wait for the authorizer.
DEFAULT_TIMEOUT_SECONDS = 600.0

Provider = EnvoyExternalAuthorizationHttpProvider | EnvoyExternalAuthorizationGrpcProvider


@dataclass(frozen=True)
class Resolved:
    """A provider and the outbound cluster that reaches it."""

    name: str
    config: Provider
    host: str
    port: int

    @property
    def cluster(self) -> str:
        return ClusterKey.outbound(self.port, "", self.host).name


def resolve_provider(push: PushContext, name: str) -> Resolved | str:
    """The ext_authz provider ``name`` of the mesh config, or why it cannot be used."""
    provider = push.mesh_config.provider(name)
    if provider is None:
        return f'provider "{name}" is not defined in meshConfig.extensionProviders'
    config: Provider | None = provider.envoyExtAuthzHttp or provider.envoyExtAuthzGrpc
    if config is None:
        return f'provider "{name}" is not an envoyExtAuthzHttp or envoyExtAuthzGrpc provider'
    service = config.service
    _namespace, slash, host = service.partition("/")
    if not slash:
        host = service
    hostname = host
    if push.service(hostname) is None and "." in host and not host.endswith(".svc"):
        # "name.namespace": the service's FQDN.
        parts = host.split(".")
        if len(parts) == 2:
            hostname = resolve_host(parts[0], parts[1], push.settings.domain_suffix)
    svc = push.service(hostname)
    if svc is None:
        return f'provider "{name}": service "{service}" is not in the registry'
    if not any(p.port == config.port for p in svc.ports):
        return f'provider "{name}": service "{service}" has no port {config.port}'
    return Resolved(name, config, svc.hostname, config.port)


def _custom_policies(push: PushContext, proxy: Proxy) -> list[AuthorizationPolicy]:
    return [
        p for p in applicable(push, proxy, push.authorization_policies) if p.spec.action == "CUSTOM"
    ]


def _header_matchers(names: Sequence[str]) -> list[string_pb2.StringMatcher]:
    out = []
    for h in names:
        if h.startswith("*") and len(h) > 1:
            out.append(string_pb2.StringMatcher(suffix=h[1:], ignore_case=True))
        elif h.endswith("*") and len(h) > 1:
            out.append(string_pb2.StringMatcher(prefix=h[:-1], ignore_case=True))
        else:
            out.append(string_pb2.StringMatcher(exact=h, ignore_case=True))
    return out


def _buffer(body: BufferSettings) -> ext_authz_pb2.BufferSettings:
    return ext_authz_pb2.BufferSettings(
        max_request_bytes=body.maxRequestBytes or 0,
        allow_partial_message=bool(body.allowPartialMessage),
        pack_as_bytes=bool(body.packAsBytes),
    )


def ext_authz_config(resolved: Resolved) -> ext_authz_pb2.ExtAuthz:
    """The ext_authz filter for one provider (checking only what the shadow RBAC marked)."""
    cfg = resolved.config
    timeout = _timeout(resolved)
    out = ext_authz_pb2.ExtAuthz(
        transport_api_version=config_source_pb2.V3,
        failure_mode_allow=bool(cfg.failOpen),
        status_on_error=http_status_pb2.HttpStatus(
            code=int(cfg.statusOnError) if cfg.statusOnError else 403
        ),
        filter_enabled_metadata=_checked_by(RBAC_HTTP_FILTER),
    )
    if cfg.includeRequestBodyInCheck is not None:
        out.with_request_body.CopyFrom(_buffer(cfg.includeRequestBodyInCheck))
    if isinstance(cfg, EnvoyExternalAuthorizationGrpcProvider):
        out.grpc_service.CopyFrom(_grpc_service(resolved))
        return out
    http = out.http_service
    http.server_uri.CopyFrom(
        http_uri_pb2.HttpUri(
            uri=f"http://{resolved.host}:{resolved.port}",
            cluster=resolved.cluster,
            timeout=timeout,
        )
    )
    if cfg.pathPrefix:
        http.path_prefix = cfg.pathPrefix
    request_headers = [*cfg.includeRequestHeadersInCheck, *cfg.includeHeadersInCheck]
    if request_headers:
        out.allowed_headers.patterns.extend(_header_matchers(request_headers))
    for k, v in sorted(cfg.includeAdditionalHeadersInCheck.items()):
        http.authorization_request.headers_to_add.append(base_pb2.HeaderValue(key=k, value=v))
    response = http.authorization_response
    if cfg.headersToUpstreamOnAllow:
        response.allowed_upstream_headers.patterns.extend(
            _header_matchers(cfg.headersToUpstreamOnAllow)
        )
    if cfg.headersToDownstreamOnDeny:
        response.allowed_client_headers.patterns.extend(
            _header_matchers(cfg.headersToDownstreamOnDeny)
        )
    if cfg.headersToDownstreamOnAllow:
        response.allowed_client_headers_on_success.patterns.extend(
            _header_matchers(cfg.headersToDownstreamOnAllow)
        )
    return out


def _prefix_value(prefix: str) -> value_pb2.ValueMatcher:
    return value_pb2.ValueMatcher(string_match=string_pb2.StringMatcher(prefix=prefix))


def _checked_by(rbac_filter: str) -> metadata_pb2.MetadataMatcher:
    """Run the check only when the shadow RBAC ``rbac_filter`` matched a CUSTOM rule."""
    return metadata_pb2.MetadataMatcher(
        filter=rbac_filter,
        path=[
            metadata_pb2.MetadataMatcher.PathSegment(
                key=f"{SHADOW_PREFIX}shadow_effective_policy_id"
            )
        ],
        value=_prefix_value(POLICY_PREFIX),
    )


def _timeout(resolved: Resolved) -> duration_pb2.Duration:
    cfg = resolved.config
    return duration(parse_duration(cfg.timeout) if cfg.timeout else DEFAULT_TIMEOUT_SECONDS)


def _grpc_service(resolved: Resolved) -> grpc_service_pb2.GrpcService:
    return grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
            cluster_name=resolved.cluster, authority=resolved.host
        ),
        timeout=_timeout(resolved),
    )


def ext_authz_network_config(resolved: Resolved) -> net_ext_authz_pb2.ExtAuthz:
    """The ext_authz network filter of a gRPC provider (checking only what the shadow network
    RBAC marked), as Istio builds it."""
    return net_ext_authz_pb2.ExtAuthz(
        stat_prefix=TCP_STAT_PREFIX,
        grpc_service=_grpc_service(resolved),
        failure_mode_allow=bool(resolved.config.failOpen),
        transport_api_version=config_source_pb2.V3,
        filter_enabled_metadata=_checked_by(RBAC_NETWORK_FILTER),
    )


def _resolve_for(push: PushContext, custom: Sequence[AuthorizationPolicy]) -> Resolved | None:
    """The one provider of ``custom`` (the CUSTOM policies of one workload), or None (each
    policy's problem logged once): the caller then fails closed."""
    names = {p.spec.provider.name if p.spec.provider is not None else "" for p in custom}
    problem: str | None = None
    resolved: Resolved | str = ""
    if len(names) > 1:
        problem = (
            "CUSTOM policies of one workload name different providers "
            f"({', '.join(sorted(names))}); Istio allows one"
        )
    else:
        resolved = resolve_provider(push, next(iter(names)))
        if isinstance(resolved, str):
            problem = resolved
    if problem is not None or not isinstance(resolved, Resolved):
        for obj in custom:
            warn_once(
                f"AuthorizationPolicy {obj.namespace}/{obj.name}",
                obj.revision,
                f"spec.provider: {problem}; requests to the selected workloads are denied",
            )
        return None
    return resolved


def _shadow_rules(
    custom: Sequence[AuthorizationPolicy], port: int | None, tcp: bool
) -> rbac_pb2.RBAC:
    shadow = rbac_pb2.RBAC(action=rbac_pb2.RBAC.Action.DENY)
    for obj in custom:
        ctx = Context(tcp, port, obj.namespace)
        for i, rule in enumerate(obj.spec.rules):
            policy = rule_policy(rule, ctx, rbac_pb2.RBAC.Action.DENY)
            if policy is not None:
                name = f"{POLICY_PREFIX}-ns[{obj.namespace}]-policy[{obj.name}]-rule[{i}]"
                shadow.policies[name].CopyFrom(policy)
    return shadow


def ext_authz_filters(
    push: PushContext, proxy: Proxy, port: int | None
) -> list[hcm_pb2.HttpFilter] | None:
    """The shadow RBAC and ext_authz filters of ``proxy``'s CUSTOM policies; ``[]`` when no
    CUSTOM policy applies; None when they cannot be built (the caller then fails closed)."""

    def compute() -> list[hcm_pb2.HttpFilter] | None:
        custom = _custom_policies(push, proxy)
        if not custom:
            return []
        resolved = _resolve_for(push, custom)
        if resolved is None:
            return None
        rbac = http_rbac_pb2.RBAC(
            shadow_rules=_shadow_rules(custom, port, tcp=False),
            shadow_rules_stat_prefix=SHADOW_PREFIX,
        )
        return [
            hcm_pb2.HttpFilter(name=RBAC_HTTP_FILTER, typed_config=pack(rbac)),
            hcm_pb2.HttpFilter(
                name=EXT_AUTHZ_FILTER, typed_config=pack(ext_authz_config(resolved))
            ),
        ]

    key = ("ext_authz", proxy.namespace, tuple(sorted(proxy.labels.items())), port)
    return push.memo(key, compute)


def ext_authz_network_filters(
    push: PushContext, proxy: Proxy, port: int | None
) -> list[lc.Filter] | None:
    """The shadow network RBAC and ext_authz network filters of ``proxy``'s CUSTOM policies
    for a TCP chain serving ``port``: ``[]`` when no CUSTOM policy applies, or when the
    provider is an HTTP one (Istio leaves those out of TCP chains); None when they cannot be
    built (the caller then fails closed)."""

    def compute() -> list[lc.Filter] | None:
        custom = _custom_policies(push, proxy)
        if not custom:
            return []
        resolved = _resolve_for(push, custom)
        if resolved is None:
            return None
        if not isinstance(resolved.config, EnvoyExternalAuthorizationGrpcProvider):
            for obj in custom:
                warn_once(
                    f"AuthorizationPolicy {obj.namespace}/{obj.name}",
                    obj.revision,
                    f'spec.provider: "{resolved.name}" is an envoyExtAuthzHttp provider, which '
                    "cannot check TCP connections: TCP ports of the selected workloads are not "
                    "checked by it (as in Istio)",
                )
            return []
        rbac = net_rbac_pb2.RBAC(
            stat_prefix=TCP_STAT_PREFIX,
            shadow_rules=_shadow_rules(custom, port, tcp=True),
            shadow_rules_stat_prefix=SHADOW_PREFIX,
        )
        return [
            lc.Filter(name=RBAC_NETWORK_FILTER, typed_config=pack(rbac)),
            lc.Filter(
                name=EXT_AUTHZ_NETWORK_FILTER,
                typed_config=pack(ext_authz_network_config(resolved)),
            ),
        ]

    key = ("ext_authz_tcp", proxy.namespace, tuple(sorted(proxy.labels.items())), port)
    return push.memo(key, compute)
