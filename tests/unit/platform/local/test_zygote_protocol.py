"""The zygote's protocol, without forking: requests round-trip, exits reach the handle."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from pilotfish.platform.local.zygote import SpawnRequest, ZygoteProcess


def test_a_spawn_request_round_trips_through_its_json_line() -> None:
    request = SpawnRequest(
        argv=("--pod-name", "a b"),
        netns="pf-a",
        log_path="/tmp/x.log",
        gid=1337,
        env={"PATH": "/bin"},
        cwd="/srv",
        binds=(("/run/hosts", "/etc/hosts"),),
    )
    line = request.to_json()
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert SpawnRequest.from_json(line) == request


def test_the_handle_reports_the_exit_the_zygote_sends() -> None:
    ours, zygote_side = socket.socketpair()
    with zygote_side:
        proc = ZygoteProcess(ours, os.getpid(), ["--pod-name", "a"], Path("/tmp/x.log"))
        assert proc.poll() is None  # nothing said yet: still running
        zygote_side.sendall((json.dumps({"exit": -9}) + "\n").encode())
        assert proc.wait(2) == -9
        assert proc.poll() == -9 and proc.returncode == -9


def test_a_handle_whose_zygote_went_away_ends_when_its_process_is_gone() -> None:
    ours, zygote_side = socket.socketpair()
    zygote_side.close()
    gone = ZygoteProcess(ours, 2**22 + 12345, [], Path("/tmp/x.log"))  # no such pid
    assert gone.poll() == -9
