"""`pilotfish wait --for=synced`: where each proxy stands with a config revision."""

from __future__ import annotations

from typing import Any

from pilotfish.cli.wait_cmd import evaluate, parse_timeout


def proxy(name: str, revision: int | None, synced: bool = True, **types: Any) -> dict[str, Any]:
    return {"pod_name": name, "namespace": "default", "config_revision": revision,
            "synced": synced, "types": types}  # fmt: skip


def test_each_proxy_acked_nacked_or_pending() -> None:
    items = [
        proxy("a", 7, CDS={"state": "SYNCED"}),
        proxy("b", 8, RDS={"state": "NACKED", "last_nack": {"error": "bad regex"}}),
        proxy("c", 6),
        proxy("d", 7, synced=False, LDS={"state": "STALE"}),
        proxy("e", None),
    ]
    v = evaluate(items, 7)
    assert v.acked == ["a.default"]
    assert v.nacked == ["b.default: RDS rejected: bad regex"]
    assert v.pending == [
        "c.default: has not received revision 7 (at 6)",
        "d.default: did not acknowledge revision 7 (LDS sent, no answer)",
        "e.default: has not received revision 7 (at none)",
    ]
    assert not v.done
    assert evaluate(items[:2], 7).done


def test_timeouts() -> None:
    assert parse_timeout("30s") == 30 and parse_timeout("2m") == 120 and parse_timeout("5") == 5
