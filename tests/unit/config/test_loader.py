"""load_documents and dump_yaml: files, directories, stdin, multi-document YAML, Lists, errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from pilotfish.config.loader import dump_yaml, dump_yaml_documents, load_documents
from pilotfish.errors import LoadError

VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
spec:
  hosts:
  - {name}
"""


def test_multi_document_file_with_sources(tmp_path: Path) -> None:
    f = tmp_path / "all.yaml"
    f.write_text(
        "---\n" + VS.format(name="a") + "---\n---\n# comment only\n---\n" + VS.format(name="b")
    )
    docs = load_documents([str(f)])
    assert [d.body["metadata"]["name"] for d in docs] == ["a", "b"]
    assert docs[0].source.file == str(f)
    assert (docs[0].source.document, docs[0].source.line) == (0, 2)
    # empty documents are skipped but still counted, so the index matches the file
    assert docs[1].source.document == 3
    assert docs[1].source.line == 13
    assert docs[1].body["spec"]["hosts"] == ["b"]


def test_directory_is_sorted_and_not_recursive(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(VS.format(name="b"))
    (tmp_path / "a.yaml").write_text(VS.format(name="a"))
    (tmp_path / "c.json").write_text(
        '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}'
    )
    (tmp_path / "notes.txt").write_text("not: loaded")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "d.yaml").write_text(VS.format(name="d"))
    docs = load_documents([str(tmp_path)])
    assert [d.body["metadata"]["name"] for d in docs] == ["a", "b", "c"]


def test_stdin_and_several_paths(tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    f.write_text(VS.format(name="x"))
    docs = load_documents(["-", str(f)], stdin=io.StringIO(VS.format(name="s")))
    assert [(d.source.file, d.body["metadata"]["name"]) for d in docs] == [
        ("-", "s"),
        (str(f), "x"),
    ]


def test_list_items_are_expanded_with_their_lines() -> None:
    text = """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    name: one
- apiVersion: v1
  kind: Namespace
  metadata:
    name: two
"""
    docs = load_documents(["-"], stdin=io.StringIO(text))
    assert [d.body["metadata"]["name"] for d in docs] == ["one", "two"]
    assert [d.source.line for d in docs] == [4, 8]


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(VS.format(name="a") + "---\nkind: X\nspec:\n  hosts: [a\n  b: c\n")
    with pytest.raises(LoadError) as e:
        load_documents([str(f)])
    assert e.value.source is not None
    assert e.value.source.file == str(f)
    assert e.value.source.document == 1
    assert e.value.source.line is not None and e.value.source.line >= 10
    assert str(f) in str(e.value) and "YAML syntax error" in str(e.value)


def test_non_mapping_document_is_an_error() -> None:
    with pytest.raises(LoadError, match="not a mapping"):
        load_documents(["-"], stdin=io.StringIO("- a\n- b\n"))


def test_missing_path() -> None:
    with pytest.raises(LoadError, match="does not exist"):
        load_documents(["/nonexistent/pilotfish/file.yaml"])


def test_json_syntax_error(tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text('{\n  "kind": \n}')
    with pytest.raises(LoadError) as e:
        load_documents([str(f)])
    assert e.value.source is not None and e.value.source.line == 3


def test_values_read_as_kubernetes_reads_them() -> None:
    text = """kind: X
metadata:
  creationTimestamp: 2024-01-02T03:04:05Z
spec:
  portLevelMtls:
    8080:
      mode: STRICT
"""
    (doc,) = load_documents(["-"], stdin=io.StringIO(text))
    assert doc.body["metadata"]["creationTimestamp"] == "2024-01-02T03:04:05Z"
    assert list(doc.body["spec"]["portLevelMtls"]) == ["8080"]


def test_dump_yaml_keeps_order_and_block_style() -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "labels": {"z": "1", "a": "2"}},
        "stringData": {"cert": "line1\nline2\n"},
        "list": [{"b": 1, "a": 2}],
    }
    out = dump_yaml(body)
    assert out.index("apiVersion") < out.index("kind") < out.index("metadata")
    assert out.index("z:") < out.index("a: '2'")
    assert "cert: |" in out and "{" not in out
    assert "- b: 1" in out
    assert yaml.safe_load(out) == body


def test_dump_yaml_documents_round_trip() -> None:
    bodies = [{"kind": "A", "n": 1}, {"kind": "B", "n": 2}]
    assert list(yaml.safe_load_all(dump_yaml_documents(bodies))) == bodies
