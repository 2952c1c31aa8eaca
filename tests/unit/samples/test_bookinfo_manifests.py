"""Every manifest under samples/bookinfo: parses, is served by Pilotfish, has Istio's names and
shapes, and the routing files refer only to subsets and apps that exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pilotfish.api.models import parse
from tests.unit.samples.bookinfo_apps import BOOKINFO, REPO, load_yaml

APPS = ("details", "ratings", "reviews", "productpage")
VERSIONS = {
    "details": ("v1",),
    "ratings": ("v1",),
    "reviews": ("v1", "v2", "v3"),
    "productpage": ("v1",),
}
NETWORKING = BOOKINFO / "networking"

EXPECTED: dict[str, set[tuple[str, str]]] = {
    "platform/bookinfo.yaml": {("Service", a) for a in APPS}
    | {("ServiceAccount", f"bookinfo-{a}") for a in APPS}
    | {("Deployment", f"{a}-{v}") for a in APPS for v in VERSIONS[a]},
    # Istio's path for the same file (a link), as Istio's getting-started task applies it
    "platform/kube/bookinfo.yaml": {("Service", a) for a in APPS}
    | {("ServiceAccount", f"bookinfo-{a}") for a in APPS}
    | {("Deployment", f"{a}-{v}") for a in APPS for v in VERSIONS[a]},
    "platform/default-namespace.yaml": {("Namespace", "default")},
    "networking/bookinfo-gateway.yaml": {
        ("Gateway", "bookinfo-gateway"),
        ("VirtualService", "bookinfo"),
    },
    "networking/destination-rule-all.yaml": {("DestinationRule", a) for a in APPS},
    "networking/destination-rule-all-mtls.yaml": {("DestinationRule", a) for a in APPS},
    "networking/destination-rule-reviews.yaml": {("DestinationRule", "reviews")},
    "networking/virtual-service-all-v1.yaml": {("VirtualService", a) for a in APPS},
    "networking/virtual-service-reviews-test-v2.yaml": {("VirtualService", "reviews")},
    "networking/virtual-service-reviews-jason-v2-v3.yaml": {("VirtualService", "reviews")},
    "networking/virtual-service-reviews-50-v3.yaml": {("VirtualService", "reviews")},
    "networking/virtual-service-reviews-80-20.yaml": {("VirtualService", "reviews")},
    "networking/virtual-service-reviews-90-10.yaml": {("VirtualService", "reviews")},
    "networking/virtual-service-reviews-v2-v3.yaml": {("VirtualService", "reviews")},
    "networking/virtual-service-reviews-v3.yaml": {("VirtualService", "reviews")},
    "networking/virtual-service-ratings-test-delay.yaml": {("VirtualService", "ratings")},
    "networking/virtual-service-ratings-test-abort.yaml": {("VirtualService", "ratings")},
    "networking/fault-injection-details-v1.yaml": {
        ("VirtualService", "details"),
        ("DestinationRule", "details"),
    },
}


def all_manifests() -> list[Path]:
    return sorted(BOOKINFO.rglob("*.yaml")) + sorted(BOOKINFO.rglob("*.yml"))


def by_kind(path: Path, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in load_yaml(path) if d["kind"] == kind}


def test_every_manifest_is_listed_here() -> None:
    found = {str(p.relative_to(BOOKINFO)) for p in all_manifests()}
    assert found == set(EXPECTED)


def test_istio_path_is_the_same_file() -> None:
    kube = BOOKINFO / "platform/kube/bookinfo.yaml"
    assert kube.is_symlink() and kube.resolve() == (BOOKINFO / "platform/bookinfo.yaml").resolve()


@pytest.mark.parametrize("relative", sorted(EXPECTED))
def test_manifest_parses_with_expected_kinds_and_names(relative: str) -> None:
    docs = load_yaml(BOOKINFO / relative)
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} == EXPECTED[relative]
    assert len(docs) == len(EXPECTED[relative]), "no duplicates"
    for doc in docs:
        parse(doc)  # served apiVersion/kind, and the schema Pilotfish applies
        if doc["kind"] not in ("Service", "ServiceAccount", "Deployment", "Namespace"):
            assert doc["apiVersion"] == "networking.istio.io/v1"


def test_services_and_service_accounts() -> None:
    path = BOOKINFO / "platform" / "bookinfo.yaml"
    services = by_kind(path, "Service")
    for app in APPS:
        svc = services[app]
        assert svc["metadata"]["labels"] == {"app": app, "service": app}
        assert svc["spec"]["ports"] == [{"port": 9080, "name": "http"}]
        assert svc["spec"]["selector"] == {"app": app}
    accounts = by_kind(path, "ServiceAccount")
    assert {a["metadata"]["labels"]["account"] for a in accounts.values()} == set(APPS)


def test_deployments_run_the_sample_scripts() -> None:
    deployments = by_kind(BOOKINFO / "platform" / "bookinfo.yaml", "Deployment")
    for app in APPS:
        for version in VERSIONS[app]:
            dep = deployments[f"{app}-{version}"]
            labels = {"app": app, "version": version}
            assert dep["metadata"]["labels"] == labels
            assert dep["spec"]["selector"]["matchLabels"] == labels
            pod = dep["spec"]["template"]
            assert pod["metadata"]["labels"] == labels
            assert pod["spec"]["serviceAccountName"] == f"bookinfo-{app}"
            (container,) = pod["spec"]["containers"]
            assert container["name"] == app
            assert container["image"].startswith(f"docker.io/istio/examples-bookinfo-{app}-")
            assert container["command"] == ["python3", f"samples/bookinfo/src/{app}.py"]
            assert (REPO / container["command"][1]).is_file()
            assert container["ports"] == [{"containerPort": 9080}]
            env = {e["name"]: e["value"] for e in container["env"]}
            assert env["SERVICE_VERSION"] == version
            assert env["PORT"] == "9080"
            if app == "reviews":
                expected_color = {"v2": "black", "v3": "red"}.get(version)
                assert env.get("STAR_COLOR") == expected_color


def test_gateway_and_its_virtual_service() -> None:
    path = NETWORKING / "bookinfo-gateway.yaml"
    gateway = by_kind(path, "Gateway")["bookinfo-gateway"]["spec"]
    assert gateway["selector"] == {"istio": "ingressgateway"}
    assert gateway["servers"] == [
        {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
    ]
    vs = by_kind(path, "VirtualService")["bookinfo"]["spec"]
    assert vs["hosts"] == ["*"] and vs["gateways"] == ["bookinfo-gateway"]
    (rule,) = vs["http"]
    assert [m["uri"] for m in rule["match"]] == [
        {"exact": "/productpage"},
        {"prefix": "/static"},
        {"exact": "/login"},
        {"exact": "/logout"},
        {"prefix": "/api/v1/products"},
    ]
    assert rule["route"] == [{"destination": {"host": "productpage", "port": {"number": 9080}}}]


def _destinations(vs: dict[str, Any]) -> list[dict[str, Any]]:
    return [route["destination"] for rule in vs["spec"]["http"] for route in rule["route"]]


def test_routes_name_subsets_that_exist_and_have_pods() -> None:
    subsets = {
        (dr["spec"]["host"], s["name"]): s["labels"]
        for dr in load_yaml(NETWORKING / "destination-rule-all.yaml")
        for s in dr["spec"]["subsets"]
    }
    for path in sorted(NETWORKING.glob("*.yaml")):
        for vs in by_kind(path, "VirtualService").values():
            if vs["metadata"]["name"] == "bookinfo":
                continue
            for rule in vs["spec"]["http"]:
                weights = [r.get("weight") for r in rule["route"]]
                if len(weights) > 1:
                    assert sum(w or 0 for w in weights) == 100, path.name
            for dest in _destinations(vs):
                host, subset = dest["host"], dest["subset"]
                assert (host, subset) in subsets, f"{path.name}: {host}/{subset}"
                assert subsets[(host, subset)] == {"version": subset}
                assert subset in VERSIONS[host], f"{path.name}: no {host}-{subset} Deployment"


@pytest.mark.parametrize(
    ("name", "first_match", "fault"),
    [
        (
            "virtual-service-ratings-test-delay.yaml",
            {"headers": {"end-user": {"exact": "jason"}}},
            {"delay": {"percentage": {"value": 100.0}, "fixedDelay": "7s"}},
        ),
        (
            "virtual-service-ratings-test-abort.yaml",
            {"headers": {"end-user": {"exact": "jason"}}},
            {"abort": {"percentage": {"value": 100.0}, "httpStatus": 500}},
        ),
    ],
)
def test_fault_injection_for_jason(name: str, first_match: Any, fault: Any) -> None:
    (vs,) = load_yaml(NETWORKING / name)
    first, default = vs["spec"]["http"]
    assert first["match"] == [first_match]
    assert first["fault"] == fault
    assert "match" not in default and "fault" not in default


def test_request_routing_for_jason() -> None:
    for name, default_subset in (
        ("virtual-service-reviews-test-v2.yaml", "v1"),
        ("virtual-service-reviews-jason-v2-v3.yaml", "v3"),
    ):
        (vs,) = load_yaml(NETWORKING / name)
        first, default = vs["spec"]["http"]
        assert first["match"] == [{"headers": {"end-user": {"exact": "jason"}}}]
        assert first["route"] == [{"destination": {"host": "reviews", "subset": "v2"}}]
        assert default["route"] == [{"destination": {"host": "reviews", "subset": default_subset}}]
