"""What the pods' unprivileged users need from a checkout they may not be able to reach.

The runtime runs as root from wherever Pilotfish was installed - often a private directory such
as ``/root/src/pilotfish`` (``/root`` is mode 0700). Two things must still work there:

- **Envoy** runs as the proxy user. When that user cannot execute the binary in place (inside
  the virtualenv), :func:`stage_envoy` copies it once into a root-owned, world-readable cache
  (``/var/cache/pilotfish/envoy-<size>-<mtime>/envoy``) and every sidecar runs that copy.
- **Apps** run as the app user with the runtime's working directory as theirs (commands like
  ``python3 samples/bookinfo/src/details.py``). When that user cannot reach the directory but
  may read the directory itself, :func:`workdir_plan` asks for a bind mount of it onto a
  directory under the runtime's run directory, made *inside the app's own mount namespace*
  (``ip netns exec`` gives every pod process one): nothing is mounted on the host, so nothing
  can be left behind. When the directory itself is private, the pod cannot run and the reason
  says how to fix it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pilotfish.fsaccess import R, X, access_problem, allows
from pilotfish.platform.local.users import UserIds

__all__ = ["ENVOY_CACHE", "WorkdirPlan", "stage_envoy", "workdir_plan"]

ENVOY_CACHE = Path("/var/cache/pilotfish")


def _gids(user: UserIds) -> list[int]:
    try:
        return [user.gid, *os.getgrouplist(user.name, user.gid)]
    except (KeyError, OSError):
        return [user.gid]


def stage_envoy(binary: Path, proxy: UserIds, cache: Path = ENVOY_CACHE) -> Path:
    """The Envoy binary the proxy user can execute: ``binary`` itself, or a cached copy."""
    if access_problem(binary, proxy.uid, _gids(proxy), X) is None:
        return binary
    st = binary.stat()
    target_dir = cache / f"envoy-{st.st_size}-{st.st_mtime_ns}"
    target = target_dir / "envoy"
    if target.is_file() and target.stat().st_size == st.st_size:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o755)
    for old in cache.glob("envoy-*"):  # one copy at a time: earlier versions go
        if old != target_dir:
            shutil.rmtree(old, ignore_errors=True)
    target_dir.mkdir(mode=0o755, exist_ok=True)
    tmp = target_dir / f".envoy.{os.getpid()}"
    shutil.copyfile(binary, tmp)
    tmp.chmod(0o755)
    tmp.replace(target)
    problem = access_problem(target, proxy.uid, _gids(proxy), X)
    if problem:
        raise PermissionError(f"Envoy copied to {target}, still not executable: {problem}")
    return target


@dataclass(frozen=True)
class WorkdirPlan:
    """How apps get their working directory."""

    #: The directory apps start in.
    cwd: Path
    #: ``(source, mount point)`` to bind inside the app's mount namespace first, if needed.
    bind: tuple[Path, Path] | None = None
    #: Why apps cannot use the working directory at all (the pod cannot start).
    problem: str = ""


def workdir_plan(workdir: Path, app: UserIds, mount_point: Path) -> WorkdirPlan:
    """How the app user reaches ``workdir``: directly, through a bind mount, or not at all."""
    gids = _gids(app)
    if access_problem(workdir, app.uid, gids, R | X) is None:
        return WorkdirPlan(workdir)
    try:
        st = workdir.stat()
    except OSError as exc:
        return WorkdirPlan(workdir, problem=f"working directory {workdir}: {exc.strerror}")
    if allows(st, app.uid, gids, R | X):
        return WorkdirPlan(mount_point, bind=(workdir, mount_point))
    return WorkdirPlan(
        workdir,
        problem=(
            f"the apps' working directory {workdir} is mode {st.st_mode & 0o7777:04o}: user "
            f"{app.name} cannot read it (make it readable with `chmod o+rx {workdir}`, or "
            "start the mesh with `pilotfish up --workdir DIR`)"
        ),
    )
