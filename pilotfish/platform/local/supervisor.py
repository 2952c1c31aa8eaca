"""The local mesh restarts its control plane by itself.

The pod runtime (a part of every ``pilotfish up`` mesh) watches the control plane recorded in
``<state>/mesh.json``: when that process is gone (killed, crashed) and no ``up``/``down``/
``install`` is changing the mesh (they hold the mesh lock), it starts the same command line
again, appending to the same log, and records the new pid, so ``status`` and ``down`` find
it. Meanwhile every Envoy keeps serving with the config it has; agents reconnect to the new
control plane with their usual backoff and get their config again.

A control plane that keeps dying is restarted with a growing delay (1 s, doubling up to 30 s,
back to 1 s once one ran for a minute), so a broken one does not spin.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from pilotfish.platform.local.meshfile import load_mesh, mesh_lock, process_alive, save_mesh

log = logging.getLogger(__name__)

#: How often the control plane is looked at (seconds).
CHECK_INTERVAL = 0.5
MAX_BACKOFF = 30.0
#: A control plane that ran this long resets the backoff.
STABLE_AFTER = 60.0


class ControlPlaneSupervisor:
    def __init__(self, state_dir: Path, stop: threading.Event) -> None:
        self.state_dir = state_dir
        self.stop = stop
        self._children: list[subprocess.Popen[bytes]] = []
        self._backoff = 1.0
        self._last_start = 0.0
        self._not_before = 0.0
        self.thread = threading.Thread(target=self._run, name="cp-supervisor", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        misses = 0
        while not self.stop.wait(CHECK_INTERVAL):
            self._children = [c for c in self._children if c.poll() is None]  # reap
            mesh = load_mesh(self.state_dir) or {}
            entry = mesh.get("server")
            if not entry or process_alive(entry):
                misses = 0
                continue
            misses += 1
            if misses < 2 or time.monotonic() < self._not_before:
                continue
            try:
                self.check_once()
            except Exception:  # keep supervising whatever one attempt hit
                log.exception("could not restart the control plane")

    def check_once(self) -> dict[str, Any] | None:
        """Restart the control plane if it is gone; the new entry, or None."""
        with mesh_lock(self.state_dir, wait=False) as got:
            if not got:
                return None  # up/down/install is changing the mesh: it decides
            mesh = load_mesh(self.state_dir) or {}
            entry = mesh.get("server")
            if not entry or process_alive(entry):
                return None
            now = time.monotonic()
            if self._last_start and now - self._last_start >= STABLE_AFTER:
                self._backoff = 1.0
            argv = [str(a) for a in entry["argv"]]
            with open(entry["log"], "ab") as out:
                out.write(b"--- the control plane was gone: restarted by the pod runtime ---\n")
                out.flush()
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=dict(os.environ),
                )
            self._children.append(proc)
            new = {**entry, "pid": proc.pid, "restarts": int(entry.get("restarts") or 0) + 1}
            mesh["server"] = new
            save_mesh(self.state_dir, mesh)
            log.warning(
                "the control plane (pid %s) was gone: started it again as pid %d (restart %d)",
                entry.get("pid"), proc.pid, new["restarts"],
            )  # fmt: skip
            self._last_start = now
            self._not_before = now + self._backoff
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)
            return new


__all__ = ["ControlPlaneSupervisor"]
