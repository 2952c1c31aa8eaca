"""Malformed input to a real control plane's HTTP API: never a 500, nothing stored on rejection.

Oversized bodies get 413, deeply nested JSON 400, a batch with one bad item 422 naming the
field and nothing of the batch stored; hypothesis sends random JSON bodies and samples with
fields replaced by values of the wrong type.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pilotfish.api.kinds import APPLY_PATH, DELETE_PATH
from tests.integration.harness import ControlPlane
from tests.unit.config.test_fuzz_validation import json_values, mutated, sample_of

VS_PATH = "/apis/networking.istio.io/v1/namespaces/default/virtualservices"


def _client(cp: ControlPlane) -> httpx.Client:
    return httpx.Client(
        base_url=cp.url, headers={"Authorization": f"Bearer {cp.token}"}, timeout=30
    )


def _reject(client: httpx.Client, cp: ControlPlane, path: str, content: bytes) -> httpx.Response:
    before = cp.revision()
    resp = client.post(path, content=content, headers={"Content-Type": "application/json"})
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert resp.json()["kind"] == "Status", resp.text
        assert cp.revision() == before, "a rejected request stored something"
    return resp


def test_oversized_deep_and_half_invalid_requests_are_refused(control_plane: ControlPlane) -> None:
    with _client(control_plane) as client:
        huge = json.dumps({"items": [{"x": "a" * (33 * 1024**2)}]}).encode()
        resp = _reject(client, control_plane, APPLY_PATH, huge)
        assert resp.status_code == 413
        assert "larger than 32 MiB" in resp.json()["message"]

        deep = b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        resp = _reject(client, control_plane, APPLY_PATH, deep)
        assert resp.status_code == 400
        assert "nested deeper than 100 levels" in resp.json()["message"]
        resp = _reject(
            client, control_plane, VS_PATH, b'{"spec": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        )
        assert resp.status_code == 400

        good = sample_of("Gateway")
        bad = copy.deepcopy(good)
        bad["metadata"]["name"] = "bad"
        bad["spec"] = {"servers": "not-a-list"}
        resp = _reject(
            client, control_plane, APPLY_PATH, json.dumps({"items": [good, bad]}).encode()
        )
        assert resp.status_code == 422
        fields = [c["field"] for c in resp.json()["details"]["causes"]]
        assert any(f.startswith("spec.servers") for f in fields), resp.text

        for path, body, field in [
            (DELETE_PATH, [1], ""),
            (DELETE_PATH, {"items": [{"kind": "Gateway"}]}, "items[0]"),
            (DELETE_PATH, {"items": ["x"]}, "items[0]"),
        ] + [
            (APPLY_PATH, b, f)
            for b, f in [
                ([1, 2], ""),
                ({"items": "abc"}, "items"),
                ({"items": [], "sources": [{"file": 1}]}, None),
                ({"items": [good], "sources": [{"file": 3}]}, "sources[0]"),
                ({"items": [good], "namespace": ["x"]}, "namespace"),
            ]
        ]:
            resp = _reject(client, control_plane, path, json.dumps(body).encode())
            if field is not None:
                assert resp.status_code == 422, resp.text
                assert field in [c["field"] for c in resp.json()["details"]["causes"]], resp.text


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.one_of(
        json_values.map(lambda v: ("apply", v)),
        mutated().map(lambda b: ("apply", {"items": [b]})),
        mutated().map(lambda b: ("create", b)),
    )
)
# Found by this property: a Gateway created with metadata: null got a 500.
@example(case=("create", {**sample_of("Gateway"), "metadata": None}))
# A list as the apply request got a 500.
@example(case=("apply", [1, 2]))
def test_random_bodies_never_get_a_500(control_plane: ControlPlane, case: tuple[str, Any]) -> None:
    kind, body = case
    path = APPLY_PATH if kind == "apply" else VS_PATH
    try:
        content = json.dumps(body).encode()
    except RecursionError:  # nested past what json.dumps can write; the 400 is tested above
        assume(False)
    with _client(control_plane) as client:
        _reject(client, control_plane, path, content)
