"""Denials that name their policy: the mesh config's ``namePolicyInDenials`` (off by default, as
it tells callers the names of the policies that refused them).

With it on, an inbound (or gateway) HCM whose workload has AuthorizationPolicies or
RequestAuthentications gets a ``local_reply_config`` whose mappers rewrite the security
filters' local replies. What each mapper can see when Envoy (1.40, measured) builds the reply:

- the RBAC filter's denial carries its response code details,
  ``rbac_access_denied_matched_policy[ns[NS]-policy[NAME]-rule[I]]`` for a DENY (or
  fail-closed CUSTOM) rule, ``...[none]`` when the ALLOW filter matched nothing; its dynamic
  metadata is written only after the reply, so a metadata filter cannot see it. One mapper per
  DENY rule (a CEL filter on ``response.code_details``) answers ``RBAC: access denied by
  NS/NAME (rule I)``; the ``[none]`` mapper names the ALLOW policies none of which matched.
- ``jwt_authn`` writes each provider's status under the key its ``failed_status_in_metadata``
  names (``authn`` sets :func:`authn.jwt_failure_key` with the setting on) before it replies:
  the provider whose status is not "issuer is not configured" is the one that rejected the
  token, and its mapper names the RequestAuthentication(s) that declared that issuer, quoting
  Envoy's reason. A token whose issuer no provider knows is answered naming the
  RequestAuthentications that apply.

Each rewritten reply keeps its status and gets the header :data:`DENIED_BY_HEADER` with the
same text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from envoy.config.accesslog.v3 import accesslog_pb2 as al
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext
from pilotfish.translate.authn import provider_owners
from pilotfish.translate.authz import (
    CUSTOM_DENY_POLICY,
    DRY_RUN_ANNOTATION,
    JWT_AUTHN_FILTER,
    Context,
    all_rules,
    applicable,
)
from pilotfish.translate.common import pack

__all__ = ["DENIED_BY_HEADER", "denial_replies"]

#: The response header a named denial carries (the same text as its body).
DENIED_BY_HEADER = "x-pilotfish-denied-by"
_RULE_ID = re.compile(r"^ns\[(?P<ns>[^\]]*)\]-policy\[(?P<name>[^\]]*)\]-rule\[(?P<rule>\d+)\]$")


CEL_FILTER = "envoy.access_loggers.extension_filters.cel"
#: jwt_authn's status of a provider whose issuer is not the token's.
_UNKNOWN_ISSUER = "Jwt issuer is not configured"


def _literal(text: str) -> str:
    """``text`` for Envoy's format language (a percent sign written twice)."""
    return text.replace("%", "%%")


def _cel(expression: str) -> al.AccessLogFilter:
    return al.AccessLogFilter(
        extension_filter=al.ExtensionFilter(
            name=CEL_FILTER, typed_config=pack(cel_pb2.ExpressionFilter(expression=expression))
        )
    )


def _quoted(text: str) -> str:
    """A CEL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _mapper(condition: str, body: str, header: str) -> hcm_pb2.ResponseMapper:
    """Replies matching the CEL ``condition`` get ``body`` (format language) and the header."""
    return hcm_pb2.ResponseMapper(
        filter=_cel(condition),
        body_format_override=substitution_format_string_pb2.SubstitutionFormatString(
            text_format_source=base_pb2.DataSource(inline_string=body)
        ),
        headers_to_add=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=DENIED_BY_HEADER, value=_literal(header)),
                append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        ],
    )


def _rbac_denied(rule_id: str) -> str:
    return f"response.code_details == {_quoted(f'rbac_access_denied_matched_policy[{rule_id}]')}"


def _jwt_rejected_by(key: str) -> str:
    status = f"metadata.filter_metadata[{_quoted(JWT_AUTHN_FILTER)}]"
    return (
        f"has({status}.{key}) && {status}.{key}.message != {_quoted(_UNKNOWN_ISSUER)}"
        " && response.code_details.startsWith('jwt_authn_access_denied')"
    )


def _rule_label(rule_id: str, custom: Sequence[str]) -> str:
    if rule_id == CUSTOM_DENY_POLICY:
        return f"{', '.join(custom)} (CUSTOM: no usable extension provider)"
    m = _RULE_ID.match(rule_id)
    return f"{m['ns']}/{m['name']} (rule {m['rule']})" if m else rule_id


def denial_replies(
    push: PushContext, proxy: Proxy, port: int | None
) -> hcm_pb2.LocalReplyConfig | None:
    """The local reply mappers that name the policy behind a denial on an HCM of ``proxy``
    serving ``port`` (None when the setting is off or no policy applies)."""
    if not push.mesh_config.namePolicyInDenials:
        return None

    def compute() -> hcm_pb2.LocalReplyConfig | None:
        mappers: list[hcm_pb2.ResponseMapper] = []
        policies = applicable(push, proxy, push.authorization_policies)
        enforced = [
            p for p in policies if p.annotations.get(DRY_RUN_ANNOTATION, "").lower() != "true"
        ]
        custom = [f"{p.namespace}/{p.name}" for p in enforced if p.spec.action == "CUSTOM"]
        for r in all_rules(policies, Context(False, port)):
            if r.rules is None:
                continue
            if r.action in ("CUSTOM", "DENY"):
                for rule_id in sorted(r.rules.policies):
                    label = _rule_label(rule_id, custom)
                    body = _literal(f"RBAC: access denied by {label}")
                    mappers.append(_mapper(_rbac_denied(rule_id), body, label))
            elif r.action == "ALLOW":
                allow = [
                    f"{p.namespace}/{p.name}"
                    for p in enforced
                    if (p.spec.action or "ALLOW") == "ALLOW"
                ]
                label = f"no ALLOW policy matched ({', '.join(allow)})"
                body = _literal(f"RBAC: access denied: {label}")
                mappers.append(_mapper(_rbac_denied("none"), body, label))
        providers = provider_owners(push, proxy)
        for key, issuer, owners in providers:
            label = f"RequestAuthentication {', '.join(owners)} (issuer {issuer})"
            reason = f"%DYNAMIC_METADATA({JWT_AUTHN_FILTER}:{key}:message)%"
            body = f"{reason}: {_literal(label)}"
            mappers.append(_mapper(_jwt_rejected_by(key), body, label))
        if providers:
            owners = sorted({o for _, _, names in providers for o in names})
            label = f"no RequestAuthentication declares the token's issuer ({', '.join(owners)})"
            condition = "response.code_details == " + _quoted(
                "jwt_authn_access_denied{Jwt_issuer_is_not_configured}"
            )
            mappers.append(
                _mapper(condition, _literal(f"Jwt issuer is not configured: {label}"), label)
            )
        if not mappers:
            return None
        return hcm_pb2.LocalReplyConfig(mappers=mappers)

    key = ("denials", proxy.namespace, tuple(sorted(proxy.labels.items())), port)
    result: hcm_pb2.LocalReplyConfig | None = push.memo(key, compute)
    return result
