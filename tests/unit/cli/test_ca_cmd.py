from __future__ import annotations

from typing import Any

from pilotfish.cli.ca_cmd import next_steps, progress


def _status(roots: list[tuple[str, str]], workloads: list[dict[str, Any]]) -> dict[str, Any]:
    signing = next(fp for fp, role in roots if role == "signing")
    return {
        "signingRoot": signing,
        "roots": [{"fingerprint": fp, "role": role} for fp, role in roots],
        "workloads": workloads,
    }


def _w(node: str, trusts: list[str], signed_by: str, watching: bool = True) -> dict[str, Any]:
    return {"node": node, "trusts": trusts, "signedBy": signed_by, "watching": watching}


def test_progress_of_each_step() -> None:
    added = _status(
        [("old", "signing"), ("new", "added")],
        [_w("a", ["old", "new"], "old"), _w("b", ["old"], "old"), _w("c", ["old"], "old", False)],
    )
    got = progress(added, "add")
    assert (got.done, got.total, got.lagging) == (1, 2, ("b",))
    activated = _status(
        [("new", "signing"), ("old", "old")],
        [_w("a", ["new", "old"], "new"), _w("b", ["new", "old"], "old")],
    )
    assert progress(activated, "activate").lagging == ("b",)
    retired = _status(
        [("new", "signing")], [_w("a", ["new"], "new"), _w("b", ["new", "old"], "new")]
    )
    assert progress(retired, "retire").lagging == ("b",)
    assert progress(_status([("new", "signing")], []), "retire").complete


def test_a_stopped_rotation_resumes_where_it_was() -> None:
    assert next_steps("none", None) == [("add", True), ("activate", True), ("retire", True)]
    assert next_steps("added", None) == [("add", False), ("activate", True), ("retire", True)]
    assert next_steps("activated", None) == [("activate", False), ("retire", True)]
    assert next_steps("activated", "retire") == [("retire", True)]
