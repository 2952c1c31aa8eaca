"""The context file, like a kubeconfig: where the control plane is and its token.

Shared by the server (which writes it) and the CLI (which reads it), so neither imports the
other.

Default path ``~/.pilotfish/config``; ``$PILOTFISH_CONFIG`` names another. ``pilotfish server``
writes (or updates) its own context there and makes it current, so the CLI finds the server
with no flags. Shape::

    current-context: local
    contexts:
    - name: local
      server: http://127.0.0.1:15014
      token: <admin token>
      data-dir: /root/.pilotfish/data     # written by `pilotfish up`: where its mesh lives
      state-dir: /root/.pilotfish/state

``pilotfish up`` adds ``data-dir`` and ``state-dir`` to the context of the mesh it started, so
the local-mesh commands (``status``, ``logs``, ``exec``, ``down``) find that mesh with no
flags, as ``get`` and ``apply`` find its API.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ENV_CONFIG = "PILOTFISH_CONFIG"
DEFAULT_HOME = Path.home() / ".pilotfish"


def config_path() -> Path:
    override = os.environ.get(ENV_CONFIG)
    return Path(override) if override else DEFAULT_HOME / "config"


@dataclass(frozen=True)
class Context:
    name: str
    server: str
    token: str
    #: The local mesh's data and state directories (``pilotfish up``); empty otherwise.
    data_dir: str = ""
    state_dir: str = ""
    #: The CA file that verifies an ``https://`` server (kubeconfig's
    #: ``certificate-authority``); empty: the system's trust store.
    ca_file: str = ""


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return data if isinstance(data, dict) else {}


def load_context(name: str | None = None, path: Path | None = None) -> Context | None:
    """The named context, or the current one; None when the file or context is missing."""
    data = _read(path or config_path())
    wanted = name or data.get("current-context")
    for c in data.get("contexts") or []:
        if c.get("name") == wanted:
            return Context(
                str(c["name"]),
                str(c["server"]),
                str(c.get("token") or ""),
                str(c.get("data-dir") or ""),
                str(c.get("state-dir") or ""),
                str(c.get("certificate-authority") or ""),
            )
    return None


def save_context(ctx: Context, path: Path | None = None, make_current: bool = True) -> Path:
    """Add or replace ``ctx`` in the config file (created 0600), optionally making it current."""
    path = path or config_path()
    data = _read(path)
    contexts = [c for c in (data.get("contexts") or []) if c.get("name") != ctx.name]
    entry = {"name": ctx.name, "server": ctx.server, "token": ctx.token}
    if ctx.data_dir:
        entry["data-dir"] = ctx.data_dir
    if ctx.state_dir:
        entry["state-dir"] = ctx.state_dir
    if ctx.ca_file:
        entry["certificate-authority"] = ctx.ca_file
    contexts.append(entry)
    data["contexts"] = contexts
    if make_current or not data.get("current-context"):
        data["current-context"] = ctx.name
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return path
