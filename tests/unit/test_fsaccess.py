"""The permission walk for other users (root's os.access cannot answer it)."""

from __future__ import annotations

import os
from pathlib import Path

from pilotfish.fsaccess import R, X, access_problem, allows

NOBODY = 65534


def test_a_private_ancestor_hides_everything_below_it(open_dir: Path) -> None:
    private = open_dir / "home"
    (private / "repo").mkdir(parents=True)
    tool = private / "repo" / "envoy"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    private.chmod(0o700)
    problem = access_problem(tool, NOBODY, [NOBODY], X)
    assert (
        problem == f"{private} is mode 0700 (owner uid {os.getuid()}): other users cannot enter it"
    )
    private.chmod(0o755)
    assert access_problem(tool, NOBODY, [NOBODY], X) is None


def test_the_target_itself_is_checked_for_what_is_wanted(open_dir: Path) -> None:
    f = open_dir / "file"
    f.write_text("x")
    f.chmod(0o640)
    assert "other users cannot read it" in str(access_problem(f, NOBODY, [NOBODY], R))
    assert access_problem(f, NOBODY, [os.getgid()], R) is None  # group may read
    assert access_problem(f, 0, [0], R) is None  # root may
    assert access_problem(open_dir / "missing", NOBODY, [NOBODY], R) is not None


def test_mode_bits_by_owner_group_and_others() -> None:
    st = os.stat_result((0o100750, 0, 0, 0, 1000, 2000, 0, 0, 0, 0))
    assert allows(st, 1000, [], R | X)
    assert allows(st, 5, [2000], R | X)
    assert not allows(st, 5, [5], R)
