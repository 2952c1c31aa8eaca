"""Commit notifications: the subscriber list every backend shares.

Callbacks run in the thread that calls ``notify`` (the committing thread), after the
store released its lock. A failing callback is logged and does not affect the commit or
the other callbacks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Callback = Callable[[int], None]


class Subscribers:
    """A thread-safe set of ``callback(revision)`` functions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callback] = {}
        self._next = 0

    def add(self, callback: Callback) -> Callable[[], None]:
        """Register ``callback``; returns a function that unregisters it (idempotent)."""
        with self._lock:
            token = self._next
            self._next += 1
            self._callbacks[token] = callback

        def unsubscribe() -> None:
            with self._lock:
                self._callbacks.pop(token, None)

        return unsubscribe

    def notify(self, revision: int) -> None:
        with self._lock:
            callbacks = list(self._callbacks.values())
        for callback in callbacks:
            try:
                callback(revision)
            except Exception:
                log.exception("config store subscriber failed at revision %d", revision)

    def clear(self) -> None:
        with self._lock:
            self._callbacks.clear()
