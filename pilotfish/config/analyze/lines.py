"""Field paths to file lines: where in a YAML file ``spec.http[0].route[0].destination`` is.

Analyzers name the field a finding is about; for resources read from files the CLI shows the
line of that field (as istioctl does), found by walking the YAML node tree of the document.
When part of the path is absent (a required field left out), the line of the deepest field
present is used; when nothing matches (or the document is a ``kind: List``), the result is
None and the caller falls back to the line the resource starts on.
"""

from __future__ import annotations

import re

import yaml

__all__ = ["field_line", "split_path"]

_TOKEN = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")


def split_path(path: str) -> list[str | int]:
    """``spec.http[0].match[1].headers[x-user]`` -> ``['spec', 'http', 0, 'match', 1, ...]``."""
    out: list[str | int] = []
    for name, bracket in _TOKEN.findall(path):
        if name:
            out.append(name)
        elif bracket.isdigit():
            out.append(int(bracket))
        else:
            out.append(bracket)
    return out


def _document(text: str, index: int) -> yaml.Node | None:
    loader = yaml.SafeLoader(text)
    try:
        i = 0
        while loader.check_node():
            node = loader.get_node()
            if i == index:
                return node
            i += 1
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    return None


def field_line(text: str, document: int, path: str) -> int | None:
    """1-based line of ``path`` in the ``document``-th YAML document of ``text``, or None."""
    node = _document(text, document)
    if node is None:
        return None
    line: int | None = None
    for token in split_path(path):
        found: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if str(getattr(key_node, "value", "")) == str(token):
                    found = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(token, int)
            and 0 <= token < len(node.value)
        ):
            found = node.value[token]
            line = found.start_mark.line + 1
        if found is None:
            break
        node = found
    return line
