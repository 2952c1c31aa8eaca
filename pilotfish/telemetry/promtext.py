"""Prometheus text exposition: parse, rename to Istio's names, merge sources, render. Pure.

What a sidecar's agent serves on ``:15020/stats/prometheus`` is the merge of three sources, in
this order (as Istio's pilot-agent merges them):

1. Envoy's ``/stats/prometheus``, where series Envoy exports as ``envoy_istio_*`` (the standard
   metrics emitted under the ``istio`` stats scope; Envoy cannot drop its ``envoy_`` prefix)
   are renamed ``istio_*``;
2. the agent's own metrics (``istio_build``, its scrape counters);
3. the app's own metrics, when its pod declares ``prometheus.io/scrape``.

A metric family present in an earlier source wins over the same family in a later one, so an
app cannot shadow the mesh's series; the result is one valid exposition with each family once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pilotfish.api.peer import OWN_LABEL_REMOVED, own_label, unpack_labels

__all__ = [
    "CONTENT_TYPE",
    "ENVOY_ISTIO_PREFIX",
    "ISTIO_PREFIX",
    "Family",
    "Sample",
    "merge",
    "parse",
    "rename_prefix",
    "render",
    "unpacked",
    "with_own_labels",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ENVOY_ISTIO_PREFIX = "envoy_istio_"
ISTIO_PREFIX = "istio_"
#: Istio labels that are empty rather than ``unknown`` when there is no value.
KEEP_EMPTY = frozenset({"grpc_response_status"})


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float
    #: Milliseconds since the epoch, as written (``None``: none given).
    timestamp: int | None = None

    def renamed(self, name: str) -> Sample:
        return Sample(name, self.labels, self.value, self.timestamp)

    def with_unknowns(self) -> Sample:
        """Empty label values as Istio writes them: ``unknown`` (Envoy leaves what it cannot
        fill empty; ``grpc_response_status`` stays empty for plain HTTP, as in Istio)."""
        labels = tuple(
            (k, "unknown" if v == "" and k not in KEEP_EMPTY else v) for k, v in self.labels
        )
        return Sample(self.name, labels, self.value, self.timestamp)


@dataclass(frozen=True)
class Family:
    """One metric family: its exposition name (as in ``# TYPE``), type, help and samples."""

    name: str
    type: str
    help: str
    samples: tuple[Sample, ...]


_SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "counter": ("_total",),
}
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*\"")
_UNESCAPE = {"\\": "\\", "n": "\n", '"': '"'}


def _unescape(text: str, escapes: dict[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(escapes.get(text[i + 1], text[i : i + 2]))
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _label_value(line: str, i: int) -> tuple[str, int]:
    """The label value starting at ``line[i]`` (after its opening quote) and the index past
    its closing quote."""
    start = i
    while i < len(line):
        if line[i] == "\\":
            i += 2
        elif line[i] == '"':
            return _unescape(line[start:i], _UNESCAPE), i + 1
        else:
            i += 1
    raise ValueError("unterminated label value")


def _sample(line: str) -> Sample:
    m = _NAME.match(line)
    if not m:
        raise ValueError(f"not a sample: {line[:80]!r}")
    name, i = m.group(), m.end()
    labels: list[tuple[str, str]] = []
    if i < len(line) and line[i] == "{":
        i += 1
        while True:
            while i < len(line) and line[i] in " ,":
                i += 1
            if i < len(line) and line[i] == "}":
                i += 1
                break
            lm = _LABEL_NAME.match(line, i)
            if not lm:
                raise ValueError(f"bad labels: {line[:80]!r}")
            label, i = _label_value(line, lm.end())
            labels.append((lm.group(1), label))
    rest = line[i:].split()
    if not rest or len(rest) > 2:
        raise ValueError(f"bad sample: {line[:80]!r}")
    try:
        value = float(rest[0])
        stamp = int(rest[1]) if len(rest) == 2 else None
    except ValueError:
        raise ValueError(f"bad value: {line[:80]!r}") from None
    return Sample(name, tuple(labels), value, stamp)


def _belongs(sample: str, family: str, mtype: str) -> bool:
    if sample == family:
        return True
    return any(sample == family + suffix for suffix in _SUFFIXES.get(mtype, ()))


def parse(text: str) -> list[Family]:
    """The families of a Prometheus text exposition, names exactly as written.

    Raises ``ValueError`` on a line that is not valid exposition.
    """
    order: list[str] = []
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    samples: dict[str, list[Sample]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line[1:].split(None, 2)
            if len(parts) >= 2 and parts[0] in ("HELP", "TYPE"):
                kind, name = parts[0], parts[1]
                rest = parts[2] if len(parts) > 2 else ""
                if name not in samples:
                    order.append(name)
                    samples[name] = []
                if kind == "TYPE":
                    types[name] = rest.strip() or "untyped"
                else:
                    helps[name] = _unescape(rest, {"\\": "\\", "n": "\n"})
                current = name
            continue
        s = _sample(line)
        family = current if current and _belongs(s.name, current, types.get(current, "")) else ""
        if not family:
            family = s.name
            if family not in samples:
                order.append(family)
                samples[family] = []
            current = family
        samples[family].append(s)
    return [
        Family(name, types.get(name, "untyped"), helps.get(name, ""), tuple(samples[name]))
        for name in order
    ]


def _rename(name: str, old: str, new: str) -> str:
    return new + name[len(old) :] if name.startswith(old) else name


def rename_prefix(
    families: Iterable[Family],
    old: str = ENVOY_ISTIO_PREFIX,
    new: str = ISTIO_PREFIX,
    own: Mapping[str, str] | None = None,
) -> list[Family]:
    """Families (and their samples) whose names start with ``old`` renamed to start with
    ``new``, with Istio's ``unknown`` for empty label values and, given the proxy's ``own``
    workload values (:func:`~pilotfish.api.peer.workload_values`), its own side's labels
    added (see :func:`with_own_labels`); the others unchanged."""
    out = []
    for f in families:
        if not f.name.startswith(old):
            out.append(f)
            continue
        samples = tuple(
            unpacked(s.renamed(_rename(s.name, old, new))).with_unknowns() for s in f.samples
        )
        samples = tuple(with_own_labels(s, own or {}) for s in samples)
        out.append(Family(_rename(f.name, old, new), f.type, f.help, samples))
    return out


def unpacked(sample: Sample) -> Sample:
    """A standard metric's sample with the labels Envoy carried packed in one tag
    (:func:`pilotfish.api.peer.unpack_labels`) as Istio's labels; a label Envoy wrote as a tag
    of its own (a Telemetry override) wins over the packed value; one marked
    :data:`~pilotfish.api.peer.OWN_LABEL_REMOVED` is dropped by :func:`with_own_labels`."""
    packed: list[tuple[str, str]] = []
    plain: dict[str, str] = {}
    for k, v in sample.labels:
        labels = unpack_labels(k, v)
        if labels is None:
            plain[k] = v
        else:
            packed += labels
    if not packed:
        return sample
    merged = dict(packed)
    merged.update(plain)
    return Sample(sample.name, tuple(merged.items()), sample.value, sample.timestamp)


def with_own_labels(sample: Sample, own: Mapping[str, str]) -> Sample:
    """A standard metric's sample with the reporting proxy's own labels (``source_*`` when it
    reports as ``source``, ``destination_*`` otherwise) that Envoy's config leaves out, since
    they are the same for every series of this proxy; a label Envoy wrote (a Telemetry
    override) is kept, one marked :data:`~pilotfish.api.peer.OWN_LABEL_REMOVED` dropped."""
    labels = dict(sample.labels)
    reporter = labels.get("reporter")
    if reporter is None:
        return sample
    for key, value in own.items():
        labels.setdefault(own_label(reporter, key), value)
    kept = tuple((k, v) for k, v in labels.items() if v != OWN_LABEL_REMOVED)
    return Sample(sample.name, kept, sample.value, sample.timestamp)


def _base(name: str) -> str:
    return name[: -len("_total")] if name.endswith("_total") else name


def merge(*sources: Sequence[Family]) -> list[Family]:
    """The families of every source, each name once: the first source to have it wins.

    ``foo`` and ``foo_total`` count as the same counter family.
    """
    seen: set[str] = set()
    out: list[Family] = []
    for source in sources:
        for f in source:
            key = _base(f.name)
            if key in seen:
                continue
            seen.add(key)
            out.append(f)
    return out


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    """A Prometheus text exposition (format 0.0.4) of ``families``."""
    lines: list[str] = []
    for f in families:
        if f.help:
            lines.append(f"# HELP {f.name} {_escape_help(f.help)}")
        lines.append(f"# TYPE {f.name} {f.type}")
        for s in f.samples:
            labels = ",".join(f'{k}="{_escape_value(v)}"' for k, v in s.labels)
            line = (
                f"{s.name}{{{labels}}} {_number(s.value)}"
                if labels
                else (f"{s.name} {_number(s.value)}")
            )
            if s.timestamp is not None:
                line += f" {s.timestamp}"
            lines.append(line)
    return "\n".join(lines) + "\n" if lines else ""
