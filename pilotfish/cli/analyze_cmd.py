"""`pilotfish analyze`: cross-resource analysis with Istio's codes, as `istioctl analyze`.

The command gathers resources (the live config of the control plane through the public list
endpoints, the files given with ``-f``, or both), hands them to the pure analysis in
:mod:`pilotfish.config.analyze`, and prints the findings as istioctl does, one per line
(wrapped here)::

    Error [IST0101] (VirtualService default/reviews vs.yaml:12) Referenced host+subset in
    destinationrule not found: "reviews+v4"

The rendering helpers (:func:`message_line`, :func:`structured`, :func:`failed`) are pure;
reading files and calling the API happen in :func:`fetch_live`, ``_Files`` and the command.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from pilotfish.api import kinds
from pilotfish.cli import output
from pilotfish.cli.client import ApiClient
from pilotfish.config.analyze import (
    ANALYZERS,
    Input,
    Level,
    Message,
    Suppression,
    analyze,
    documentation_url,
    field_line,
)
from pilotfish.config.loader import Document, load_documents, parse_yaml
from pilotfish.errors import ApiError

__all__ = ["analyze_cmd", "failed", "fetch_live", "message_line", "origin_text", "structured"]

LEVELS = ("Info", "Warning", "Error")
DOCS = "https://istio.io/latest/docs/reference/config/analysis"
#: istioctl's exit code when analyzers found issues (ExitAnalyzerFoundIssues), for CI scripts.
EXIT_FOUND_ISSUES = 79

#: (file, document index, field path) -> 1-based line, or None.
LineFinder = Callable[[str, int, str], int | None]


# ---------------------------------------------------------------------------- pure rendering


def origin_text(msg: Message, find_line: LineFinder | None = None) -> str | None:
    """``file:line`` of the field a message is about (files only; None for live config)."""
    src = msg.origin
    if src is None:
        return None
    line = find_line(src.file, src.document, msg.path) if find_line and msg.path else None
    line = line or src.line
    return f"{src.file}:{line}" if line else src.file


def message_line(msg: Message, find_line: LineFinder | None = None) -> str:
    """One istioctl-style line: ``Error [IST0101] (Kind ns/name file:line) text``."""
    where = str(msg.resource)
    origin = origin_text(msg, find_line)
    if origin:
        where += f" {origin}"
    return f"{msg.level.label} [{msg.code}] ({where}) {msg.text}"


def structured(
    messages: Sequence[Message], find_line: LineFinder | None = None
) -> list[dict[str, Any]]:
    """The messages for ``-o json|yaml``, with istioctl's keys: ``code``, ``level``,
    ``origin`` (the resource), ``reference`` (``file:line``, for resources from files only),
    ``message`` and ``documentationUrl``."""
    out = []
    for msg in messages:
        item: dict[str, Any] = {
            "code": msg.code,
            "documentationUrl": documentation_url(msg.code),
            "level": msg.level.label,
            "message": msg.text,
            "origin": str(msg.resource),
        }
        reference = origin_text(msg, find_line)
        if reference:
            item["reference"] = reference
        out.append(item)
    return out


def failed(messages: Sequence[Message], threshold: Level) -> bool:
    """Any message at or above the failure threshold."""
    return any(msg.level >= threshold for msg in messages)


def target_text(namespace: str | None) -> str:
    return "all namespaces" if namespace is None else f"namespace: {namespace}"


def _check_mark(stream: Any) -> str:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "\u2714".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "OK"
    return "\u2714"


# ---------------------------------------------------------------------------- I/O


def fetch_live(client: ApiClient) -> list[Input]:
    """Every resource the control plane holds, in all namespaces (references cross them)."""
    out: list[Input] = []
    for info in kinds.KINDS:
        try:
            listing = client.list_objects(info, None)
        except ApiError as e:
            if not info.appliable and e.status in (404, 501):
                continue  # pods are served only when a runtime reports them
            raise
        out.extend(Input(item) for item in listing.get("items") or [])
    return out


class _Files:
    """Documents from ``-f`` paths, keeping each file's text to find field lines."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def load(self, paths: Sequence[str]) -> list[Document]:
        docs: list[Document] = []
        for path in paths:
            if path == "-":
                text = sys.stdin.read()
                self.texts["-"] = text
                docs.extend(parse_yaml(text, "-"))
            else:
                docs.extend(load_documents([path]))
        return docs

    def find_line(self, file: str, document: int, path: str) -> int | None:
        text = self.texts.get(file)
        if text is None:
            try:
                text = Path(file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                text = ""
            self.texts[file] = text
        return field_line(text, document, path) if text else None


def _level_option(name: str, default: str, help_text: str) -> Callable[[Any], Any]:
    return click.option(
        name,
        type=click.Choice(LEVELS, case_sensitive=False),
        default=default,
        show_default=True,
        help=help_text,
    )


@click.command("analyze")
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    help="File, directory (*.yaml, *.yml, *.json) or - for stdin to analyze. Repeatable.",
)
@click.option("-n", "--namespace", default=None, help="Namespace to analyze (default: default).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Analyze every namespace.")
@click.option(
    "--offline",
    is_flag=True,
    help="Analyze only the files, without the live config (istioctl's --use-kube=false).",
)
@click.option(
    "--use-kube",
    type=bool,
    default=True,
    show_default=True,
    help="As istioctl: --use-kube=false is --offline.",
)
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["log", "json", "yaml"]),
    default="log",
    show_default=True,
    help="Output format.",
)
@_level_option("--failure-threshold", "Error", "Lowest level that makes the exit code 79.")
@_level_option("--output-threshold", "Info", "Lowest level printed.")
@click.option("-L", "--list-analyzers", is_flag=True, help="List the analyzers and exit.")
@click.option(
    "-S",
    "--suppress",
    "suppressions",
    multiple=True,
    metavar="CODE=RESOURCE",
    help="Suppress messages of a code (or name) for matching resources, as istioctl: "
    '"IST0102=Namespace frod", "PodMissingProxy=Pod *.default" (* is a wildcard). Repeatable.',
)
@click.pass_obj
def analyze_cmd(
    g: Any,
    files: tuple[str, ...],
    namespace: str | None,
    all_namespaces: bool,
    offline: bool,
    use_kube: bool,
    fmt: str,
    failure_threshold: str,
    output_threshold: str,
    list_analyzers: bool,
    suppressions: tuple[str, ...],
) -> None:
    """Find problems across resources, with Istio's codes, as `istioctl analyze`.

    Without -f, analyzes the live config of the control plane; with -f, the files together
    with the live config (a file replaces the live resource of the same name); with --offline,
    the files alone. Findings are reported for the namespace asked for (-n, default
    `default`; -A for all) and for every resource read from a file; resources elsewhere still
    count as references. Exit code 79 (as istioctl) when a finding reaches --failure-threshold.

    \b
    Examples:
      pilotfish analyze                          # live config, namespace default
      pilotfish analyze -A
      pilotfish analyze -f my-vs.yaml            # the file against the live config
      pilotfish analyze --offline -f samples/bookinfo/networking/
      pilotfish analyze -o json
      pilotfish analyze -S "IST0102=Namespace frod" -S "IST0118=Service *.default"

    A resource can also suppress codes for itself with the annotation
    galley.istio.io/analyze-suppress: "IST0102,IST0118" (or "*").
    """
    if list_analyzers:
        for a in ANALYZERS:
            click.echo(f"{a.name}  [{', '.join(a.codes)}]  {a.description}")
        return
    try:
        rules = [Suppression.parse(text) for text in suppressions]
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--suppress") from None
    offline = offline or not use_kube
    if offline and not files:
        raise click.UsageError("--offline needs files to analyze: -f FILE|DIR|-")
    default_ns = namespace or "default"
    scope = None if all_namespaces else default_ns

    sources = _Files()
    inputs: list[Input] = []
    if not offline:
        with g.client() as client:
            try:
                inputs.extend(fetch_live(client))
            except ApiError as e:
                if e.status == 0:
                    raise ApiError(
                        0, f"{e.message} (or use --offline to analyze files only)"
                    ) from None
                raise
    docs = sources.load(files)
    inputs.extend(Input(d.body, d.source, default_ns) for d in docs)

    found = analyze(inputs, namespace=scope, suppressions=rules)
    shown = [msg for msg in found if msg.level >= Level.parse(output_threshold)]
    if fmt in ("json", "yaml"):
        click.echo(output.dump(structured(shown, sources.find_line), fmt))
    else:
        for msg in shown:
            click.echo(message_line(msg, sources.find_line))
        if not shown:
            mark = _check_mark(sys.stderr)
            click.echo(
                f"{mark} No validation issues found when analyzing {target_text(scope)}.",
                err=True,
            )
    if failed(found, Level.parse(failure_threshold)):
        if fmt == "log":
            click.echo(
                f"Error: Analyzers found issues when analyzing {target_text(scope)}.\n"
                f"See {DOCS} for more information about causes and resolutions.",
                err=True,
            )
        sys.exit(EXIT_FOUND_ISSUES)
