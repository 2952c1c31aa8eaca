"""VirtualService (networking.istio.io): routing rules for HTTP, TLS and TCP traffic.

Field names and shapes follow Istio's ``virtual_service.proto`` JSON form. Durations are kept
as written, typed :class:`~pilotfish.api.duration.Duration` (the text and its parsed value).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pilotfish.api.duration import Duration
from pilotfish.api.meta import Model, Resource

#: The header-match key prefix of JWT claim routing (gateways only, as Istio).
JWT_CLAIM_PREFIX = "@request.auth.claims"


def jwt_claim_path(name: str) -> list[str] | None:
    """The claim path of a ``headers``/``withoutHeaders`` key that matches a JWT claim:
    ``@request.auth.claims.nested.key1`` -> ``["nested", "key1"]``,
    ``@request.auth.claims[nested][key1]`` likewise; None for an ordinary header (or a
    malformed claim key)."""
    rest = name[len(JWT_CLAIM_PREFIX) :] if name.startswith(JWT_CLAIM_PREFIX) else None
    if not rest:
        return None
    if rest.startswith("."):
        parts = rest[1:].split(".")
        return parts if all(parts) else None
    parts = []
    while rest.startswith("["):
        end = rest.find("]")
        if end <= 1:
            return None
        parts.append(rest[1:end])
        rest = rest[end + 1 :]
    return parts if parts and not rest else None


class StringMatch(Model):
    """One of ``exact``, ``prefix``, ``regex`` (RE2 syntax)."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


class Percent(Model):
    """A percentage in 0..100 (``{value: 10}``; fractions allowed)."""

    value: float = 0.0


class PortSelector(Model):
    number: int | None = None


class Destination(Model):
    """``host`` (service name, FQDN or ServiceEntry host), optional ``subset`` and ``port``."""

    host: str = ""
    subset: str | None = None
    port: PortSelector | None = None


class HeaderOperations(Model):
    set: dict[str, str] = Field(default_factory=dict)
    add: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class Headers(Model):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class HTTPMatchRequest(Model):
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] = Field(default_factory=dict)
    port: int | None = None
    sourceLabels: dict[str, str] = Field(default_factory=dict)
    gateways: list[str] = Field(default_factory=list)
    queryParams: dict[str, StringMatch] = Field(default_factory=dict)
    ignoreUriCase: bool | None = None
    withoutHeaders: dict[str, StringMatch] = Field(default_factory=dict)
    sourceNamespace: str | None = None
    statPrefix: str | None = None


class HTTPRouteDestination(Model):
    destination: Destination
    weight: int | None = None
    headers: Headers | None = None


class HTTPRedirect(Model):
    uri: str | None = None
    authority: str | None = None
    port: int | None = None
    derivePort: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str | None = None
    redirectCode: int | None = None


class HTTPBody(Model):
    string: str | None = None
    bytes: str | None = None


class HTTPDirectResponse(Model):
    status: int
    body: HTTPBody | None = None


class Delegate(Model):
    name: str | None = None
    namespace: str | None = None


class RegexRewrite(Model):
    match: str | None = None
    rewrite: str | None = None


class HTTPRewrite(Model):
    uri: str | None = None
    authority: str | None = None
    uriRegexRewrite: RegexRewrite | None = None


class HTTPRetry(Model):
    attempts: int | None = None
    perTryTimeout: Duration | None = None
    retryOn: str | None = None
    retryRemoteLocalities: bool | None = None
    retryIgnorePreviousHosts: bool | None = None
    backoff: Duration | None = None


class FaultDelay(Model):
    fixedDelay: Duration | None = None
    exponentialDelay: Duration | None = None
    percentage: Percent | None = None
    percent: int | None = None


class FaultAbort(Model):
    httpStatus: int | None = None
    grpcStatus: str | None = None
    http2Error: str | None = None
    percentage: Percent | None = None


class HTTPFaultInjection(Model):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class HTTPMirrorPolicy(Model):
    destination: Destination
    percentage: Percent | None = None


class CorsPolicy(Model):
    allowOrigins: list[StringMatch] = Field(default_factory=list)
    allowOrigin: list[str] = Field(default_factory=list)
    allowMethods: list[str] = Field(default_factory=list)
    allowHeaders: list[str] = Field(default_factory=list)
    exposeHeaders: list[str] = Field(default_factory=list)
    maxAge: Duration | None = None
    allowCredentials: bool | None = None
    unmatchedPreflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None


class HTTPRoute(Model):
    name: str | None = None
    match: list[HTTPMatchRequest] = Field(default_factory=list)
    route: list[HTTPRouteDestination] = Field(default_factory=list)
    redirect: HTTPRedirect | None = None
    directResponse: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] = Field(default_factory=list)
    mirrorPercent: int | None = None
    mirrorPercentage: Percent | None = None
    corsPolicy: CorsPolicy | None = None
    headers: Headers | None = None


class RouteDestination(Model):
    destination: Destination
    weight: int | None = None


class TLSMatchAttributes(Model):
    sniHosts: list[str] = Field(default_factory=list)
    destinationSubnets: list[str] = Field(default_factory=list)
    port: int | None = None
    sourceLabels: dict[str, str] = Field(default_factory=dict)
    gateways: list[str] = Field(default_factory=list)
    sourceNamespace: str | None = None


class L4MatchAttributes(Model):
    destinationSubnets: list[str] = Field(default_factory=list)
    port: int | None = None
    sourceSubnet: str | None = None
    sourceLabels: dict[str, str] = Field(default_factory=dict)
    gateways: list[str] = Field(default_factory=list)
    sourceNamespace: str | None = None


class TLSRoute(Model):
    match: list[TLSMatchAttributes] = Field(default_factory=list)
    route: list[RouteDestination] = Field(default_factory=list)


class TCPRoute(Model):
    match: list[L4MatchAttributes] = Field(default_factory=list)
    route: list[RouteDestination] = Field(default_factory=list)


class VirtualServiceSpec(Model):
    hosts: list[str] = Field(default_factory=list)
    gateways: list[str] = Field(default_factory=list)
    http: list[HTTPRoute] = Field(default_factory=list)
    tls: list[TLSRoute] = Field(default_factory=list)
    tcp: list[TCPRoute] = Field(default_factory=list)
    exportTo: list[str] = Field(default_factory=list)


class VirtualService(Resource):
    spec: VirtualServiceSpec = Field(default_factory=VirtualServiceSpec)
    status: dict[str, Any] | None = None
