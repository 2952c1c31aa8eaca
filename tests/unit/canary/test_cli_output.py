"""`pilotfish get canaries` columns and the `describe canary` analysis table."""

from __future__ import annotations

from pilotfish.cli.output import canary_steps, resource_table

CANARY = {
    "metadata": {"name": "podinfo", "namespace": "test"},
    "status": {
        "phase": "Progressing",
        "canaryWeight": 20,
        "failedChecks": 1,
        "lastTransitionTime": "2026-12-06T10:00:00Z",
        "steps": [
            {"time": "2026-12-06T10:00:02Z", "weight": 10, "outcome": "weight"},
            {
                "time": "2026-12-06T10:00:04Z",
                "weight": 10,
                "outcome": "failed",
                "checks": [
                    {"name": "request-success-rate", "range": ">= 99", "error": "no values found"}
                ],
            },
            {
                "time": "2026-12-06T10:00:06Z",
                "weight": 10,
                "outcome": "passed",
                "checks": [
                    {"name": "request-success-rate", "range": ">= 99", "value": 100.0, "ok": True},
                    {"name": "request-duration", "range": "<= 500", "value": 812.5, "ok": False},
                ],
            },
        ],
    },
}


def test_get_canaries_shows_flaggers_columns() -> None:
    lines = resource_table("Canary", [CANARY], False, False).splitlines()
    assert lines[0].split() == [
        "NAME", "STATUS", "WEIGHT", "FAILEDCHECKS", "LASTTRANSITIONTIME", "AGE"
    ]  # fmt: skip
    assert lines[1].split()[:5] == ["podinfo", "Progressing", "20", "1", "2026-12-06T10:00:00Z"]


def test_describe_lists_each_step_with_its_measured_values() -> None:
    lines = canary_steps(CANARY)
    assert lines[0] == "Analysis:"
    assert "request-success-rate: no values found" in lines[3]
    assert "request-success-rate=100 (>= 99) ok; request-duration=812.5 (<= 500) FAILED" in lines[4]
    assert canary_steps({"status": {}}) == ["Analysis:     <none>"]
