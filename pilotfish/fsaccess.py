"""Whether another user can reach a path: the permission walk the kernel does, done by stat.

Root passes every permission check, so a root process cannot learn with :func:`os.access`
whether the unprivileged users it starts (the proxy user running Envoy, the app user running a
pod's apps) can use a file. :func:`access_problem` walks the path from ``/`` and applies the
owner/group/other bits of every directory (search) and of the target (read/execute) for the
given uid and groups, and names the first one that stops it - e.g. a checkout under ``/root``
(mode 0700) hides everything inside it from every other user.

ACLs and capabilities are not considered (a rare case here; the result can only be stricter).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from pathlib import Path

__all__ = ["access_problem", "allows"]

R, W, X = 4, 2, 1


def allows(st: os.stat_result, uid: int, gids: Collection[int], want: int) -> bool:
    """Whether mode bits in ``st`` grant ``want`` (a mix of R/W/X) to ``uid``/``gids``. Pure."""
    if uid == 0:
        return not (want & X) or bool(st.st_mode & 0o111) or stat.S_ISDIR(st.st_mode)
    if st.st_uid == uid:
        bits = (st.st_mode >> 6) & 7
    elif st.st_gid in gids:
        bits = (st.st_mode >> 3) & 7
    else:
        bits = st.st_mode & 7
    return bits & want == want


def access_problem(path: Path, uid: int, gids: Collection[int], want: int) -> str | None:
    """Why ``uid`` (in ``gids``) cannot use ``path`` with ``want`` (R, X or R|X), or ``None``.

    The answer names the blocking directory or file and its mode, e.g.
    ``/root is mode 0700 (owner root): other users cannot enter it``.
    """
    path = Path(os.path.abspath(path))
    parts = path.parts
    current = Path(parts[0])
    for part in parts[1:]:
        try:
            st = current.stat()
        except OSError as exc:
            return f"{current}: {exc.strerror or exc}"
        if not allows(st, uid, gids, X):
            return (
                f"{current} is mode {stat.S_IMODE(st.st_mode):04o} (owner uid {st.st_uid}): "
                "other users cannot enter it"
            )
        current = current / part
    try:
        st = path.stat()
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if not allows(st, uid, gids, want):
        need = {R: "read", X: "execute" if not stat.S_ISDIR(st.st_mode) else "enter"}
        what = " and ".join(v for k, v in need.items() if want & k) or "use"
        return (
            f"{path} is mode {stat.S_IMODE(st.st_mode):04o} (owner uid {st.st_uid}): "
            f"other users cannot {what} it"
        )
    return None
