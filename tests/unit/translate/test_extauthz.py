"""AuthorizationPolicy CUSTOM -> shadow RBAC + ext_authz, with the mesh config's provider."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2

from pilotfish.api.typeurls import LISTENER_TYPE
from pilotfish.config.validation import validate
from pilotfish.errors import ValidationError
from pilotfish.translate.generator import generate
from tests.unit.translate.fixtures import from_yaml, push_for, service, sidecar_node

BACKEND = sidecar_node("backend", labels={"app": "backend"})


def mesh(provider: str) -> list[dict[str, Any]]:
    return from_yaml(
        f"""
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {{name: mesh, namespace: istio-system}}
spec:
  meshConfig:
    extensionProviders:
    - name: authz
{provider}
"""
    )


HTTP = """      envoyExtAuthzHttp:
        service: ext-authz.default.svc.cluster.local
        port: 8000
        timeout: 2s
        pathPrefix: /check
        failOpen: true
        statusOnError: "503"
        includeRequestHeadersInCheck: [x-ext-authz, "x-prefix-*"]
        includeAdditionalHeadersInCheck: {x-added: "1"}
        headersToUpstreamOnAllow: [x-result]
        headersToDownstreamOnDeny: [x-result]
        headersToDownstreamOnAllow: [x-ok]"""
GRPC = """      envoyExtAuthzGrpc:
        service: ext-authz.default
        port: 9000
        includeRequestBodyInCheck: {maxRequestBytes: 1024}"""

POLICIES = from_yaml(
    """
kind: AuthorizationPolicy
metadata: {name: ext, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  action: CUSTOM
  provider: {name: authz}
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/blocked"]}}]}]
"""
)

SERVICES = [
    service("backend"),
    service("ext-authz", ports=[{"name": "http", "port": 8000}, {"name": "grpc", "port": 9000}]),
]


def http_filters(docs: list[dict[str, Any]]) -> list[Any]:
    res = generate(BACKEND, push_for(SERVICES + docs))
    inbound = res[LISTENER_TYPE]["virtualInbound"]
    for chain in inbound.filter_chains:
        for f in chain.filters:
            if f.name == "envoy.filters.network.http_connection_manager":
                from envoy.extensions.filters.network.http_connection_manager.v3 import (
                    http_connection_manager_pb2 as hcm_pb2,
                )

                hcm = hcm_pb2.HttpConnectionManager()
                f.typed_config.Unpack(hcm)
                return list(hcm.http_filters)
    raise AssertionError("no HTTP chain")


def test_custom_is_a_shadow_rbac_then_ext_authz_before_deny() -> None:
    filters = http_filters(mesh(HTTP) + POLICIES)
    names = [f.name for f in filters]
    at = names.index("envoy.filters.http.ext_authz")
    assert names[at - 1] == "envoy.filters.http.rbac"
    assert names[at + 1] == "envoy.filters.http.rbac"  # the DENY policy after CUSTOM
    shadow = http_rbac_pb2.RBAC()
    filters[at - 1].typed_config.Unpack(shadow)
    assert not shadow.HasField("rules")
    assert list(shadow.shadow_rules.policies) == ["istio-ext-authz-ns[default]-policy[ext]-rule[0]"]
    assert shadow.shadow_rules_stat_prefix == "istio_ext_authz_"
    cfg = ext_authz_pb2.ExtAuthz()
    filters[at].typed_config.Unpack(cfg)
    assert (
        cfg.http_service.server_uri.cluster == "outbound|8000||ext-authz.default.svc.cluster.local"
    )
    assert cfg.http_service.server_uri.timeout.seconds == 2
    assert cfg.http_service.path_prefix == "/check"
    assert cfg.failure_mode_allow is True
    assert cfg.status_on_error.code == 503
    assert [m.exact or m.prefix for m in cfg.allowed_headers.patterns] == [
        "x-ext-authz",
        "x-prefix-",
    ]
    assert [(h.key, h.value) for h in cfg.http_service.authorization_request.headers_to_add] == [
        ("x-added", "1")
    ]
    response = cfg.http_service.authorization_response
    assert [m.exact for m in response.allowed_upstream_headers.patterns] == ["x-result"]
    assert [m.exact for m in response.allowed_client_headers.patterns] == ["x-result"]
    assert [m.exact for m in response.allowed_client_headers_on_success.patterns] == ["x-ok"]
    enabled = cfg.filter_enabled_metadata
    assert enabled.filter == "envoy.filters.http.rbac"
    assert enabled.path[0].key == "istio_ext_authz_shadow_effective_policy_id"
    assert enabled.value.string_match.prefix == "istio-ext-authz"


def test_grpc_provider() -> None:
    filters = http_filters(mesh(GRPC) + POLICIES)
    cfg = ext_authz_pb2.ExtAuthz()
    next(f for f in filters if f.name == "envoy.filters.http.ext_authz").typed_config.Unpack(cfg)
    assert cfg.grpc_service.envoy_grpc.cluster_name == (
        "outbound|9000||ext-authz.default.svc.cluster.local"
    )
    assert cfg.grpc_service.timeout.seconds == 600  # Istio's default
    assert cfg.status_on_error.code == 403 and not cfg.failure_mode_allow
    assert cfg.with_request_body.max_request_bytes == 1024


def _denies_all(filters: list[Any]) -> bool:
    for f in filters:
        if f.name == "envoy.filters.http.rbac":
            cfg = http_rbac_pb2.RBAC()
            f.typed_config.Unpack(cfg)
            if any("CUSTOM" in name for name in cfg.rules.policies):
                return True
    return False


def test_unusable_providers_fail_closed() -> None:
    missing = http_filters(POLICIES)
    assert _denies_all(missing)
    assert "envoy.filters.http.ext_authz" not in [f.name for f in missing]
    no_service = mesh(HTTP.replace("ext-authz.default.svc", "nothing.default.svc"))
    assert _denies_all(http_filters(no_service + POLICIES))
    assert not _denies_all(http_filters(mesh(HTTP) + POLICIES))


def test_provider_validation() -> None:
    bad = mesh(HTTP.replace('"503"', '"5xx"').replace("/check", "check"))[0]
    with pytest.raises(ValidationError) as exc:
        validate(bad)
    errors = [e.path for e in exc.value.errors]
    assert any(p.endswith("envoyExtAuthzHttp.statusOnError") for p in errors)
    assert any(p.endswith("envoyExtAuthzHttp.pathPrefix") for p in errors)
    cleared = mesh(HTTP + "\n        clearRouteCache: true")[0]
    assert any(w.path.endswith("clearRouteCache") for w in validate(cleared).warnings)


def tcp_filters(docs: list[dict[str, Any]]) -> list[str]:
    """The network filters before tcp_proxy on the backend's TCP port 9090."""
    services = [service("backend", ports=[{"name": "tcp", "port": 9090}]), SERVICES[1]]
    res = generate(BACKEND, push_for(services + docs))
    inbound = res[LISTENER_TYPE]["virtualInbound"]
    for chain in inbound.filter_chains:
        if chain.filter_chain_match.destination_port.value == 9090:
            return [f for f in chain.filters if f.name != "envoy.filters.network.tcp_proxy"]
    raise AssertionError("no TCP chain for 9090")


TCP_POLICY = from_yaml(
    """
kind: AuthorizationPolicy
metadata: {name: ext, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  action: CUSTOM
  provider: {name: authz}
  rules: [{to: [{operation: {ports: ["9090"]}}]}]
"""
)


def test_grpc_provider_on_tcp_is_the_ext_authz_network_filter() -> None:
    from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as net_ext_authz_pb2
    from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as net_rbac_pb2

    filters = tcp_filters(
        mesh(GRPC.replace("port: 9000", "port: 9000\n        failOpen: true")) + TCP_POLICY
    )
    assert [f.name for f in filters] == [
        "envoy.filters.network.rbac",
        "envoy.filters.network.ext_authz",
    ]
    shadow = net_rbac_pb2.RBAC()
    filters[0].typed_config.Unpack(shadow)
    assert not shadow.HasField("rules")
    assert list(shadow.shadow_rules.policies) == ["istio-ext-authz-ns[default]-policy[ext]-rule[0]"]
    cfg = net_ext_authz_pb2.ExtAuthz()
    filters[1].typed_config.Unpack(cfg)
    assert cfg.grpc_service.envoy_grpc.cluster_name == (
        "outbound|9000||ext-authz.default.svc.cluster.local"
    )
    assert cfg.failure_mode_allow is True
    assert cfg.filter_enabled_metadata.filter == "envoy.filters.network.rbac"


def test_http_provider_leaves_tcp_unchecked_and_a_bad_one_denies() -> None:
    # As Istio: an HTTP provider cannot check a connection; the policy is left out.
    assert tcp_filters(mesh(HTTP) + TCP_POLICY) == []
    [deny] = tcp_filters(TCP_POLICY)  # the provider is not defined: fail closed
    assert deny.name == "envoy.filters.network.rbac"


def test_apply_warns_that_an_http_provider_leaves_tcp_unchecked() -> None:
    from pilotfish.api.meshconfig import MeshConfig
    from pilotfish.api.security import AuthorizationPolicySpec
    from pilotfish.config.validation.meshconfig import custom_provider_warnings

    spec = AuthorizationPolicySpec.model_validate(TCP_POLICY[0]["spec"])

    def warned(provider: str) -> list[str]:
        config = mesh(provider)[0]["spec"]["meshConfig"]
        return [str(w) for w in custom_provider_warnings(spec, MeshConfig.model_validate(config))]

    [warning] = warned(HTTP)
    assert warning.startswith('spec.provider: "authz" is an envoyExtAuthzHttp provider')
    assert "TCP connections" in warning
    assert warned(GRPC) == []
