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


def test_status_table_keeps_long_workload_names_apart(monkeypatch: Any) -> None:
    from click.testing import CliRunner

    from pilotfish.cli import ca_cmd

    node = "sidecar~10.244.0.3~productpage-v1-rfbn5bwh2n-t85jq.default~default.svc.cluster.local"
    status = {
        "mode": "self-signed",
        "trustDomain": "cluster.local",
        "rotation": "none",
        "roots": [{"fingerprint": "a" * 64, "role": "signing", "serial": "1f", "notAfter": "2036"}],
        "workloads": [_w(node, ["a" * 64], "a" * 64)],
    }
    monkeypatch.setattr(ca_cmd, "_call", lambda ctx, method, path, *a, **k: status)
    result = CliRunner().invoke(ca_cmd.status_cmd, [], obj={}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("sidecar~"))
    assert row.split() == [node, "a" * 16, "a" * 16]
