"""Meshes sharing one host: what they may not share, and the prefix lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from pilotfish.platform.local.hostmeshes import (
    MeshRecord,
    PrefixBusy,
    PrefixLock,
    conflicts,
    prefix_locked,
    read_records,
    remove_record,
    write_record,
)


def record(**kw: object) -> MeshRecord:
    base: dict[str, object] = {
        "prefix": "pf",
        "data_dir": "/root/.pilotfish/data",
        "state_dir": "/root/.pilotfish/state",
        "api": "http://127.0.0.1:15014",
        "pod_cidr": "10.244.0.0/16",
        "service_cidr": "10.96.0.0/16",
        "ports": (("127.0.0.1", 15014), ("127.0.0.1", 8080), ("0.0.0.0", 15020)),
    }
    return MeshRecord(**{**base, **kw})  # type: ignore[arg-type]


def test_a_second_default_mesh_shares_prefix_ranges_and_ports() -> None:
    found = conflicts(record(data_dir="/tmp/other"), record())
    assert found[0] == "the name prefix 'pf' (choose another with --prefix)"
    assert any("pod range 10.244.0.0/16 overlaps" in c for c in found)
    assert found[-1] == "ports 127.0.0.1:8080, 127.0.0.1:15014, 0.0.0.0:15020"


def test_meshes_that_share_nothing_may_run_side_by_side() -> None:
    other = record(
        prefix="pg",
        pod_cidr="10.245.0.0/16",
        service_cidr="10.97.0.0/16",
        ports=(("127.0.0.1", 25014), ("127.0.0.2", 8080)),
    )
    assert conflicts(other, record()) == []
    # A wildcard bind shares the port with every address.
    wildcard = record(
        prefix="pg",
        pod_cidr="10.245.0.0/16",
        service_cidr="10.97.0.0/16",
        ports=(("0.0.0.0", 8080),),
    )
    assert conflicts(wildcard, record()) == ["ports 0.0.0.0:8080"]


def test_the_prefix_lock_is_exclusive_and_seen_by_others(tmp_path: Path) -> None:
    assert not prefix_locked("pq", tmp_path)
    lock = PrefixLock.acquire("pq", tmp_path)
    try:
        assert PrefixLock.acquire("pq", tmp_path) is lock  # one per process
        # Another process's view: a second open file description cannot lock it.
        fd = os.open(tmp_path / "pq.lock", os.O_RDONLY)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        os.close(fd)
    finally:
        lock.release()
        lock.release()  # idempotent
    assert not prefix_locked("pq", tmp_path)
    held = os.open(tmp_path / "pq.lock", os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        assert prefix_locked("pq", tmp_path)
        with pytest.raises(PrefixBusy, match="'pq' is in use"):
            PrefixLock.acquire("pq", tmp_path)
    finally:
        os.close(held)


def test_records_round_trip(tmp_path: Path) -> None:
    r = record(pids=(12, 13))
    write_record(r, tmp_path)
    assert read_records(tmp_path) == [r]
    remove_record("pf", tmp_path)
    assert read_records(tmp_path) == []
