"""Every fixture file loads and validates; the as-written tutorial mistakes fail like Istio's."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.config.loader import load_documents
from pilotfish.config.validation import validate
from pilotfish.errors import UnknownKindError, ValidationError

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = ROOT / "tests" / "fixtures"
TUTORIALS = ROOT / "samples" / "tutorials"
VALID = sorted([*TUTORIALS.glob("*.yaml"), *(FIXTURES / "bookinfo").glob("*.yaml")])


def test_fixtures_are_there() -> None:
    names = {p.name for p in VALID}
    assert len(names) >= 30
    assert {
        "peer-authentication-strict.yaml",
        "authorization-deny-all.yaml",
        "gateway-https.yaml",
        "virtual-service-canary-90-10.yaml",
        "telemetry-access-logging.yaml",
        "envoy-filter-local-ratelimit.yaml",
        "bookinfo-gateway.yaml",
        "destination-rule-all.yaml",
        "virtual-service-ratings-test-abort.yaml",
    } <= names


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_is_valid(path: Path) -> None:
    docs = load_documents([str(path)])
    assert docs, "fixture has no resources"
    for doc in docs:
        validate(doc.body, source=doc.source)


def test_bookinfo_all_v1_has_four_services() -> None:
    docs = load_documents([str(FIXTURES / "bookinfo" / "virtual-service-all-v1.yaml")])
    names = [validate(d.body).obj.metadata.name for d in docs]  # type: ignore[attr-defined]
    assert names == ["productpage", "reviews", "ratings", "details"]


def test_seed_telemetry_without_value_is_rejected_like_istio() -> None:
    (doc,) = load_documents(
        [str(FIXTURES / "invalid/telemetry-custom-metrics-upsert-without-value.yaml")]
    )
    with pytest.raises(ValidationError) as e:
        validate(doc.body, source=doc.source)
    assert [(x.path, x.reason) for x in e.value.errors] == [
        (
            "spec.metrics[0].overrides[0].tagOverrides[response_code].value",
            "tagOverrides.value must be set when operation is UPSERT",
        )
    ]


def test_seed_envoy_filter_v1beta1_is_not_served() -> None:
    (doc,) = load_documents([str(FIXTURES / "invalid/envoy-filter-local-ratelimit-v1beta1.yaml")])
    with pytest.raises(UnknownKindError, match="v1alpha3"):
        validate(doc.body)
