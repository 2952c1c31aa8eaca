"""PeerAuthentication, AuthorizationPolicy and RequestAuthentication (security.istio.io)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pilotfish.api.meta import Model, PolicyTargetReference, Resource, WorkloadSelector

# --- PeerAuthentication ----------------------------------------------------------------------

MtlsMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class MutualTLS(Model):
    mode: MtlsMode | None = None


class PeerAuthenticationSpec(Model):
    selector: WorkloadSelector | None = None
    mtls: MutualTLS | None = None
    #: Port number -> mode; YAML may write the keys as numbers or strings.
    portLevelMtls: dict[int, MutualTLS] = Field(default_factory=dict)


class PeerAuthentication(Resource):
    spec: PeerAuthenticationSpec = Field(default_factory=PeerAuthenticationSpec)
    status: dict[str, Any] | None = None


# --- AuthorizationPolicy ---------------------------------------------------------------------


class Source(Model):
    principals: list[str] = Field(default_factory=list)
    notPrincipals: list[str] = Field(default_factory=list)
    requestPrincipals: list[str] = Field(default_factory=list)
    notRequestPrincipals: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)
    notNamespaces: list[str] = Field(default_factory=list)
    ipBlocks: list[str] = Field(default_factory=list)
    notIpBlocks: list[str] = Field(default_factory=list)
    remoteIpBlocks: list[str] = Field(default_factory=list)
    notRemoteIpBlocks: list[str] = Field(default_factory=list)
    serviceAccounts: list[str] = Field(default_factory=list)
    notServiceAccounts: list[str] = Field(default_factory=list)
    #: The peer certificate's trust domain (``spiffe://<trust domain>/...``), Istio 1.28+.
    trustDomains: list[str] = Field(default_factory=list)
    notTrustDomains: list[str] = Field(default_factory=list)


class Operation(Model):
    hosts: list[str] = Field(default_factory=list)
    notHosts: list[str] = Field(default_factory=list)
    ports: list[str] = Field(default_factory=list)
    notPorts: list[str] = Field(default_factory=list)
    methods: list[str] = Field(default_factory=list)
    notMethods: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    notPaths: list[str] = Field(default_factory=list)


class RuleFrom(Model):
    source: Source | None = None


class RuleTo(Model):
    operation: Operation | None = None


class Condition(Model):
    key: str = ""
    values: list[str] = Field(default_factory=list)
    notValues: list[str] = Field(default_factory=list)


class Rule(Model):
    from_: list[RuleFrom] = Field(default_factory=list, alias="from")
    to: list[RuleTo] = Field(default_factory=list)
    when: list[Condition] = Field(default_factory=list)


class ExtensionProvider(Model):
    name: str = ""


AuthorizationAction = Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]


class AuthorizationPolicySpec(Model):
    selector: WorkloadSelector | None = None
    targetRef: PolicyTargetReference | None = None
    targetRefs: list[PolicyTargetReference] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    action: AuthorizationAction | None = None
    provider: ExtensionProvider | None = None


class AuthorizationPolicy(Resource):
    spec: AuthorizationPolicySpec = Field(default_factory=AuthorizationPolicySpec)
    status: dict[str, Any] | None = None


# --- RequestAuthentication -------------------------------------------------------------------


class JWTHeader(Model):
    name: str = ""
    prefix: str | None = None


class ClaimToHeader(Model):
    header: str = ""
    claim: str = ""


class JWTRule(Model):
    issuer: str = ""
    audiences: list[str] = Field(default_factory=list)
    jwksUri: str | None = None
    jwks: str | None = None
    fromHeaders: list[JWTHeader] = Field(default_factory=list)
    fromParams: list[str] = Field(default_factory=list)
    fromCookies: list[str] = Field(default_factory=list)
    outputPayloadToHeader: str | None = None
    outputClaimToHeaders: list[ClaimToHeader] = Field(default_factory=list)
    forwardOriginalToken: bool | None = None
    timeout: str | None = None
    spaceDelimitedClaims: list[str] = Field(default_factory=list)


class RequestAuthenticationSpec(Model):
    selector: WorkloadSelector | None = None
    targetRef: PolicyTargetReference | None = None
    targetRefs: list[PolicyTargetReference] = Field(default_factory=list)
    jwtRules: list[JWTRule] = Field(default_factory=list)


class RequestAuthentication(Resource):
    spec: RequestAuthenticationSpec = Field(default_factory=RequestAuthenticationSpec)
    status: dict[str, Any] | None = None
