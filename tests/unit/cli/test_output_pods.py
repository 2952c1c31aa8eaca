"""`get pods` STATUS as kubectl computes it, and the Events section of `describe`."""

from __future__ import annotations

from pilotfish.cli.output import event_lines, pod_display_status, resource_table


def pod(phase: str, *states: dict[str, dict[str, str]], reason: str = "") -> dict[str, object]:
    status: dict[str, object] = {
        "phase": phase,
        "containerStatuses": [{"name": f"c{i}", "state": s} for i, s in enumerate(states)],
    }
    if reason:
        status["reason"] = reason
    return {"metadata": {"name": "p"}, "status": status}


def test_a_waiting_reason_is_the_status() -> None:
    crash = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 8s"}}
    assert pod_display_status(pod("Running", {"running": {}}, crash)) == "CrashLoopBackOff"
    assert pod_display_status(pod("Pending", reason="CreateContainerConfigError")) == (
        "CreateContainerConfigError"
    )
    starting = {"waiting": {"reason": "PodInitializing"}}
    assert pod_display_status(pod("Pending", starting)) == "Pending"
    assert pod_display_status(pod("Running", {"running": {}}, reason="ContainersNotReady")) == (
        "Running"
    )


def test_events_table_and_describe_section() -> None:
    ev = {
        "metadata": {"name": "p.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "p"},
        "type": "Warning",
        "reason": "BackOff",
        "count": 3,
        "message": "Back-off restarting failed container",
        "lastTimestamp": "2026-12-06T07:00:00Z",
    }
    table = resource_table("Event", [ev], False, False).splitlines()
    assert table[0].split() == ["NAME", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE", "AGE"]
    assert "pod/p" in table[1] and "Warning" in table[1]
    lines = event_lines([ev])
    assert lines[0] == "Events:" and "BackOff" in lines[2] and lines[2].startswith("  Warning")
    assert event_lines([]) == ["Events:       <none>"]
