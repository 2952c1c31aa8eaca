"""The one place the local pod runtime runs system tools (``ip``, ``iptables-*``, ``useradd``).

Everything else in :mod:`pilotfish.platform.local` builds argument lists and scripts with pure
functions and hands them to :func:`run`, so failures are reported the same way everywhere: a
:class:`PlatformError` naming the command, its exit status and what it printed.

iptables comes in two flavours (nf_tables and legacy) that must never be mixed in one network
namespace. :class:`IptablesTools` pins one flavour for a whole runtime; the default prefers the
``iptables-nft*`` binaries and falls back to the plain names.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from pilotfish.errors import PilotfishError

__all__ = ["IptablesTools", "PlatformError", "in_netns", "run"]


class PlatformError(PilotfishError):
    """A system command of the local pod runtime failed (or is missing)."""

    def __init__(self, message: str, argv: Sequence[str] = (), stderr: str = "") -> None:
        self.argv = list(argv)
        self.stderr = stderr
        super().__init__(message)


def run(
    argv: Sequence[str],
    *,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` and capture its output as text.

    With ``check`` (the default) a non-zero exit raises :class:`PlatformError` carrying the
    command line and its stderr; a missing executable always raises.
    """
    try:
        result = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise PlatformError(
            f"{argv[0]}: command not found (install iproute2, iptables and util-linux)", argv
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise PlatformError(f"{' '.join(argv)}: timed out after {timeout:g}s", argv) from exc
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise PlatformError(
            f"{' '.join(argv)}: exit status {result.returncode}: {detail}", argv, result.stderr
        )
    return result


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed so that it runs inside ``netns`` (unchanged for the host namespace)."""
    if netns is None:
        return list(argv)
    return ["ip", "netns", "exec", netns, *argv]


def _pick(*names: str) -> str:
    for name in names:
        if shutil.which(name):
            return name
    return names[-1]


@dataclass(frozen=True)
class IptablesTools:
    """The iptables binaries one runtime uses (one flavour, nf_tables by default)."""

    iptables: str
    restore: str
    save: str

    @classmethod
    def default(cls) -> IptablesTools:
        return cls(
            iptables=_pick("iptables-nft", "iptables"),
            restore=_pick("iptables-nft-restore", "iptables-restore"),
            save=_pick("iptables-nft-save", "iptables-save"),
        )

    @classmethod
    def legacy(cls) -> IptablesTools:
        return cls("iptables-legacy", "iptables-legacy-restore", "iptables-legacy-save")
