"""The two system users of the local pod runtime.

- ``pilotfish-proxy`` runs every sidecar (Istio's ``istio-proxy``, uid 1337 there). The capture
  rules exempt its UID/GID, so Envoy's own upstream connections are not captured again.
- ``pilotfish-app`` runs the apps of the pods: unprivileged, and captured.

Users are created idempotently with ``useradd --system`` when missing (uid 1337 is asked for the
proxy when it is free, like Istio) and looked up with :mod:`pwd`. Several runtimes or test workers
may race to create the same user; a lost race is not an error.
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


def useradd_command(name: str, uid: int | None = None) -> list[str]:
    """``useradd`` arguments for a system user with its own group and no login. Pure."""
    argv = [
        "useradd",
        "--system",
        "--user-group",
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


def _id_free(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return False
    except KeyError:
        pass
    try:
        grp.getgrgid(uid)
        return False
    except KeyError:
        return True


def ensure_user(name: str, preferred_uid: int | None = None, attempts: int = 5) -> UserIds:
    """Create ``name`` as a system user if missing; return its ids.

    ``preferred_uid`` is used only when neither a user nor a group has it yet.
    """
    last: PlatformError | None = None
    for attempt in range(attempts):
        found = lookup_user(name)
        if found is not None:
            return found
        uid = preferred_uid if preferred_uid is not None and _id_free(preferred_uid) else None
        result = run(useradd_command(name, uid), check=False)
        if result.returncode == 0:
            continue
        # 9: name in use (someone else won the race); 4: uid taken meanwhile; 10: passwd locked.
        last = PlatformError(
            f"user {name}: useradd exit status {result.returncode}: {result.stderr.strip()}",
            useradd_command(name, uid),
            result.stderr,
        )
        if result.returncode not in (4, 9, 10):
            raise last
        time.sleep(0.05 * (attempt + 1))
    found = lookup_user(name)
    if found is not None:
        return found
    raise last or PlatformError(f"user {name}: could not be created")


def ensure_mesh_users(proxy_user: str = PROXY_USER, app_user: str = APP_USER) -> MeshUsers:
    """Make sure the proxy and app users exist (root needed to create them)."""
    return MeshUsers(proxy=ensure_user(proxy_user, PROXY_UID), app=ensure_user(app_user))
