"""Reading resources from files, directories and stdin, and writing YAML back out.

``load_documents`` follows ``kubectl apply -f``: a path may be a file, a directory (its
``*.yaml``, ``*.yml`` and ``*.json`` files, sorted by name, not recursive) or ``-`` for stdin.
A file may hold several YAML documents; empty documents are skipped and ``kind: List``
documents are expanded into their ``items``. Every document remembers where it came from
(file, 0-based document index, 1-based line) so errors can point at it.

YAML is read the way Kubernetes reads it into JSON: timestamps stay strings and mapping keys
become strings (``8080:`` -> ``"8080"``), so a body compares equal to its stored JSON form.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import yaml

from pilotfish.errors import LoadError, Source

_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class Document:
    """One resource body and where it was read from."""

    body: dict[str, Any]
    source: Source


#: The deepest nesting of mappings and sequences a resource may have. Istio's and Kubernetes'
#: resources stay far below it (an EnvoyFilter patch is about 15 levels); deeper input is refused
#: by field instead of exhausting Python's recursion limit.
MAX_DEPTH = 100


class _Loader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver (``2024-01-01`` stays a string), refusing
    nesting deeper than MAX_DEPTH while composing (fast, with the line) instead of recursing
    until Python's limit."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH + 1:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested deeper than {MAX_DEPTH} levels",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def too_deep(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """The field path (``spec.a[0].b``) of the first value nested deeper than ``limit``, else
    None. Iterative, so it is safe on input of any depth."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > limit:
            return path
        if isinstance(item, dict):
            for k, v in item.items():
                stack.append((v, f"{path}.{k}" if path else str(k), depth + 1))
        elif isinstance(item, list | tuple):
            for i, v in enumerate(item):
                stack.append((v, f"{path}[{i}]", depth + 1))
    return None


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, bool):
        return "true" if k else "false"
    if k is None:
        return "null"
    return str(k)


def normalize(value: Any) -> Any:
    """A JSON-shaped copy: mapping keys as strings, tuples as lists."""
    if isinstance(value, dict):
        return {_key(k): normalize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    return value


def _expand(data: Any, node: yaml.Node | None, file: str, index: int, line: int) -> list[Document]:
    """One document's resources: the body itself, or the items of a ``kind: List``."""
    source = Source(file, index, line)
    if data is None:
        return []
    if not isinstance(data, dict):
        raise LoadError(
            f"document is not a mapping (got {type(data).__name__}); "
            "expected an object with apiVersion, kind and metadata",
            source,
        )
    deep = too_deep(data)
    if deep is not None:
        raise LoadError(f"{deep}: nested deeper than {MAX_DEPTH} levels", source)
    body = normalize(data)
    if body.get("kind") != "List" or "items" not in body:
        return [Document(body, source)]
    items = body.get("items") or []
    if not isinstance(items, list):
        raise LoadError("List.items must be a sequence", source)
    item_lines = _item_lines(node, len(items), line)
    out: list[Document] = []
    for item, item_line in zip(items, item_lines, strict=True):
        out.extend(_expand(item, None, file, index, item_line))
    return out


def _item_lines(node: yaml.Node | None, count: int, default: int) -> list[int]:
    """1-based lines of the ``items`` entries of a List document node."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if getattr(key_node, "value", None) == "items" and isinstance(
                value_node, yaml.SequenceNode
            ):
                lines = [n.start_mark.line + 1 for n in value_node.value]
                if len(lines) == count:
                    return lines
    return [default] * count


def parse_yaml(text: str, file: str) -> list[Document]:
    """Every resource in a YAML (or JSON) stream; LoadError with file and line on bad syntax."""
    out: list[Document] = []
    index = 0
    loader: _Loader | None = None
    try:
        # The reader checks the characters as it is built (ReaderError on control characters).
        loader = _Loader(text)
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            line = node.start_mark.line + 1
            data = loader.construct_document(node)
            out.extend(_expand(data, node, file, index, line))
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = exc.problem or exc.context or "invalid YAML"
        raise LoadError(f"YAML syntax error: {reason}", Source(file, index, line)) from None
    except yaml.YAMLError as exc:
        raise LoadError(f"YAML error: {exc}", Source(file, index)) from None
    except RecursionError:
        raise LoadError(
            f"document nested deeper than {MAX_DEPTH} levels", Source(file, index)
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return out


def parse_json(text: str, file: str) -> list[Document]:
    """The resource (or List items) in a JSON file."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoadError(f"JSON syntax error: {exc.msg}", Source(file, 0, exc.lineno)) from None
    except RecursionError:
        raise LoadError(f"document nested deeper than {MAX_DEPTH} levels", Source(file)) from None
    return _expand(data, None, file, 0, 1)


def _files_in(directory: str) -> list[str]:
    names = sorted(os.listdir(directory))
    return [
        os.path.join(directory, n)
        for n in names
        if n.endswith(_SUFFIXES) and os.path.isfile(os.path.join(directory, n))
    ]


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except UnicodeDecodeError:
        raise LoadError("file is not UTF-8 text", Source(path)) from None
    except OSError as exc:
        raise LoadError(f"cannot read file: {exc.strerror}", Source(path)) from None


def load_documents(paths: Sequence[str], stdin: TextIO | None = None) -> list[Document]:
    """Every resource in ``paths`` (files, directories, ``-`` for stdin), in order."""
    out: list[Document] = []
    for path in paths:
        if path == "-":
            stream = stdin if stdin is not None else sys.stdin
            out.extend(parse_yaml(stream.read(), "-"))
            continue
        if not os.path.exists(path):
            raise LoadError(f'the path "{path}" does not exist')
        files = _files_in(path) if os.path.isdir(path) else [path]
        for file in files:
            text = _read(file)
            if file.endswith(".json"):
                out.extend(parse_json(text, file))
            else:
                out.extend(parse_yaml(text, file))
    return out


# --- output ----------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style, keys in insertion order, multi-line strings as literal blocks; sequences
    are not indented under their key, as ``kubectl get -o yaml`` and Istio's docs write them."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_representer)


def _plain(obj: Any) -> Any:
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return obj


def dump_yaml(obj: Any) -> str:
    """``obj`` (a body, a list, or a model) as block-style YAML, key order kept."""
    return yaml.dump(
        _plain(obj),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )


def dump_yaml_documents(objs: Sequence[Any]) -> str:
    """Several bodies as one multi-document YAML stream separated by ``---``."""
    return "---\n".join(dump_yaml(o) for o in objs)
