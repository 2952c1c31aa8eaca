"""Property tests: resources mutated from the real samples never crash ``validate``.

Each example starts from a document in ``samples/``, then drops a field, replaces one with a
random JSON value of any type, nests it deeply, inflates a string, or swaps kind/apiVersion for
one Pilotfish does not serve. Whatever comes in, ``validate`` either accepts it or raises one of
Pilotfish's own errors (ValidationError, which names every field, or UnknownKindError); never
TypeError, KeyError, AttributeError, RecursionError or another Python error.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pilotfish.config.loader import load_documents
from pilotfish.config.validation import validate
from pilotfish.errors import UnknownKindError, ValidationError

SAMPLES = Path(__file__).resolve().parents[3] / "samples"


def _sample_bodies() -> list[dict[str, Any]]:
    docs = load_documents(sorted(str(p) for p in SAMPLES.rglob("*.yaml")))
    return [d.body for d in docs]


BODIES = _sample_bodies()


def sample_of(kind: str) -> dict[str, Any]:
    """A copy of the first sample of ``kind`` (the samples' order changes as files are added)."""
    return copy.deepcopy(next(b for b in BODIES if b.get("kind") == kind))


FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Any JSON value, small enough to stay fast.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indexes) to a value inside ``value``, the root excluded, down to
    20 levels (below that lies only what ``_nest`` made)."""
    out: list[tuple[Any, ...]] = []
    if len(prefix) >= 20:
        return out
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


def _parent(body: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        body = body[step]
    return body


def _nest(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    body = copy.deepcopy(draw(st.sampled_from(BODIES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(body)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(body, path)
        action = draw(st.sampled_from(["drop", "replace", "nest", "huge", "kind"]))
        if action == "drop":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "nest":
            parent[path[-1]] = _nest(draw(st.integers(min_value=50, max_value=3000)))
        elif action == "huge":
            parent[path[-1]] = "x" * draw(st.integers(min_value=1000, max_value=1_000_000))
        else:
            body["kind"] = draw(st.sampled_from([body.get("kind"), "Nope", "", "List"]))
            body["apiVersion"] = draw(
                st.sampled_from(
                    [body.get("apiVersion"), "networking.istio.io/v9", "v1", "", "a/b/c"]
                )
            )
    return body


def _check(body: Any) -> None:
    try:
        validate(body)
    except ValidationError as e:
        assert e.errors, "a ValidationError lists at least one problem"
        for fe in e.errors:
            assert fe.reason, f"no reason for {fe.path!r}"
        str(e)  # renders
        json.dumps([str(fe) for fe in e.errors])
    except UnknownKindError as e:
        assert str(e)


@pytest.mark.parametrize("index", range(len(BODIES)))
def test_every_sample_is_valid(index: int) -> None:
    # The starting point: the unmutated samples are accepted, so rejections below come from
    # the mutation.
    validate(copy.deepcopy(BODIES[index]))


@FUZZ
@given(mutated())
def test_mutated_samples_raise_only_pilotfish_errors(body: dict[str, Any]) -> None:
    _check(body)


@FUZZ
@given(json_values)
def test_any_json_value_as_a_body(body: Any) -> None:
    _check(body)


@FUZZ
@given(st.sampled_from(BODIES), st.sampled_from(["spec", "metadata"]), json_values)
def test_a_top_level_section_of_the_wrong_type_is_named(
    body: dict[str, Any], section: str, value: Any
) -> None:
    body = {**copy.deepcopy(body), section: value}
    try:
        validate(body)
    except ValidationError as e:
        if not isinstance(value, dict):
            assert any(fe.path.startswith(section) for fe in e.errors), str(e)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.integers(min_value=101, max_value=5000))
# Found by test_mutated_samples_raise_only_pilotfish_errors: a VirtualService whose field was
# nested 3000 levels deep made validate raise RecursionError.
@example(3000)
def test_deep_nesting_is_refused_by_field(depth: int) -> None:
    body = sample_of("VirtualService")
    body["spec"] = {"hosts": _nest(depth)}
    with pytest.raises(ValidationError) as info:
        validate(body)
    (fe,) = info.value.errors
    assert fe.path.startswith("spec.hosts")
    assert "nested deeper than 100 levels" in fe.reason
