"""Security analyzers: AuthorizationPolicy workloads and namespaces, mTLS conflicts."""

from __future__ import annotations

from pilotfish.config.analyze.security import (
    analyze_authorization_namespaces,
    analyze_authorization_workloads,
    analyze_mtls_conflicts,
)
from tests.unit.config.analyze._util import SERVICES, codes, run, texts

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec:
      containers: [{name: reviews, image: reviews}]
"""


def policy(spec: str, namespace: str = "default") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: policy, namespace: {namespace}}}
spec:
{spec}
"""


def test_policy_selecting_a_deployment_is_clean() -> None:
    text = policy("  selector: {matchLabels: {app: reviews}}\n  action: ALLOW")
    assert run(analyze_authorization_workloads, DEPLOYMENT, text) == []


def test_policy_selecting_nothing_is_ist0127() -> None:
    text = policy("  selector: {matchLabels: {app: backend}}")
    msgs = run(analyze_authorization_workloads, DEPLOYMENT, text)
    assert texts(msgs) == [
        "No matching workloads for this resource with the following labels: app=backend"
    ]


def test_namespace_wide_policy_needs_a_workload_in_its_namespace() -> None:
    text = policy("  {}", namespace="empty")
    assert codes(run(analyze_authorization_workloads, DEPLOYMENT, text)) == ["IST0127"]
    assert run(analyze_authorization_workloads, DEPLOYMENT, policy("  {}")) == []


def test_root_namespace_policy_with_selector_matches_anywhere() -> None:
    text = policy("  selector: {matchLabels: {app: reviews}}", namespace="istio-system")
    assert run(analyze_authorization_workloads, DEPLOYMENT, text) == []


def test_unknown_source_namespace_is_ist0101_namespace() -> None:
    text = policy("  rules:\n  - from:\n    - source: {namespaces: [frontend, istio-*]}\n")
    msgs = run(analyze_authorization_namespaces, DEPLOYMENT, text)
    assert texts(msgs) == ['Referenced namespace not found: "frontend"']
    assert msgs[0].path == "spec.rules[0].from[0].source.namespaces[0]"


def test_namespace_object_makes_the_source_namespace_known() -> None:
    ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: frontend}\n"
    text = policy("  rules:\n  - from:\n    - source: {notNamespaces: [frontend]}\n")
    assert run(analyze_authorization_namespaces, ns, text) == []


# --- mTLS -----------------------------------------------------------------------------------


def peer_auth(mode: str, namespace: str = "default") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: {namespace}}}
spec:
  mtls: {{mode: {mode}}}
"""


def dr(mode: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ratings-tls, namespace: default}}
spec:
  host: ratings
  trafficPolicy:
    tls: {{mode: {mode}}}
"""


def test_disable_against_strict_is_ist0113() -> None:
    msgs = run(analyze_mtls_conflicts, SERVICES, peer_auth("STRICT"), dr("DISABLE"))
    assert codes(msgs) == ["IST0113"]
    assert msgs[0].text == (
        "A DestinationRule and Policy are in conflict with regards to mTLS for host "
        'ratings.default.svc.cluster.local. The DestinationRule "default/ratings-tls" specifies '
        'that mTLS must be false but the Policy object "default/default" specifies STRICT.'
    )


def test_mesh_wide_policy_applies_when_the_namespace_has_none() -> None:
    msgs = run(
        analyze_mtls_conflicts, SERVICES, peer_auth("DISABLE", "istio-system"), dr("ISTIO_MUTUAL")
    )
    assert codes(msgs) == ["IST0113"]


def test_agreeing_settings_are_clean() -> None:
    assert run(analyze_mtls_conflicts, SERVICES, peer_auth("STRICT"), dr("ISTIO_MUTUAL")) == []
    assert run(analyze_mtls_conflicts, SERVICES, peer_auth("PERMISSIVE"), dr("DISABLE")) == []
    # the namespace's own policy wins over the mesh-wide one
    ns_permissive = peer_auth("PERMISSIVE")
    mesh_strict = peer_auth("STRICT", "istio-system")
    assert run(analyze_mtls_conflicts, SERVICES, ns_permissive, mesh_strict, dr("DISABLE")) == []
