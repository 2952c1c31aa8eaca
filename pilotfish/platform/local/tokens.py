"""Workload tokens for pods, shared by the pods of one service account.

A sidecar proves its namespace and service account to the mesh CA with a workload token the
runtime asks the control plane for (Kubernetes' TokenRequest) and writes into the pod, as a
kubelet projects one. A token names the service account, not the pod, so the pods of one
account can share it: :class:`SharedTokens` hands a new pod the token an earlier pod got, as
long as it is younger than a quarter of its lifetime, instead of asking again (a round trip
to the control plane on every pod's start). Pods replace their token at half of its lifetime
counted from when it was issued (:meth:`SharedTokens.get` says when), so a token in use always
has at least a quarter of its life left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["IssuedToken", "SharedTokens", "TokenSource"]

#: ``(namespace, service_account, ttl_seconds) -> token``: asks the control plane.
TokenSource = Callable[[str, str, int], str]


@dataclass(frozen=True)
class IssuedToken:
    token: str
    #: When it was issued (``time.monotonic()``).
    issued_at: float


class SharedTokens:
    """Tokens per ``(namespace, service account, lifetime)``, reused while younger than a
    quarter of their lifetime. Thread-safe: pods of one account starting at once ask once."""

    def __init__(self, source: TokenSource, clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str, int], IssuedToken] = {}
        self._fetching: dict[tuple[str, str, int], threading.Lock] = {}

    def get(self, namespace: str, service_account: str, ttl_seconds: int) -> IssuedToken:
        key = (namespace, service_account, ttl_seconds)
        with self._lock:
            fetching = self._fetching.setdefault(key, threading.Lock())
        with fetching:
            with self._lock:
                known = self._tokens.get(key)
            if known is not None and self._clock() - known.issued_at < ttl_seconds / 4:
                return known
            token = self._source(namespace, service_account, ttl_seconds)
            issued = IssuedToken(token, self._clock())
            with self._lock:
                self._tokens[key] = issued
            return issued
