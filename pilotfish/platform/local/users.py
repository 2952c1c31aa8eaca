"""The two system users of the local pod runtime.

- ``pilotfish-proxy`` runs every sidecar (Istio's ``istio-proxy``, uid 1337 there). The capture
  rules exempt its UID/GID, so Envoy's own upstream connections are not captured again.
- ``pilotfish-app`` runs the apps of the pods: unprivileged, and captured.

Users (each with its own group) are created idempotently with ``groupadd``/``useradd --system``
when missing, with uid and gid 1337 for the proxy when free (like Istio), and looked up with
:mod:`pwd`. Several runtimes or test workers may race to create the same user; a lost race is
not an error.
"""

from __future__ import annotations

import grp
import pwd
import time
from dataclasses import dataclass

from pilotfish.platform.local.commands import PlatformError, run

__all__ = [
    "APP_USER",
    "PROXY_UID",
    "PROXY_USER",
    "MeshUsers",
    "UserIds",
    "ensure_mesh_users",
    "ensure_user",
    "groupadd_command",
    "lookup_user",
    "useradd_command",
]

PROXY_USER = "pilotfish-proxy"
APP_USER = "pilotfish-app"
#: Istio's sidecar UID; used for the proxy user when nothing else has it.
PROXY_UID = 1337


@dataclass(frozen=True)
class UserIds:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class MeshUsers:
    proxy: UserIds
    app: UserIds


def groupadd_command(name: str, gid: int | None = None) -> list[str]:
    """``groupadd`` arguments for the user's own system group. Pure."""
    return ["groupadd", "--system", *(["--gid", str(gid)] if gid is not None else []), name]


def useradd_command(name: str, uid: int | None = None, group: str | None = None) -> list[str]:
    """``useradd`` arguments: a system user in ``group`` (default: its own), no login. Pure."""
    argv = [
        "useradd",
        "--system",
        "--gid",
        group or name,
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "Pilotfish mesh",
    ]
    if uid is not None:
        argv += ["--uid", str(uid)]
    return [*argv, name]


def lookup_user(name: str) -> UserIds | None:
    """The user's uid and primary gid, or ``None`` if there is no such user."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return UserIds(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _uid_free(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return False
    except KeyError:
        return True


def _gid_free(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
        return False
    except KeyError:
        return True


# useradd/groupadd exit statuses that a concurrent creator can cause: 4 id taken meanwhile,
# 9 name taken meanwhile, 10 the files are locked by another writer.
_RACE = (4, 9, 10)


def ensure_user(name: str, preferred_id: int | None = None, attempts: int = 5) -> UserIds:
    """Create ``name`` (and its own group) as a system user if missing; return its ids.

    ``preferred_id`` becomes the uid and the gid when nothing has it yet (Istio's 1337 for the
    proxy); otherwise the system picks.
    """
    last: PlatformError | None = None
    for attempt in range(attempts):
        found = lookup_user(name)
        if found is not None:
            return found
        if not _group_exists(name):
            gid = preferred_id if preferred_id is not None and _gid_free(preferred_id) else None
            argv = groupadd_command(name, gid)
        else:
            uid = preferred_id if preferred_id is not None and _uid_free(preferred_id) else None
            argv = useradd_command(name, uid)
        result = run(argv, check=False)
        if result.returncode == 0:
            continue
        last = PlatformError(
            f"user {name}: {argv[0]} exit status {result.returncode}: {result.stderr.strip()}",
            argv,
            result.stderr,
        )
        if result.returncode not in _RACE:
            raise last
        time.sleep(0.05 * (attempt + 1))
    found = lookup_user(name)
    if found is not None:
        return found
    raise last or PlatformError(f"user {name}: could not be created")


def ensure_mesh_users(proxy_user: str = PROXY_USER, app_user: str = APP_USER) -> MeshUsers:
    """Make sure the proxy and app users exist (root needed to create them)."""
    return MeshUsers(proxy=ensure_user(proxy_user, PROXY_UID), app=ensure_user(app_user))
