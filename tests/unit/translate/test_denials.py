"""Denials that name their policy: the local reply mappers of the inbound HCM (off by default)."""

from __future__ import annotations

from typing import Any

from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2

from pilotfish.translate import generate
from pilotfish.translate.denials import DENIED_BY_HEADER
from tests.unit.translate.fixtures import (
    BOOKINFO_CORE,
    listener,
    push_for,
    sidecar_node,
    unpack_hcm,
)

REVIEWS = sidecar_node(app="reviews", ip="10.1.0.12", labels={"app": "reviews", "version": "v1"})
NAMED = {
    "apiVersion": "install.istio.io/v1alpha1",
    "kind": "IstioOperator",
    "metadata": {"name": "named", "namespace": "istio-system"},
    "spec": {"meshConfig": {"namePolicyInDenials": True}},
}
POLICIES = [
    {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
     "metadata": {"name": "deny-admin", "namespace": "default"},
     "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]},
                                          {"to": [{"operation": {"methods": ["DELETE"]}}]}]}},
    {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
     "metadata": {"name": "allow-get", "namespace": "default"},
     "spec": {"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}},
]  # fmt: skip


def _inbound_hcm(docs: list[dict[str, Any]]) -> Any:
    push = push_for(BOOKINFO_CORE + docs)
    return unpack_hcm(listener(generate(REVIEWS, push), "virtualInbound").filter_chains[0])


def _conditions(hcm: Any) -> list[str]:
    out = []
    for m in hcm.local_reply_config.mappers:
        cfg = cel_pb2.ExpressionFilter()
        assert m.filter.extension_filter.typed_config.Unpack(cfg)
        out.append(cfg.expression)
    return out


def test_off_by_default_no_local_reply_config() -> None:
    assert not _inbound_hcm(POLICIES).HasField("local_reply_config")


def test_one_mapper_per_deny_rule_then_the_allow_policies() -> None:
    hcm = _inbound_hcm([*POLICIES, NAMED])
    details = "response.code_details == 'rbac_access_denied_matched_policy[{}]'"
    assert _conditions(hcm) == [
        details.format("ns[default]-policy[deny-admin]-rule[0]"),
        details.format("ns[default]-policy[deny-admin]-rule[1]"),
        details.format("none"),
    ]
    bodies = [m.body_format_override.text_format_source.inline_string
              for m in hcm.local_reply_config.mappers]  # fmt: skip
    assert bodies == [
        "RBAC: access denied by default/deny-admin (rule 0)",
        "RBAC: access denied by default/deny-admin (rule 1)",
        "RBAC: access denied: no ALLOW policy matched (default/allow-get)",
    ]
    headers = [m.headers_to_add[0].header for m in hcm.local_reply_config.mappers]
    assert {h.key for h in headers} == {DENIED_BY_HEADER}
    assert headers[1].value == "default/deny-admin (rule 1)"


def test_no_policy_no_mapper_even_when_on() -> None:
    assert not _inbound_hcm([NAMED]).HasField("local_reply_config")
