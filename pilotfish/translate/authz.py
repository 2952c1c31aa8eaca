"""AuthorizationPolicy -> Envoy RBAC, on the inbound side of the selected workloads (and on
gateways whose labels a policy selects), with Istio's semantics.

Scope: a policy in the root namespace (``istio-system``) applies mesh-wide, elsewhere to the
workloads of its namespace; ``selector.matchLabels`` narrows it to matching workloads.
Policies with ``targetRef``/``targetRefs`` are for waypoints and Gateway API gateways, which
Pilotfish does not run: they are ignored (logged once).

Evaluation order, as one filter per action: CUSTOM, AUDIT (RBAC ``LOG``), DENY, ALLOW. No ALLOW
policy means no ALLOW filter (allow); an ALLOW policy whose rules match nothing denies; an ALLOW
policy without rules (``spec: {}``) denies everything. CUSTOM calls the mesh config's ext_authz
provider (``extauthz``); when that cannot be built (an unknown provider, ...), like Istio, a
CUSTOM policy fails closed (denies every request to the selected workloads) and the control
plane logs why. The annotation
``istio.io/dry-run: "true"`` moves a policy to ``shadow_rules`` (evaluated, not enforced).

Each rule becomes one RBAC policy ``ns[NS]-policy[NAME]-rule[I]``: its permissions are one entry
per ``to`` (AND of the operation fields and the destination ``when`` conditions), its principals
one entry per ``from`` (AND of the source fields and the other ``when`` conditions); a field's
values are OR-ed, ``not*`` values negated. Values take Istio's wildcards: exact, ``*`` (any,
non-empty), ``prefix*``, ``*suffix``; paths also ``{*}``/``{**}`` templates (Envoy uri_template).

Identities: principals match the peer certificate's URI SAN (``spiffe://`` + value); namespaces
the regex ``.*/ns/NS/.*`` on it; serviceAccounts ``spiffe://TD/ns/NS/sa/SA``. Request
principals and ``request.auth.*`` read the JWT payload that ``jwt_authn`` stores in dynamic
metadata (filter ``envoy.filters.http.jwt_authn``, key ``payload``, see ``authn``):
``iss/sub`` split at the last ``/``.

Ports: the translator knows the workload port a chain serves, so ``ports`` and
``destination.port`` are decided when generating (a listener may bind another port than the
app's, as in explicit mode); ``port=None`` falls back to Envoy's ``destination_port``.

HTTP-only fields (hosts, methods, paths, requestPrincipals, request.headers, request.auth.*) on a
TCP chain: an ALLOW rule that needs one is dropped (it matches nothing); in DENY and AUDIT rules
the field is ignored, so the rule applies more widely (Istio's behaviour).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from envoy.config.core.v3 import extension_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.rbac.v3.rbac_pb2 import Permission, Principal
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as net_rbac_pb2
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2
from envoy.type.matcher.v3 import path_pb2, string_pb2, value_pb2

from pilotfish.api.security import (
    AuthorizationPolicySpec,
    Operation,
    RequestAuthenticationSpec,
    Rule,
    Source,
)
from pilotfish.model.config import PolicyConfig
from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext
from pilotfish.translate.authz_matchers import (
    JWT_AUTHN_FILTER,
    JWT_PAYLOAD_KEY,
    Unsupported,
    bracket_name,
    cidr,
    glob,
    header_matcher,
    host_matcher,
    jwt_claim_matcher,
    metadata_matcher,
    parse_claim_path,
    re2_escape,
    regex,
    request_principal,
)
from pilotfish.translate.common import pack

__all__ = [
    "JWT_AUTHN_FILTER",
    "JWT_PAYLOAD_KEY",
    "applicable",
    "http_rbac_filters",
    "network_rbac_filters",
    "policy_applies",
    "request_principal",
    "rule_policy",
]

log = logging.getLogger(__name__)

RBAC_HTTP_FILTER = "envoy.filters.http.rbac"
RBAC_NETWORK_FILTER = "envoy.filters.network.rbac"
TCP_STAT_PREFIX = "tcp."
DRY_RUN_ANNOTATION = "istio.io/dry-run"
CUSTOM_DENY_POLICY = "default-deny-all-due-to-unsupported-CUSTOM-action"

Action = rbac_pb2.RBAC.Action
AuthorizationPolicy = PolicyConfig[AuthorizationPolicySpec]
#: The policies that select workloads the same way (``selector``, ``targetRef(s)``).
Scoped = TypeVar("Scoped", AuthorizationPolicySpec, RequestAuthenticationSpec)

# ---- which policies apply -----------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def warn_once(key: str, revision: int, message: str) -> None:
    """Log ``message`` once per resource revision (translation runs for every proxy)."""
    log.warning("%s: %s", key, message)


def policy_applies(policy: PolicyConfig[Scoped], proxy: Proxy, root_namespace: str) -> bool:
    """Istio's scope rule for AuthorizationPolicy/RequestAuthentication."""
    spec = policy.spec
    if spec.targetRef is not None or spec.targetRefs:
        warn_once(
            f"{policy.kind} {policy.namespace}/{policy.name}",
            policy.revision,
            "spec.targetRef(s): policies attached to a Service or Gateway are for waypoints and "
            "Gateway API gateways, not supported here; the policy is ignored",
        )
        return False
    if policy.namespace not in (root_namespace, proxy.namespace):
        return False
    labels = spec.selector.matchLabels if spec.selector is not None else {}
    return all(proxy.labels.get(k) == v for k, v in labels.items())


def applicable(
    push: PushContext, proxy: Proxy, policies: Sequence[PolicyConfig[Scoped]]
) -> list[PolicyConfig[Scoped]]:
    """Those of ``policies`` that apply to ``proxy``, ordered by namespace and name."""
    root = push.settings.root_namespace
    found = [p for p in policies if policy_applies(p, proxy, root)]
    return sorted(found, key=lambda p: (p.namespace, p.name))


# ---- keys -> Envoy matchers ---------------------------------------------------------------------


HTTP_ONLY_KEYS = frozenset({"request.host", "request.method", "request.path"})
HTTP_ONLY_PREFIXES = ("request.headers", "request.auth.")

#: Source fields -> attribute keys; operation fields -> attribute keys (Istio's naming).
SOURCE_KEYS = {
    "principals": "source.principal",
    "requestPrincipals": "request.auth.principal",
    "namespaces": "source.namespace",
    "ipBlocks": "source.ip",
    "remoteIpBlocks": "remote.ip",
    "serviceAccounts": "source.serviceAccount",
    "trustDomains": "source.trustDomain",
}
OPERATION_KEYS = {
    "hosts": "request.host",
    "ports": "destination.port",
    "methods": "request.method",
    "paths": "request.path",
}
PERMISSION_KEYS = frozenset(
    {
        "request.host",
        "request.method",
        "request.path",
        "destination.port",
        "destination.ip",
        "connection.sni",
    }
)


@dataclass(frozen=True)
class Context:
    """What a rule is generated for: the chain's protocol and workload port."""

    for_tcp: bool
    port: int | None
    policy_namespace: str = "default"


def _is_permission_key(key: str) -> bool:
    return key in PERMISSION_KEYS or key.startswith("experimental.envoy.filters.")


def _check_http(key: str, ctx: Context) -> None:
    if ctx.for_tcp and (key in HTTP_ONLY_KEYS or key.startswith(HTTP_ONLY_PREFIXES)):
        raise Unsupported(f"{key} is HTTP only")


def _always(matches: bool) -> Permission:
    return Permission(any=True) if matches else Permission(not_rule=Permission(any=True))


def _port(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise Unsupported(f"bad port {value}")
    return int(value)


def permission_for(key: str, value: str, ctx: Context) -> Permission:
    _check_http(key, ctx)
    if key == "request.host":
        return Permission(header=host_matcher(value))
    if key == "request.method":
        return Permission(header=header_matcher(":method", value))
    if key == "request.path":
        if "{*}" in value or "{**}" in value:
            template = value.replace("{**}", "**").replace("{*}", "*")
            return Permission(
                uri_template=extension_pb2.TypedExtensionConfig(
                    name="uri-template",
                    typed_config=pack(
                        uri_template_match_pb2.UriTemplateMatchConfig(path_template=template)
                    ),
                )
            )
        return Permission(url_path=path_pb2.PathMatcher(path=glob(value)))
    if key == "destination.port":
        if ctx.port is not None:
            return _always(_port(value) == ctx.port)
        return Permission(destination_port=_port(value))
    if key == "destination.ip":
        return Permission(destination_ip=cidr(value))
    if key == "connection.sni":
        return Permission(requested_server_name=glob(value))
    if key.startswith("experimental.envoy.filters."):
        filter_name, _, rest = key[len("experimental.") :].partition("[")
        if not rest.endswith("]") or len(rest) < 2:
            raise Unsupported(f"bad key {key}: expected experimental.envoy.filters.NAME[key]")
        if value.startswith("[") and value.endswith("]"):
            vm = value_pb2.ValueMatcher(
                list_match=value_pb2.ListMatcher(
                    one_of=value_pb2.ValueMatcher(string_match=glob(value[1:-1]))
                )
            )
        else:
            vm = value_pb2.ValueMatcher(string_match=glob(value))
        return Permission(metadata=metadata_matcher(filter_name, [rest[:-1]], vm))
    raise Unsupported(f"unknown attribute {key}")


def _service_account(value: str, ctx: Context) -> string_pb2.StringMatcher:
    ns, sep, sa = value.partition("/")
    if not sep:
        ns, sa = ctx.policy_namespace, value
    return regex(f"spiffe://[^/]+/ns/{re2_escape(ns)}/sa/{re2_escape(sa)}")


def principal_for(key: str, value: str, ctx: Context) -> Principal:
    _check_http(key, ctx)
    authenticated = rbac_pb2.Principal.Authenticated
    if key == "source.principal":
        return Principal(authenticated=authenticated(principal_name=glob(value, "spiffe://")))
    if key == "source.namespace":
        pattern = f".*/ns/{re2_escape(value).replace(chr(92) + '*', '.*')}/.*"
        return Principal(authenticated=authenticated(principal_name=regex(pattern)))
    if key == "source.serviceAccount":
        return Principal(authenticated=authenticated(principal_name=_service_account(value, ctx)))
    if key == "source.trustDomain":
        pattern = f"spiffe://{re2_escape(value).replace(chr(92) + '*', '.*')}/.*"
        return Principal(authenticated=authenticated(principal_name=regex(pattern)))
    if key == "source.ip":
        return Principal(direct_remote_ip=cidr(value))
    if key == "remote.ip":
        return Principal(remote_ip=cidr(value))
    if key == "request.auth.principal":
        return request_principal(value)
    if key == "request.auth.audiences":
        return Principal(metadata=jwt_claim_matcher(["aud"], value))
    if key == "request.auth.presenter":
        return Principal(metadata=jwt_claim_matcher(["azp"], value))
    if key.startswith("request.auth.claims"):
        return Principal(metadata=jwt_claim_matcher(parse_claim_path(key), value))
    if key.startswith("request.headers"):
        return Principal(header=header_matcher(bracket_name(key, "request.headers"), value))
    raise Unsupported(f"unknown attribute {key}")


# ---- rules -> RBAC policies ---------------------------------------------------------------------

#: (attribute key, values, notValues)
Entry = tuple[str, list[str], list[str]]


def _entries(fields: Source | Operation, keys: dict[str, str]) -> list[Entry]:
    """``(key, values, notValues)`` of each field pair (``principals``/``notPrincipals``...)
    that is written."""
    out = []
    for field, key in keys.items():
        not_field = "not" + field[0].upper() + field[1:]
        values, not_values = list(getattr(fields, field)), list(getattr(fields, not_field))
        if values or not_values:
            out.append((key, values, not_values))
    return out


def _group(
    entries: Iterable[Entry], ctx: Context, action: int, build: Any
) -> list[tuple[list[Any], list[Any]]]:
    """Per entry (matchers for values, matchers for notValues). An entry Envoy cannot match
    raises for ALLOW (the rule is dropped) and is left out otherwise (a wider rule)."""
    out = []
    for key, values, not_values in entries:
        try:
            out.append(
                ([build(key, v, ctx) for v in values], [build(key, v, ctx) for v in not_values])
            )
        except Unsupported:
            if action == Action.ALLOW:
                raise
    return out


def permission(entries: Iterable[Entry], ctx: Context, action: int) -> Permission:
    """AND over entries of (OR over values, NOT(OR over notValues))."""
    parts: list[Permission] = []
    for ors, nots in _group(entries, ctx, action, permission_for):
        if ors:
            parts.append(
                ors[0] if len(ors) == 1 else Permission(or_rules=Permission.Set(rules=ors))
            )
        if nots:
            one = nots[0] if len(nots) == 1 else Permission(or_rules=Permission.Set(rules=nots))
            parts.append(Permission(not_rule=one))
    if not parts:
        return Permission(any=True)
    return Permission(and_rules=Permission.Set(rules=parts))


def principal(entries: Iterable[Entry], ctx: Context, action: int) -> Principal:
    """AND over entries of (OR over values, NOT(OR over notValues))."""
    parts: list[Principal] = []
    for ors, nots in _group(entries, ctx, action, principal_for):
        if ors:
            parts.append(ors[0] if len(ors) == 1 else Principal(or_ids=Principal.Set(ids=ors)))
        if nots:
            one = nots[0] if len(nots) == 1 else Principal(or_ids=Principal.Set(ids=nots))
            parts.append(Principal(not_id=one))
    if not parts:
        return Principal(any=True)
    return Principal(and_ids=Principal.Set(ids=parts))


def rule_policy(rule: Rule, ctx: Context, action: int) -> rbac_pb2.Policy | None:
    """One Istio rule as an RBAC policy; None when an ALLOW rule cannot match here."""
    when = [(c.key or "", list(c.values), list(c.notValues)) for c in rule.when]
    when_perm = [e for e in when if _is_permission_key(e[0])]
    when_prin = [e for e in when if not _is_permission_key(e[0])]
    tos: list[Operation | None] = [t.operation for t in rule.to] or [None]
    froms: list[Source | None] = [f.source for f in rule.from_] or [None]
    try:
        permissions = [
            permission(
                (_entries(op, OPERATION_KEYS) if op is not None else []) + when_perm, ctx, action
            )
            for op in tos
        ]
        principals = [
            principal(
                (_entries(src, SOURCE_KEYS) if src is not None else []) + when_prin, ctx, action
            )
            for src in froms
        ]
    except Unsupported:
        return None
    return rbac_pb2.Policy(permissions=permissions, principals=principals)


@dataclass(frozen=True)
class Rules:
    """The RBAC of one action: enforced rules and dry-run (shadow) rules, either may be None."""

    action: str
    rules: rbac_pb2.RBAC | None
    shadow: rbac_pb2.RBAC | None


ACTIONS = {"AUDIT": Action.LOG, "DENY": Action.DENY, "ALLOW": Action.ALLOW}


def build_rules(policies: Sequence[AuthorizationPolicy], action: str, ctx: Context) -> Rules:
    """The RBAC for the policies of one action (``ALLOW``, ``DENY`` or ``AUDIT``)."""
    envoy_action = ACTIONS[action]
    enforced: rbac_pb2.RBAC | None = None
    shadow: rbac_pb2.RBAC | None = None
    for obj in policies:
        spec = obj.spec
        if (spec.action or "ALLOW") != action:
            continue
        dry_run = obj.annotations.get(DRY_RUN_ANNOTATION, "").lower() == "true"
        if dry_run:
            shadow = shadow or rbac_pb2.RBAC(action=envoy_action)
            target = shadow
        else:
            enforced = enforced or rbac_pb2.RBAC(action=envoy_action)
            target = enforced
        rule_ctx = Context(ctx.for_tcp, ctx.port, obj.namespace)
        for i, rule in enumerate(spec.rules):
            policy = rule_policy(rule, rule_ctx, envoy_action)
            name = f"ns[{obj.namespace}]-policy[{obj.name}]-rule[{i}]"
            if policy is None:
                log.debug("%s skipped: it needs HTTP fields on a TCP port", name)
                continue
            target.policies[name].CopyFrom(policy)
    if action != "ALLOW":
        # A DENY/AUDIT filter with no rule left would do nothing.
        enforced = enforced if enforced is not None and enforced.policies else None
        shadow = shadow if shadow is not None and shadow.policies else None
    return Rules(action, enforced, shadow)


def _custom_deny_all(policies: Sequence[AuthorizationPolicy]) -> rbac_pb2.RBAC | None:
    custom = [p for p in policies if p.spec.action == "CUSTOM"]
    for obj in custom:
        warn_once(
            f"AuthorizationPolicy {obj.namespace}/{obj.name}",
            obj.revision,
            "spec.action: CUSTOM: no usable extension provider; "
            "requests to the selected workloads are denied",
        )
    if not custom:
        return None
    rbac = rbac_pb2.RBAC(action=Action.DENY)
    rbac.policies[CUSTOM_DENY_POLICY].CopyFrom(
        rbac_pb2.Policy(permissions=[Permission(any=True)], principals=[Principal(any=True)])
    )
    return rbac


def all_rules(
    policies: Sequence[AuthorizationPolicy], ctx: Context, custom_handled: bool = False
) -> list[Rules]:
    """In evaluation order: CUSTOM (deny-all, unless ``custom_handled``: an external
    authorizer checks them, see ``extauthz``), AUDIT, DENY, ALLOW; only those that do
    something."""
    out = []
    custom = None if custom_handled else _custom_deny_all(policies)
    if custom is not None:
        out.append(Rules("CUSTOM", custom, None))
    for action in ("AUDIT", "DENY", "ALLOW"):
        built = build_rules(policies, action, ctx)
        if built.rules is not None or built.shadow is not None:
            out.append(built)
    return out


def _shadow_prefix(action: str) -> str:
    return f"istio_dry_run_{action.lower()}_"


# ---- filters ------------------------------------------------------------------------------------


def _cache_key(proxy: Proxy, port: int | None, tcp: bool) -> Hashable:
    return ("authz", proxy.namespace, tuple(sorted(proxy.labels.items())), port, tcp)


def http_rbac_filters(
    push: PushContext, proxy: Proxy, port: int | None, custom_handled: bool = False
) -> list[hcm_pb2.HttpFilter]:
    """RBAC HTTP filters for ``proxy`` serving workload port ``port``, in evaluation order.
    ``custom_handled``: the CUSTOM policies have their ext_authz filter (no deny-all)."""

    def compute() -> list[hcm_pb2.HttpFilter]:
        policies = applicable(push, proxy, push.authorization_policies)
        out = []
        for r in all_rules(policies, Context(False, port), custom_handled):
            cfg = http_rbac_pb2.RBAC()
            if r.rules is not None:
                cfg.rules.CopyFrom(r.rules)
            if r.shadow is not None:
                cfg.shadow_rules.CopyFrom(r.shadow)
                cfg.shadow_rules_stat_prefix = _shadow_prefix(r.action)
            out.append(hcm_pb2.HttpFilter(name=RBAC_HTTP_FILTER, typed_config=pack(cfg)))
        return out

    return push.memo((_cache_key(proxy, port, False), custom_handled), compute)


def network_rbac_filters(
    push: PushContext, proxy: Proxy, port: int | None, custom_handled: bool = False
) -> list[lc.Filter]:
    """RBAC network filters for a TCP chain of ``proxy`` serving ``port`` (before tcp_proxy).
    ``custom_handled``: the CUSTOM policies have their ext_authz network filter, or are left
    out of TCP chains (HTTP providers, as Istio): no deny-all."""

    def compute() -> list[lc.Filter]:
        policies = applicable(push, proxy, push.authorization_policies)
        out = []
        for r in all_rules(policies, Context(True, port), custom_handled):
            cfg = net_rbac_pb2.RBAC(stat_prefix=TCP_STAT_PREFIX)
            if r.rules is not None:
                cfg.rules.CopyFrom(r.rules)
            if r.shadow is not None:
                cfg.shadow_rules.CopyFrom(r.shadow)
                cfg.shadow_rules_stat_prefix = _shadow_prefix(r.action)
            out.append(lc.Filter(name=RBAC_NETWORK_FILTER, typed_config=pack(cfg)))
        return out

    return push.memo((_cache_key(proxy, port, True), custom_handled), compute)
