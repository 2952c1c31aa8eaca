"""Durations as Istio writes them (``"10s"``, ``"0.5s"``, ``"100ms"``, ``"1h30m"``).

Models keep durations as the strings users wrote, typed :class:`Duration`: the text as written
that also carries its value in seconds, parsed once when the model is. :func:`parse_duration`
turns a string into float seconds. The syntax is Go's ``time.ParseDuration`` (which Istio's
validation uses): a sequence of decimal numbers each with a unit ``ns``, ``us`` (or ``µs``),
``ms``, ``s``, ``m``, ``h``. Protobuf's JSON form (decimal seconds with an ``s`` suffix) is a
subset of it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ValueError when it is not a duration (``"10"``, ``"-1s"``, ``"x"``).

    Negative durations are rejected: no Istio field accepts one.
    """
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}")
    s = text.strip()
    if s == "0":
        return 0.0
    if not s:
        raise ValueError("invalid duration: empty")
    if s[0] in "+-":
        if s[0] == "-" and s[1:] not in ("0", "0s"):
            raise ValueError(f"invalid duration {text!r}: must not be negative")
        s = s[1:]
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise ValueError(f"invalid duration {text!r}")
    return total


def is_duration(text: str) -> bool:
    """True when ``text`` parses as a duration."""
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


class Duration(str):
    """A duration field's text as written (``"1.5s"``), with its value parsed once.

    Models check it as a string only (the syntax is checked by validation, which reports a bad
    duration with its field path); ``seconds`` is the parsed value and raises ValueError when
    the text is not a duration. It serializes as the text.
    """

    _seconds: float | None

    def __new__(cls, text: str) -> Duration:
        self = super().__new__(cls, text)
        try:
            self._seconds = parse_duration(text)
        except ValueError:
            self._seconds = None
        return self

    @property
    def seconds(self) -> float:
        if self._seconds is None:
            raise ValueError(f"invalid duration {str(self)!r}")
        return self._seconds

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(
            cls, core_schema.str_schema(), serialization=core_schema.to_string_ser_schema()
        )
