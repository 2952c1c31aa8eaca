"""The field-support table: every model field has a decision, the docs match, warnings fire."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pilotfish.api.kinds import KINDS
from pilotfish.config.validation import coverage, validate

from ._util import body

DOCS = Path(__file__).resolve().parents[4] / "docs" / "configuration.md"


@pytest.mark.parametrize("kind", coverage.COVERED_KINDS)
def test_every_field_has_a_decision(kind: str) -> None:
    missing = [f"{key} ({path})" for key, path, d in coverage.walk(kind) if d is None]
    assert not missing, f"{kind}: decide enforced/refused/warned in coverage.py for {missing}"


@pytest.mark.parametrize("kind", coverage.COVERED_KINDS)
def test_no_entry_without_a_field(kind: str) -> None:
    reached = {key for key, _, _ in coverage.walk(kind)}
    stale = sorted(set(coverage.FIELDS[kind]) - reached)
    assert not stale, f"{kind}: coverage.py lists fields its model does not reach: {stale}"


def test_every_served_kind_has_a_table_or_is_written_by_the_runtime() -> None:
    served = {k.kind for k in KINDS}
    assert set(coverage.COVERED_KINDS) | set(coverage.RUNTIME_KINDS) == served
    assert set(coverage.RUNTIME_KINDS) == {k.kind for k in KINDS if not k.appliable}
    assert set(coverage.FIELDS) == set(coverage.COVERED_KINDS)


def test_every_metadata_field_has_a_decision() -> None:
    rows = coverage.walk_metadata()
    assert [key for key, _, d in rows if d is None] == []
    assert set(coverage.METADATA) == {key for key, _, _ in rows}


def test_a_subtree_decided_by_another_kind_is_in_that_kinds_table() -> None:
    for kind in coverage.COVERED_KINDS:
        for key, d in coverage.FIELDS[kind].items():
            if d.see:
                assert d.see in coverage.COVERED_KINDS, f"{kind} {key}"


def test_refused_and_warned_fields_say_why() -> None:
    for kind in coverage.COVERED_KINDS:
        for key, d in coverage.FIELDS[kind].items():
            assert d.status == "enforced" or d.note, f"{kind} {key}"
    for key, d in coverage.METADATA.items():
        assert d.status == "enforced" or d.note, key


def test_docs_table_in_sync() -> None:
    text = DOCS.read_text()
    begin, end = coverage.DOCS_BEGIN, coverage.DOCS_END
    table = text[text.index(begin) + len(begin) : text.index(end)]
    assert table == coverage.markdown(), (
        "docs/configuration.md is out of date: regenerate it with "
        "python -m pilotfish.config.validation.coverage"
    )


def _warned(b: dict[str, Any]) -> list[str]:
    return [w.path for w in validate(b).warnings]


_VS = {"hosts": ["reviews"]}
_ROUTE = [{"destination": {"host": "reviews"}}]

# One body per field newly warned about at apply, and the path the warning must name.
NEWLY_WARNED = [
    (
        body(
            "DestinationRule",
            {"host": "r", "trafficPolicy": {"tunnel": {"targetHost": "x.com", "targetPort": 443}}},
        ),
        "spec.trafficPolicy.tunnel",
        ("DestinationRule", "TrafficPolicy.tunnel"),
    ),
    (
        body(
            "Gateway",
            {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {
                        "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                        "bind": "10.0.0.1",
                        "defaultEndpoint": "127.0.0.1:8080",
                        "hosts": ["*"],
                    }
                ],
            },
        ),
        "spec.servers[0].bind",
        ("Gateway", "Server.bind"),
    ),
    (
        body(
            "DestinationRule",
            {
                "host": "r",
                "trafficPolicy": {
                    "connectionPool": {
                        "http": {"http2KeepAlive": {"interval": "30s", "timeout": "5s"}}
                    }
                },
            },
        ),
        "spec.trafficPolicy.connectionPool.http.http2KeepAlive",
        ("DestinationRule", "HTTPSettings.http2KeepAlive"),
    ),
    (
        body(
            "DestinationRule",
            {"host": "r", "trafficPolicy": {"connectionPool": {"tcp": {"idleTimeout": "30s"}}}},
        ),
        "spec.trafficPolicy.connectionPool.tcp.idleTimeout",
        ("DestinationRule", "TCPSettings.idleTimeout"),
    ),
    (
        body(
            "Gateway",
            {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {
                        "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                        "name": "main",
                        "hosts": ["*"],
                    }
                ],
            },
        ),
        "spec.servers[0].name",
        ("Gateway", "Server.name"),
    ),
    (
        body(
            "RequestAuthentication",
            {"jwtRules": [{"issuer": "https://idp.example", "timeout": "5s"}]},
        ),
        "spec.jwtRules[0].timeout",
        ("RequestAuthentication", "JWTRule.timeout"),
    ),
    (
        body("Telemetry", {"metrics": [{"reportingInterval": "30s"}]}),
        "spec.metrics[0].reportingInterval",
        ("Telemetry", "Metrics.reportingInterval"),
    ),
    (
        body("Telemetry", {"tracing": [{"enableIstioTags": False}]}),
        "spec.tracing[0].enableIstioTags",
        ("Telemetry", "Tracing.enableIstioTags"),
    ),
    (
        body("Telemetry", {"tracing": [{"useRequestIdForTraceSampling": False}]}),
        "spec.tracing[0].useRequestIdForTraceSampling",
        ("Telemetry", "Tracing.useRequestIdForTraceSampling"),
    ),
    (
        body("WorkloadEntry", {"address": "10.0.0.5", "network": "net2"}),
        "spec.network",
        ("WorkloadEntry", "WorkloadEntrySpec.network"),
    ),
    (
        body(
            "EnvoyFilter",
            {
                "targetRefs": [
                    {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "g"}
                ],
                "configPatches": [{"applyTo": "HTTP_FILTER", "patch": {"operation": "REMOVE"}}],
            },
        ),
        "spec.targetRefs",
        ("EnvoyFilter", "EnvoyFilterSpec.targetRefs"),
    ),
    (
        body("AuthorizationPolicy", {"targetRefs": [{"kind": "Service", "name": "reviews"}]}),
        "spec.targetRefs",
        ("AuthorizationPolicy", "AuthorizationPolicySpec.targetRefs"),
    ),
    (
        body(
            "RequestAuthentication",
            {"targetRef": {"kind": "Service", "name": "reviews"}},
        ),
        "spec.targetRef",
        ("RequestAuthentication", "RequestAuthenticationSpec.targetRef"),
    ),
]


@pytest.mark.parametrize(("b", "path", "entry"), NEWLY_WARNED, ids=[p for _, p, _ in NEWLY_WARNED])
def test_newly_warned_fields_warn_at_apply(
    b: dict[str, Any], path: str, entry: tuple[str, str]
) -> None:
    assert path in _warned(b)
    kind, key = entry
    assert coverage.FIELDS[kind][key].status == "warned"


_GATEWAY_REF = {"group": "gateway.networking.k8s.io", "kind": "Gateway"}


def test_telemetry_target_refs_naming_no_proxy_are_warned_about() -> None:
    ingress = _GATEWAY_REF | {"name": "istio-ingressgateway"}
    refs = [ingress, _GATEWAY_REF | {"name": "other"}, {"kind": "Service", "name": "reviews"}]
    b = body("Telemetry", {"targetRefs": refs, "metrics": [{"providers": [{"name": "p"}]}]})
    assert [p for p in _warned(b) if "targetRef" in p] == [
        "spec.targetRefs[1]",
        "spec.targetRefs[2]",
    ]
    assert _warned(body("Telemetry", {"targetRef": ingress})) == []
    note = coverage.FIELDS["Telemetry"]["TelemetrySpec.targetRefs"].note
    assert "warned" in note


@pytest.mark.parametrize("value", ["FORWARD", "IGNORE"])
def test_unmatched_preflights_are_not_warned_about(value: str) -> None:
    b = body(
        "VirtualService",
        {
            **_VS,
            "http": [
                {
                    "corsPolicy": {
                        "allowOrigins": [{"exact": "a.com"}],
                        "unmatchedPreflights": value,
                    },
                    "route": _ROUTE,
                }
            ],
        },
    )
    assert "spec.http[0].corsPolicy.unmatchedPreflights" not in _warned(b)


def test_trust_domains_are_accepted_and_enforced() -> None:
    # Istio 1.28's AuthorizationPolicy source trustDomains / notTrustDomains.
    b = body(
        "AuthorizationPolicy",
        {"rules": [{"from": [{"source": {"trustDomains": ["td1"], "notTrustDomains": ["td2"]}}]}]},
    )
    assert _warned(b) == []
    assert coverage.FIELDS["AuthorizationPolicy"]["Source.trustDomains"].status == "enforced"


def test_merge_and_replace_list_is_accepted() -> None:
    b = body(
        "EnvoyFilter",
        {
            "configPatches": [
                {
                    "applyTo": "CLUSTER",
                    "match": {"cluster": {"service": "reviews.default.svc.cluster.local"}},
                    "patch": {
                        "operation": "MERGE_AND_REPLACE_LIST",
                        "value": {"connect_timeout": "2s"},
                    },
                }
            ]
        },
    )
    validate(b)


def _refused(b: dict[str, Any]) -> list[str]:
    from pilotfish.errors import ValidationError

    try:
        validate(b)
    except ValidationError as e:
        return [x.path for x in e.errors]
    return []


_GW_SERVER = {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
_EF_PATCH = {"applyTo": "HTTP_FILTER", "patch": {"operation": "REMOVE"}}

# Refused entries of the table, each with a body that sets the field: should one of them
# become supported, this fails until its entry in coverage.py says what happens now.
LISTED_REFUSALS = [
    (
        body(
            "Gateway",
            {"servers": [{**_GW_SERVER, "port": {**_GW_SERVER["port"], "targetPort": 8080}}]},
        ),
        "spec.servers[0].port.targetPort",
        ("Gateway", "Port.targetPort"),
    ),
    (
        body(
            "VirtualService",
            {**_VS, "http": [{"fault": {"delay": {"exponentialDelay": "1s"}}, "route": _ROUTE}]},
        ),
        "spec.http[0].fault.delay.exponentialDelay",
        ("VirtualService", "FaultDelay.exponentialDelay"),
    ),
    (
        body("WorkloadGroup", {"template": {"address": "10.0.0.1"}}),
        "spec.template.address",
        ("WorkloadGroup", "WorkloadEntrySpec.address"),
    ),
    (
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": "m"},
            "spec": {"query": "up", "provider": {"secretRef": {"name": "s"}}},
        },
        "spec.provider.secretRef",
        ("MetricTemplate", "MetricTemplateProvider.secretRef"),
    ),
]


@pytest.mark.parametrize(
    ("b", "path", "entry"), LISTED_REFUSALS, ids=[p for _, p, _ in LISTED_REFUSALS]
)
def test_listed_refusals_are_refused_at_apply(
    b: dict[str, Any], path: str, entry: tuple[str, str]
) -> None:
    kind, key = entry
    assert coverage.FIELDS[kind][key].status == "refused"
    assert path in _refused(b), f"{kind} {key} is no longer refused: update coverage.py"


# --- the kinds whose warnings come from the table -------------------------------------------

_CONTAINER = {"name": "app", "command": ["python3", "app.py"]}


def _deployment(pod: dict[str, Any], container: dict[str, Any] | None = None) -> dict[str, Any]:
    return body(
        "Deployment",
        {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {
                "metadata": {"labels": {"app": "a"}},
                "spec": {"containers": [{**_CONTAINER, **(container or {})}], **pod},
            },
        },
    )


def _warnings(b: dict[str, Any]) -> dict[str, str]:
    return {w.path: w.reason for w in validate(b).warnings}


def test_a_deployments_affinity_is_warned_about_by_name() -> None:
    b = _deployment({"affinity": {"nodeAffinity": {}}, "tolerations": [{"key": "k"}]})
    warned = _warnings(b)
    reason = warned["spec.template.spec"]
    assert reason.startswith("affinity, tolerations: accepted but not applied by Pilotfish")
    assert "one node" in reason


def test_fields_of_one_container_share_one_warning() -> None:
    b = _deployment(
        {}, {"image": "istio/examples-bookinfo-details-v1", "imagePullPolicy": "Always"}
    )
    del b["spec"]["template"]["spec"]["containers"][0]["command"]
    warned = _warnings(b)
    assert list(warned) == ["spec.template.spec.containers[0]"]
    assert warned["spec.template.spec.containers[0]"].startswith("image, imagePullPolicy: ")


def test_an_image_beside_a_command_is_not_warned_about() -> None:
    # The local runtime runs the command; the image names what it stands for (Bookinfo).
    b = _deployment(
        {}, {"image": "istio/examples-bookinfo-details-v1", "imagePullPolicy": "Always"}
    )
    assert _warnings(b) == {}


def test_enforced_fields_and_quiet_values_are_not_warned_about() -> None:
    b = _deployment(
        {
            "restartPolicy": "Always",
            "hostNetwork": False,
            "serviceAccountName": "sa",
            "securityContext": {"runAsUser": 1000},
            "terminationGracePeriodSeconds": 5,
        },
        {
            "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
        },
    )
    assert _warnings(b) == {}


def test_a_quiet_field_with_another_value_is_warned_about() -> None:
    b = _deployment({"restartPolicy": "Never"})
    assert "restartPolicy" in _warnings(b)["spec.template.spec"]


def test_a_probe_the_runtime_does_not_run_is_warned_about() -> None:
    b = _deployment({}, {"livenessProbe": {"exec": {"command": ["true"]}}})
    assert "livenessProbe" in _warnings(b)["spec.template.spec.containers[0]"]
    b = _deployment({}, {"readinessProbe": {"exec": {"command": ["true"]}}, "ports": []})
    warned = _warnings(b)
    assert warned["spec.template.spec.containers[0].readinessProbe"].startswith("exec: ")


def test_an_env_var_from_a_secret_is_warned_about() -> None:
    env = [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    warned = _warnings(_deployment({}, {"env": env}))
    assert "empty string" in warned["spec.template.spec.containers[0].env[0].valueFrom"]


def test_service_fields_without_effect_are_warned_about() -> None:
    ports = [{"port": 80, "name": "http", "nodePort": 30080}]
    warned = _warnings(body("Service", {"type": "NodePort", "ports": ports}))
    assert warned["spec"].startswith("type: ")
    assert warned["spec.ports[0]"].startswith("nodePort: ")
    assert _warnings(body("Service", {"type": "ClusterIP", "ports": [{"port": 80}]})) == {}


@pytest.mark.parametrize(
    ("b", "path", "field"),
    [
        (body("Namespace", {"finalizers": ["kubernetes"]}), "spec", "finalizers"),
        (body("ServiceAccount", secrets=[{"name": "s"}]), "", "secrets"),
        (body("Secret", immutable=True), "", "immutable"),
        (body("Secret", type="kubernetes.io/dockerconfigjson"), "", "type"),
    ],
)
def test_kubernetes_kinds_name_fields_without_effect(
    b: dict[str, Any], path: str, field: str
) -> None:
    assert _warnings(b)[path].startswith(f"{field}: accepted but not applied by Pilotfish")


def test_a_workload_groups_network_is_warned_about_once() -> None:
    warned = validate(body("WorkloadGroup", {"template": {"network": "n2"}})).warnings
    assert [w.path for w in warned] == ["spec.template.network"]


def test_tls_and_opaque_secrets_are_not_warned_about() -> None:
    for kind in ("Opaque", "kubernetes.io/tls"):
        assert _warnings(body("Secret", type=kind)) == {}


def test_metadata_fields_without_effect_are_warned_about_on_every_kind() -> None:
    b = body("VirtualService", {"hosts": ["r"], "http": [{"route": _ROUTE}]})
    b["metadata"]["finalizers"] = ["example.com/keep"]
    assert _warnings(b)["metadata"].startswith("finalizers: ")


def _operator(mesh: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": "o", "namespace": "istio-system"},
        "spec": {"meshConfig": mesh},
    }


def test_mesh_config_fields_without_effect_are_warned_about() -> None:
    providers = [{"name": "z", "zipkin": {"service": "z.ns", "port": 9411, "maxTagLength": 99}}]
    warned = _warnings(_operator({"enablePrometheusMerge": False, "extensionProviders": providers}))
    assert warned["spec.meshConfig"].startswith("enablePrometheusMerge: ")
    assert warned["spec.meshConfig.extensionProviders[0].zipkin"].startswith("maxTagLength: ")
    assert _warnings(_operator({"enablePrometheusMerge": True})) == {}


def test_a_field_its_validator_warns_about_is_not_warned_about_twice() -> None:
    warned = validate(_operator({"defaultConfig": {"concurrency": 2}})).warnings
    assert [w.path for w in warned] == ["spec.meshConfig.defaultConfig.concurrency"]


def test_canary_fields_without_effect_are_warned_about() -> None:
    b: dict[str, Any] = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {
                "interval": "1m",
                "threshold": 5,
                "stepWeight": 10,
                "primaryReadyThreshold": 50,
            },
        },
    }
    assert _warnings(b)["spec.analysis"].startswith("primaryReadyThreshold: ")


def test_a_trust_domain_other_than_the_mesh_cas_is_warned_about() -> None:
    assert _warnings(_operator({"trustDomain": "cluster.local"})) == {}
    assert _warnings(_operator({"trustDomain": "example.com"}))["spec.meshConfig"].startswith(
        "trustDomain: "
    )
