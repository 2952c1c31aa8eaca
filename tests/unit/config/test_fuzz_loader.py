"""Property tests: whatever text the loader is given, it returns documents or raises LoadError.

Inputs are the real sample files cut, spliced with random characters, deeply nested in flow
or block style, or random text of any kind; YAML and JSON alike. Never a Python error
(RecursionError, TypeError, ...) and every LoadError names the file.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pilotfish.config.loader import parse_json, parse_yaml
from pilotfish.errors import LoadError

SAMPLES = Path(__file__).resolve().parents[3] / "samples"
TEXTS = [p.read_text() for p in sorted(SAMPLES.rglob("*.yaml"))]

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def mangled(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(TEXTS))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        i = draw(st.integers(min_value=0, max_value=len(text)))
        action = draw(st.sampled_from(["cut", "insert", "nest", "block"]))
        if action == "cut":
            text = text[:i] + text[i + draw(st.integers(min_value=1, max_value=50)) :]
        elif action == "insert":
            text = text[:i] + draw(st.text(max_size=20)) + text[i:]
        elif action == "nest":
            depth = draw(st.integers(min_value=10, max_value=500))
            text = text[:i] + "[" * depth + "]" * depth + text[i:]
        else:
            depth = draw(st.integers(min_value=10, max_value=300))
            text = "".join(f"{' ' * d}k{d}:\n" for d in range(depth)) + text
    return text


def _check_yaml(text: str) -> None:
    try:
        for doc in parse_yaml(text, "in.yaml"):
            assert isinstance(doc.body, dict)
    except LoadError as e:
        assert "in.yaml" in str(e)


def _check_json(text: str) -> None:
    try:
        for doc in parse_json(text, "in.json"):
            assert isinstance(doc.body, dict)
    except LoadError as e:
        assert "in.json" in str(e)


@FUZZ
@given(mangled())
def test_mangled_samples_load_or_raise_load_error(text: str) -> None:
    _check_yaml(text)


@FUZZ
@given(st.text(max_size=200))
# Found by this property: a control character made the YAML reader raise outside the
# LoadError handling.
@example("\x1f")
def test_any_text_as_yaml(text: str) -> None:
    _check_yaml(text)


@FUZZ
@given(st.text(max_size=200))
def test_any_text_as_json(text: str) -> None:
    _check_json(text)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.integers(min_value=101, max_value=1000), st.sampled_from(["[", "{", '{"a":']))
# Found by test_deep_nesting: "[" nested 1000 deep raised RecursionError from the YAML composer.
@example(1000, "[")
def test_deep_nesting(depth: int, opener: str) -> None:
    closer = {"[": "]", "{": "}", '{"a":': "}"}[opener]
    inner = "1" if opener == '{"a":' else ""
    text = '{"kind": "List", "items": ' + opener * depth + inner + closer * depth + "}"
    _check_yaml(text)
    _check_json(text)
