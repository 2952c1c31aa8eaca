"""Reads `pilotfish get pods -o json` on stdin; prints "READY/TOTAL" and one line per pod that
reports why it cannot run. Exit 0: at least MIN pods, all ready; 3: some pod reports a
problem; 1: not ready yet. Used by scripts/demo.sh."""

from __future__ import annotations

import json
import sys
from typing import Any

FAILING = ("CrashLoopBackOff", "CreateContainerConfigError", "StartError")


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def problem(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    for c in status.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in FAILING:
            return f"{waiting['reason']} ({c.get('name')}): {waiting.get('message', '')}"
    if status.get("reason") in FAILING or status.get("phase") == "Failed":
        return f"{status.get('reason') or status.get('phase')}: {status.get('message', '')}"
    return ""


def main() -> int:
    minimum = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    pods = json.load(sys.stdin).get("items", [])
    ok = [p for p in pods if ready(p)]
    bad = [(p["metadata"]["name"], problem(p)) for p in pods if problem(p)]
    print(f"{len(ok)}/{len(pods)}")
    for name, why in bad:
        print(f"  {name}: {why}")
    if pods and len(ok) == len(pods) and len(pods) >= minimum:
        return 0
    return 3 if bad else 1


if __name__ == "__main__":
    sys.exit(main())
