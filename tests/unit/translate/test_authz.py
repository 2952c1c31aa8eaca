"""AuthorizationPolicy -> Envoy RBAC: scope, actions and their order, every source, operation
and ``when`` field, HTTP-only fields on TCP chains, dry-run."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as net_rbac_pb2
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2
from google.protobuf import json_format

from pilotfish.model.proxy import Proxy
from pilotfish.translate import LISTENER_TYPE, generate
from pilotfish.translate.authz import (
    http_rbac_filters,
    network_rbac_filters,
    request_principal,
)
from tests.unit.translate.fixtures import (
    BOOKINFO_CORE,
    from_yaml,
    listener,
    pod,
    push_for,
    router_node,
    service,
    sidecar_node,
    unpack_hcm,
)

REVIEWS = sidecar_node(app="reviews", ip="10.1.0.12", labels={"app": "reviews", "version": "v1"})
ALLOW, DENY, LOG = rbac_pb2.RBAC.ALLOW, rbac_pb2.RBAC.DENY, rbac_pb2.RBAC.LOG


def policy(spec: dict[str, Any], name: str = "p", ns: str = "default", **meta: Any) -> dict:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": ns, **meta},
        "spec": spec,
    }


def rbacs(docs: list[dict], node: Any = REVIEWS, port: int | None = 9080) -> list[Any]:
    """The HTTP RBAC filter configs for ``node`` serving ``port``."""
    push = push_for(BOOKINFO_CORE + docs)
    out = []
    for f in http_rbac_filters(push, Proxy.from_node(node, push), port):
        assert f.name == "envoy.filters.http.rbac"
        cfg = http_rbac_pb2.RBAC()
        assert f.typed_config.Unpack(cfg)
        out.append(cfg)
    return out


def tcp_rbacs(docs: list[dict], port: int | None = 9080) -> list[Any]:
    push = push_for(BOOKINFO_CORE + docs)
    out = []
    for f in network_rbac_filters(push, Proxy.from_node(REVIEWS, push), port):
        assert f.name == "envoy.filters.network.rbac"
        cfg = net_rbac_pb2.RBAC()
        assert f.typed_config.Unpack(cfg)
        assert cfg.stat_prefix == "tcp."
        out.append(cfg)
    return out


def only_rule(spec: dict[str, Any], port: int | None = 9080) -> dict[str, Any]:
    """The one RBAC policy generated for a one-rule ALLOW policy, as a dict."""
    [cfg] = rbacs([policy(spec)], port=port)
    [(name, pol)] = cfg.rules.policies.items()
    assert name == "ns[default]-policy[p]-rule[0]"
    return json_format.MessageToDict(pol)


def rule_with(source: dict | None = None, operation: dict | None = None, when: Any = None) -> dict:
    rule: dict[str, Any] = {}
    if source is not None:
        rule["from"] = [{"source": source}]
    if operation is not None:
        rule["to"] = [{"operation": operation}]
    if when is not None:
        rule["when"] = when
    return {"rules": [rule]}


def principals(source: dict | None = None, when: Any = None) -> list[dict]:
    return only_rule(rule_with(source=source, when=when))["principals"][0]["andIds"]["ids"]


def permissions(operation: dict | None = None, when: Any = None, port: int | None = 9080) -> Any:
    return only_rule(rule_with(operation=operation, when=when), port=port)["permissions"][0][
        "andRules"
    ]["rules"]


# ---- actions and order ------------------------------------------------------------------------


def test_no_policy_no_filter_and_hcm_unchanged() -> None:
    assert rbacs([]) == []
    push = push_for(BOOKINFO_CORE)
    hcm = unpack_hcm(listener(generate(REVIEWS, push), "virtualInbound").filter_chains[0])
    assert [f.name for f in hcm.http_filters][-1] == "envoy.filters.http.router"
    assert "envoy.filters.http.rbac" not in [f.name for f in hcm.http_filters]


def test_empty_spec_is_allow_with_no_policy_deny_all() -> None:
    [cfg] = rbacs([policy({})])
    assert cfg.rules.action == ALLOW
    assert len(cfg.rules.policies) == 0


def test_empty_rule_allows_everything() -> None:
    pol = only_rule({"rules": [{}]})
    assert pol == {"permissions": [{"any": True}], "principals": [{"any": True}]}


def test_filters_in_istio_order_custom_audit_deny_allow() -> None:
    docs = [
        policy({"action": "ALLOW", "rules": [{}]}, "a"),
        policy({"action": "DENY", "rules": [{}]}, "d"),
        policy({"action": "AUDIT", "rules": [{}]}, "au"),
        policy({"action": "CUSTOM", "provider": {"name": "ext"}, "rules": [{}]}, "c"),
    ]
    got = rbacs(docs)
    assert [c.rules.action for c in got] == [DENY, LOG, DENY, ALLOW]
    assert list(got[0].rules.policies) == ["default-deny-all-due-to-unsupported-CUSTOM-action"]
    assert list(got[1].rules.policies) == ["ns[default]-policy[au]-rule[0]"]
    assert list(got[2].rules.policies) == ["ns[default]-policy[d]-rule[0]"]
    assert list(got[3].rules.policies) == ["ns[default]-policy[a]-rule[0]"]


def test_custom_fails_closed_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    doc = policy({"action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{}]}, "ext-z")
    with caplog.at_level("WARNING"):
        [cfg] = rbacs([doc])
    assert cfg.rules.action == DENY
    [pol] = cfg.rules.policies.values()
    assert json_format.MessageToDict(pol) == {
        "permissions": [{"any": True}],
        "principals": [{"any": True}],
    }
    assert "AuthorizationPolicy default/ext-z" in caplog.text
    assert "CUSTOM: no usable extension provider" in caplog.text


def test_several_policies_and_rules_merge_into_one_filter_per_action() -> None:
    docs = [
        policy({"rules": [{}, {"to": [{"operation": {"methods": ["GET"]}}]}]}, "a1"),
        policy({"rules": [{}]}, "a2"),
    ]
    [cfg] = rbacs(docs)
    assert sorted(cfg.rules.policies) == [
        "ns[default]-policy[a1]-rule[0]",
        "ns[default]-policy[a1]-rule[1]",
        "ns[default]-policy[a2]-rule[0]",
    ]


def test_dry_run_policies_are_shadow_rules() -> None:
    docs = [
        policy({"action": "DENY", "rules": [{}]}, "d", annotations={"istio.io/dry-run": "true"}),
        policy({"rules": [{}]}, "a", annotations={"istio.io/dry-run": "true"}),
    ]
    deny, allow = rbacs(docs)
    assert not deny.HasField("rules") and deny.shadow_rules.action == DENY
    assert deny.shadow_rules_stat_prefix == "istio_dry_run_deny_"
    assert not allow.HasField("rules") and allow.shadow_rules.action == ALLOW
    assert allow.shadow_rules_stat_prefix == "istio_dry_run_allow_"


# ---- scope ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ns", "selector", "applies"),
    [
        ("default", None, True),
        ("default", {"app": "reviews"}, True),
        ("default", {"app": "reviews", "version": "v1"}, True),
        ("default", {"app": "ratings"}, False),
        ("other", None, False),
        ("istio-system", None, True),
        ("istio-system", {"app": "reviews"}, True),
        ("istio-system", {"app": "ratings"}, False),
    ],
)
def test_scope(ns: str, selector: dict | None, applies: bool) -> None:
    spec: dict[str, Any] = {"rules": [{}]}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    assert len(rbacs([policy(spec, ns=ns)])) == (1 if applies else 0)


def test_target_ref_policies_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    spec = {"targetRefs": [{"kind": "Service", "group": "", "name": "reviews"}]}
    with caplog.at_level("WARNING"):
        assert rbacs([policy(spec, "tr")]) == []
    assert "spec.targetRef" in caplog.text and "ignored" in caplog.text


def test_gateway_gets_policies_selecting_its_labels() -> None:
    gw = policy({"selector": {"matchLabels": {"istio": "ingressgateway"}}}, "gw", "istio-system")
    node = router_node()
    assert [c.rules.action for c in rbacs([gw], node, 8080)] == [ALLOW]
    other = policy({"selector": {"matchLabels": {"istio": "egressgateway"}}}, "eg", "istio-system")
    assert rbacs([other], node, 8080) == []


def test_gateway_listener_hcm_carries_rbac() -> None:
    gateway = from_yaml(
        """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
"""
    )
    docs = [*gateway, policy({"action": "DENY", "rules": [{}]}, "deny", "istio-system")]
    push = push_for(BOOKINFO_CORE + docs)
    res = generate(router_node(), push)
    hcm = unpack_hcm(res[LISTENER_TYPE]["0.0.0.0_8080"].filter_chains[0])
    # The policy runs before any routing filter (only the metrics' edge filter comes first).
    names = [f.name for f in hcm.http_filters]
    assert names[:2] == ["envoy.filters.http.header_to_metadata", "envoy.filters.http.rbac"]


# ---- from.source --------------------------------------------------------------------------------


def test_principals_match_the_peer_spiffe_id() -> None:
    src = {"principals": ["cluster.local/ns/default/sa/frontend", "*/sa/admin", "cluster.local/*"]}
    [ids] = principals(src)
    names = [i["authenticated"]["principalName"] for i in ids["orIds"]["ids"]]
    assert names == [
        {"exact": "spiffe://cluster.local/ns/default/sa/frontend"},
        {"safeRegex": {"regex": "spiffe://.*/sa/admin"}},
        {"prefix": "spiffe://cluster.local/"},
    ]
    [ids] = principals({"principals": ["*"]})
    assert ids["authenticated"]["principalName"] == {"safeRegex": {"regex": ".+"}}


def test_not_principals_and_namespaces() -> None:
    got = principals({"notPrincipals": ["cluster.local/ns/x/sa/y"], "namespaces": ["foo", "ba*"]})
    by_kind = {next(iter(g)): g for g in got}
    assert by_kind["notId"]["notId"]["authenticated"]["principalName"] == {
        "exact": "spiffe://cluster.local/ns/x/sa/y"
    }
    regexes = [_regex(i) for i in by_kind["orIds"]["orIds"]["ids"]]
    assert regexes == [".*/ns/foo/.*", ".*/ns/ba.*/.*"]
    [nn] = principals({"notNamespaces": ["prod"]})
    assert nn["notId"]["authenticated"]["principalName"]["safeRegex"]["regex"] == ".*/ns/prod/.*"


def _regex(principal: dict) -> str:
    return str(principal["authenticated"]["principalName"]["safeRegex"]["regex"])


def test_service_accounts_default_to_the_policy_namespace() -> None:
    [ids] = principals({"serviceAccounts": ["frontend", "team/builder"]})
    regexes = [_regex(i) for i in ids["orIds"]["ids"]]
    assert regexes == [
        "spiffe://[^/]+/ns/default/sa/frontend",
        "spiffe://[^/]+/ns/team/sa/builder",
    ]


def test_trust_domains_match_the_peer_spiffe_id() -> None:
    # Istio 1.28's Source.trustDomains / notTrustDomains: the trust domain of the peer's
    # certificate, spiffe://<trust domain>/...; "*" globs as in the other source fields.
    [ids] = principals({"trustDomains": ["cluster.local", "corp-*.example"]})
    regexes = [_regex(i) for i in ids["orIds"]["ids"]]
    assert regexes == ["spiffe://cluster\\.local/.*", "spiffe://corp-.*\\.example/.*"]
    [nt] = principals({"notTrustDomains": ["evil.org"]})
    assert nt["notId"]["authenticated"]["principalName"]["safeRegex"]["regex"] == (
        "spiffe://evil\\.org/.*"
    )


def test_ip_blocks_and_remote_ip_blocks() -> None:
    got = principals(
        {
            "ipBlocks": ["10.0.0.0/8", "192.168.1.7"],
            "notIpBlocks": ["10.9.0.0/16"],
            "remoteIpBlocks": ["2001:db8::/32"],
            "notRemoteIpBlocks": ["::1"],
        }
    )
    ip, not_ip, remote, not_remote = got
    assert [i["directRemoteIp"] for i in ip["orIds"]["ids"]] == [
        {"addressPrefix": "10.0.0.0", "prefixLen": 8},
        {"addressPrefix": "192.168.1.7", "prefixLen": 32},
    ]
    assert not_ip["notId"]["directRemoteIp"] == {"addressPrefix": "10.9.0.0", "prefixLen": 16}
    assert remote["remoteIp"] == {"addressPrefix": "2001:db8::", "prefixLen": 32}
    assert not_remote["notId"]["remoteIp"] == {"addressPrefix": "::1", "prefixLen": 128}


def _claims(p: Any) -> dict[str, Any]:
    """A request principal matcher as {claim: string matcher}."""
    out = {}
    for i in json_format.MessageToDict(p)["andIds"]["ids"]:
        m = i["metadata"]
        assert m["filter"] == "envoy.filters.http.jwt_authn"
        assert m["path"][0] == {"key": "payload"}
        out[m["path"][1]["key"]] = m["value"]["stringMatch"]
    return out


@pytest.mark.parametrize(
    ("value", "iss", "sub"),
    [
        ("https://a.example.com/alice", {"exact": "https://a.example.com"}, {"exact": "alice"}),
        (
            "https://a.example.com/*",
            {"exact": "https://a.example.com"},
            {"safeRegex": {"regex": ".+"}},
        ),
        ("https://a.example.com/al*", {"exact": "https://a.example.com"}, {"prefix": "al"}),
        ("*/alice", {"safeRegex": {"regex": ".+"}}, {"exact": "alice"}),
        ("*.example.com/alice", {"suffix": ".example.com"}, {"exact": "alice"}),
        ("*", {"safeRegex": {"regex": ".+"}}, {"safeRegex": {"regex": ".+"}}),
        ("issuer-only*", {"prefix": "issuer-only"}, {"safeRegex": {"regex": ".+"}}),
    ],
)
def test_request_principal_splits_issuer_and_subject(value: str, iss: dict, sub: dict) -> None:
    assert _claims(request_principal(value)) == {"iss": iss, "sub": sub}


def test_request_principals_and_not_request_principals() -> None:
    got = principals({"requestPrincipals": ["i/s"], "notRequestPrincipals": ["i/bad"]})
    assert _claims(json_format.ParseDict(got[0], rbac_pb2.Principal())) == {
        "iss": {"exact": "i"},
        "sub": {"exact": "s"},
    }
    assert _claims(json_format.ParseDict(got[1]["notId"], rbac_pb2.Principal()))["sub"] == {
        "exact": "bad"
    }


# ---- to.operation -------------------------------------------------------------------------------


def test_methods_and_not_methods() -> None:
    methods, not_methods = permissions({"methods": ["GET", "POST"], "notMethods": ["DELETE"]})
    assert [r["header"] for r in methods["orRules"]["rules"]] == [
        {"name": ":method", "stringMatch": {"exact": "GET"}},
        {"name": ":method", "stringMatch": {"exact": "POST"}},
    ]
    assert not_methods["notRule"]["header"]["stringMatch"] == {"exact": "DELETE"}


def test_paths_exact_prefix_suffix_any() -> None:
    [paths] = permissions({"paths": ["/exact", "/api/*", "*.html", "*"]})
    assert [r["urlPath"]["path"] for r in paths["orRules"]["rules"]] == [
        {"exact": "/exact"},
        {"prefix": "/api/"},
        {"suffix": ".html"},
        {"safeRegex": {"regex": ".+"}},
    ]
    [not_paths] = permissions({"notPaths": ["/admin*"]})
    assert not_paths["notRule"]["urlPath"]["path"] == {"prefix": "/admin"}


def test_path_templates_use_the_uri_template_matcher() -> None:
    [paths] = permissions({"paths": ["/api/{*}/items", "/api/{**}"]})
    templates = []
    for r in paths["orRules"]["rules"]:
        cfg = json_format.ParseDict(r["uriTemplate"], rbac_pb2.Permission().uri_template)
        m = uri_template_match_pb2.UriTemplateMatchConfig()
        assert cfg.typed_config.Unpack(m)
        templates.append(m.path_template)
    assert templates == ["/api/*/items", "/api/**"]


def test_hosts_ignore_case_and_port() -> None:
    hosts, not_hosts = permissions({"hosts": ["a.example.com", "*.b.com", "c*"], "notHosts": ["*"]})
    assert [r["header"] for r in hosts["orRules"]["rules"]] == [
        {
            "name": ":authority",
            "stringMatch": {"safeRegex": {"regex": "(?i)a\\.example\\.com(:[0-9]+)?"}},
        },
        {"name": ":authority", "stringMatch": {"suffix": ".b.com", "ignoreCase": True}},
        {"name": ":authority", "stringMatch": {"prefix": "c", "ignoreCase": True}},
    ]
    assert not_hosts["notRule"]["header"] == {"name": ":authority", "presentMatch": True}


def test_ports_are_decided_for_the_chain_port() -> None:
    [ports] = permissions({"ports": ["9080", "8080"]}, port=9080)
    assert ports["orRules"]["rules"] == [{"any": True}, {"notRule": {"any": True}}]
    [ports] = permissions({"ports": ["8080"]}, port=9080)
    assert ports == {"notRule": {"any": True}}
    [not_ports] = permissions({"notPorts": ["9080"]}, port=9080)
    assert not_ports == {"notRule": {"any": True}}
    # Without a known chain port: Envoy's destination port.
    [ports] = permissions({"ports": ["8080"]}, port=None)
    assert ports == {"destinationPort": 8080}


# ---- when -------------------------------------------------------------------------------------


def test_when_conditions_on_the_principal_side() -> None:
    got = principals(
        when=[
            {"key": "request.headers[x-user]", "values": ["alice", "*bob"], "notValues": ["eve"]},
            {"key": "request.headers[x-any]", "values": ["*"]},
            {"key": "source.ip", "values": ["10.1.2.3"]},
            {"key": "remote.ip", "values": ["10.0.0.0/8"]},
            {"key": "source.namespace", "values": ["prod"]},
            {"key": "source.principal", "values": ["cluster.local/ns/a/sa/b"]},
            {"key": "source.serviceAccount", "values": ["other/sa1"]},
            {"key": "request.auth.principal", "values": ["iss/sub"]},
        ]
    )
    assert [h["header"] for h in got[0]["orIds"]["ids"]] == [
        {"name": "x-user", "stringMatch": {"exact": "alice"}},
        {"name": "x-user", "stringMatch": {"suffix": "bob"}},
    ]
    assert got[1]["notId"]["header"] == {"name": "x-user", "stringMatch": {"exact": "eve"}}
    assert got[2]["header"] == {"name": "x-any", "presentMatch": True}
    assert got[3]["directRemoteIp"]["addressPrefix"] == "10.1.2.3"
    assert got[4]["remoteIp"] == {"addressPrefix": "10.0.0.0", "prefixLen": 8}
    assert got[5]["authenticated"]["principalName"]["safeRegex"]["regex"] == ".*/ns/prod/.*"
    assert got[6]["authenticated"]["principalName"] == {"exact": "spiffe://cluster.local/ns/a/sa/b"}
    assert "ns/other/sa/sa1" in got[7]["authenticated"]["principalName"]["safeRegex"]["regex"]
    assert "andIds" in got[8]


def _claim_matcher(p: dict) -> tuple[list[str], list[dict]]:
    m = p["metadata"]
    assert m["filter"] == "envoy.filters.http.jwt_authn"
    path = [s["key"] for s in m["path"]]
    either = m["value"]["orMatch"]["valueMatchers"]
    return path, either


def test_jwt_claims_audiences_presenter_match_strings_or_lists() -> None:
    got = principals(
        when=[
            {"key": "request.auth.claims[groups]", "values": ["admin"]},
            {"key": "request.auth.claims[realm][role]", "values": ["ops*"]},
            {"key": "request.auth.audiences", "values": ["svc"]},
            {"key": "request.auth.presenter", "values": ["app"]},
        ]
    )
    path, either = _claim_matcher(got[0])
    assert path == ["payload", "groups"]
    assert either == [
        {"listMatch": {"oneOf": {"stringMatch": {"exact": "admin"}}}},
        {"stringMatch": {"exact": "admin"}},
    ]
    path, either = _claim_matcher(got[1])
    assert path == ["payload", "realm", "role"]
    assert either[1] == {"stringMatch": {"prefix": "ops"}}
    assert _claim_matcher(got[2])[0] == ["payload", "aud"]
    assert _claim_matcher(got[3])[0] == ["payload", "azp"]


def test_when_conditions_on_the_permission_side() -> None:
    got = permissions(
        when=[
            {"key": "destination.ip", "values": ["10.1.0.12"]},
            {"key": "destination.port", "values": ["9080"]},
            {"key": "connection.sni", "values": ["*.svc.cluster.local"]},
            {"key": "destination.port", "notValues": ["9080"]},
        ]
    )
    assert got[0]["destinationIp"] == {"addressPrefix": "10.1.0.12", "prefixLen": 32}
    assert got[1] == {"any": True}
    assert got[2]["requestedServerName"] == {"suffix": ".svc.cluster.local"}
    assert got[3] == {"notRule": {"any": True}}


def test_several_from_and_to_are_alternatives() -> None:
    spec = {
        "rules": [
            {
                "from": [{"source": {"namespaces": ["a"]}}, {"source": {"namespaces": ["b"]}}],
                "to": [{"operation": {"methods": ["GET"]}}, {"operation": {"paths": ["/x"]}}],
                "when": [{"key": "request.headers[x]", "values": ["1"]}],
            }
        ]
    }
    pol = only_rule(spec)
    assert len(pol["permissions"]) == 2 and len(pol["principals"]) == 2
    # The when condition joins every `from` alternative.
    for p in pol["principals"]:
        assert p["andIds"]["ids"][-1]["header"]["name"] == "x"


# ---- TCP chains -------------------------------------------------------------------------------


def test_tcp_allow_rule_with_http_fields_matches_nothing() -> None:
    spec = {
        "rules": [
            {"to": [{"operation": {"methods": ["GET"]}}]},
            {"when": [{"key": "request.auth.claims[g]", "values": ["x"]}]},
            {"from": [{"source": {"requestPrincipals": ["*"]}}]},
        ]
    }
    [cfg] = tcp_rbacs([policy(spec)])
    assert cfg.rules.action == ALLOW and len(cfg.rules.policies) == 0  # deny all on TCP


def test_tcp_allow_rule_keeps_tcp_fields() -> None:
    rule = {
        "from": [{"source": {"principals": ["td/ns/a/sa/b"]}}],
        "to": [{"operation": {"ports": ["9080"]}}],
    }
    spec = {"rules": [rule]}
    [cfg] = tcp_rbacs([policy(spec)])
    [pol] = cfg.rules.policies.values()
    d = json_format.MessageToDict(pol)
    assert d["principals"][0]["andIds"]["ids"][0]["authenticated"]["principalName"] == {
        "exact": "spiffe://td/ns/a/sa/b"
    }
    assert d["permissions"][0]["andRules"]["rules"] == [{"any": True}]


def test_tcp_deny_rule_ignores_http_fields_and_denies_more() -> None:
    spec = {
        "action": "DENY",
        "rules": [
            {
                "from": [{"source": {"namespaces": ["bad"], "requestPrincipals": ["*"]}}],
                "to": [{"operation": {"methods": ["GET"], "paths": ["/x"]}}],
            }
        ],
    }
    [cfg] = tcp_rbacs([policy(spec)])
    assert cfg.rules.action == DENY
    [pol] = cfg.rules.policies.values()
    d = json_format.MessageToDict(pol)
    assert d["permissions"] == [{"any": True}]
    [ns] = d["principals"][0]["andIds"]["ids"]
    assert ns["authenticated"]["principalName"]["safeRegex"]["regex"] == ".*/ns/bad/.*"


def test_tcp_service_chain_gets_network_rbac_before_tcp_proxy() -> None:
    docs = [
        service("mongo", ports=[{"name": "tcp-mongo", "port": 27017}]),
        pod("mongo-a", "10.1.0.30", {"app": "mongo"}),
        policy({"rules": [{}]}, "allow-all"),
    ]
    push = push_for(BOOKINFO_CORE + docs)
    node = sidecar_node(app="mongo", ip="10.1.0.30", labels={"app": "mongo"})
    lst = listener(generate(node, push), "virtualInbound")
    [chain] = [c for c in lst.filter_chains if c.filter_chain_match.destination_port.value == 27017]
    names = [f.name for f in chain.filters]
    assert names == ["envoy.filters.network.rbac", "envoy.filters.network.tcp_proxy"]


def test_inbound_http_chain_has_rbac_after_jwt_and_before_router() -> None:
    ra = {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "jwt", "namespace": "default"},
        "spec": {"jwtRules": [{"issuer": "iss", "jwks": '{"keys": []}'}]},
    }
    docs = [ra, policy({"action": "DENY", "rules": [{}]}, "d"), policy({"rules": [{}]}, "a")]
    push = push_for(BOOKINFO_CORE + docs)
    lst = listener(generate(REVIEWS, push), "virtualInbound")
    hcm = unpack_hcm(lst.filter_chains[0])
    assert [f.name for f in hcm.http_filters] == [
        "envoy.filters.http.header_to_metadata",  # the caller's peer headers leave first
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.rbac",
        "envoy.filters.http.rbac",
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "envoy.filters.http.router",
    ]
