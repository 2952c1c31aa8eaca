"""A checkout in a private directory: Envoy staged for the proxy user, apps' directory bound."""

from __future__ import annotations

from pathlib import Path

from pilotfish.platform.local.exposure import stage_envoy, workdir_plan
from pilotfish.platform.local.users import UserIds

NOBODY = UserIds("nobody", 65534, 65534)


def test_envoy_in_a_private_directory_is_copied_once_into_a_readable_cache(open_dir: Path) -> None:
    home = open_dir / "home"
    (home / "venv").mkdir(parents=True)
    binary = home / "venv" / "envoy"
    binary.write_bytes(b"\x7fELF" + b"0" * 100)
    binary.chmod(0o755)
    home.chmod(0o700)
    cache = open_dir / "cache"
    staged = stage_envoy(binary, NOBODY, cache)
    assert staged.parent.parent == cache and staged.read_bytes() == binary.read_bytes()
    assert staged.stat().st_mode & 0o777 == 0o755
    assert stage_envoy(binary, NOBODY, cache) == staged  # cached
    home.chmod(0o755)
    assert stage_envoy(binary, NOBODY, cache) == binary  # reachable: used in place


def test_apps_reach_a_private_checkout_through_a_bind_mount(open_dir: Path) -> None:
    home = open_dir / "home"
    repo = home / "repo"
    repo.mkdir(parents=True)
    repo.chmod(0o755)
    mount = open_dir / "run" / "workdir"
    assert workdir_plan(repo, NOBODY, mount).bind is None
    home.chmod(0o700)
    plan = workdir_plan(repo, NOBODY, mount)
    assert plan.bind == (repo, mount) and plan.cwd == mount and not plan.problem
    repo.chmod(0o700)
    plan = workdir_plan(repo, NOBODY, mount)
    assert plan.bind is None
    assert f"the apps' working directory {repo} is mode 0700: user nobody cannot read it" in (
        plan.problem
    )
