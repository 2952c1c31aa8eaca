"""Push requests and their debounce, as Istio's pilot names them.

A :class:`PushRequest` says that something changed: ``full`` (everything may have changed) or
not, which config keys changed, which proxies are concerned (``None``: all) and why. Requests
are merged: by the :class:`Debouncer` while changes keep arriving (a quiet period, capped by a
maximum delay since the first one), and again per connection, where at most one merged request
waits while the previous push is still being delivered.

:class:`DebounceState` is the pure part (feed it requests and the time, ask what is due);
:class:`Debouncer` drives it with an injectable clock and sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger("pilotfish.xds")


#: What of a proxy's configuration a push regenerates and compares: type URL -> resource
#: names (``None``: every resource of that type). Types not in it are left as they are.
Scope = Mapping[str, "frozenset[str] | None"]


def merge_scopes(a: Scope | None, b: Scope | None) -> Scope | None:
    """The union of two scopes, where ``None`` is everything."""
    if a is None or b is None:
        return None
    out: dict[str, frozenset[str] | None] = dict(a)
    for t, names in b.items():
        if t in out:
            old = out[t]
            out[t] = None if old is None or names is None else old | names
        else:
            out[t] = names
    return out


@dataclass(frozen=True)
class PushRequest:
    full: bool = True
    #: What changed, e.g. ``VirtualService/default/reviews`` (informational for the generator).
    config_keys: frozenset[str] = frozenset()
    #: Node ids to push to; ``None`` means every connected proxy.
    node_ids: frozenset[str] | None = None
    #: Why (``config``, ``endpoint``, ``secret``...), with a count per reason after merges.
    reasons: tuple[tuple[str, int], ...] = ()
    #: Monotonic time of the oldest change merged in (for push latency metrics).
    start: float = field(default_factory=time.monotonic)
    #: What to regenerate and compare (per connection, set by the server's planner);
    #: ``None``: everything.
    scope: Scope | None = None

    @classmethod
    def of(
        cls,
        reason: str,
        *,
        full: bool = True,
        config_keys: frozenset[str] | set[str] = frozenset(),
        node_ids: frozenset[str] | set[str] | None = None,
    ) -> PushRequest:
        return cls(
            full=full,
            config_keys=frozenset(config_keys),
            node_ids=None if node_ids is None else frozenset(node_ids),
            reasons=((reason, 1),),
        )

    def merge(self, other: PushRequest) -> PushRequest:
        counts = dict(self.reasons)
        for reason, n in other.reasons:
            counts[reason] = counts.get(reason, 0) + n
        nodes = (
            None
            if self.node_ids is None or other.node_ids is None
            else self.node_ids | other.node_ids
        )
        return PushRequest(
            full=self.full or other.full,
            config_keys=self.config_keys | other.config_keys,
            node_ids=nodes,
            reasons=tuple(sorted(counts.items())),
            start=min(self.start, other.start),
            scope=merge_scopes(self.scope, other.scope),
        )

    @property
    def endpoints_only(self) -> bool:
        """Every change merged in is an endpoint change (``endpoint`` reasons only)."""
        return bool(self.reasons) and all(r == "endpoint" for r, _ in self.reasons)

    def concerns(self, node_id: str) -> bool:
        return self.node_ids is None or node_id in self.node_ids

    def scoped(self, scope: Scope | None) -> PushRequest:
        """This request limited to ``scope`` (``None``: everything)."""
        return PushRequest(
            full=self.full,
            config_keys=self.config_keys,
            node_ids=self.node_ids,
            reasons=self.reasons,
            start=self.start,
            scope=scope,
        )

    def describe(self) -> str:
        reasons = ", ".join(f"{r} x{n}" if n > 1 else r for r, n in self.reasons) or "unspecified"
        return f"{'full' if self.full else 'incremental'} push ({reasons})"


def merge(a: PushRequest | None, b: PushRequest) -> PushRequest:
    return b if a is None else a.merge(b)


@dataclass(frozen=True)
class DebounceSettings:
    #: Fire once no request has arrived for this long (seconds).
    quiet: float = 0.1
    #: Fire at the latest this long after the first pending request (seconds).
    max_delay: float = 1.0
    #: 0 disables debouncing: every request fires at once.
    enabled: bool = True
    #: During a connection storm (proxies wait for their first configuration), a request
    #: that only carries endpoint changes (sidecars connecting or leaving) fires at the latest
    #: this long after the first one instead of ``max_delay`` (seconds): each push to the
    #: proxies already connected costs them all a generation, and the storm would otherwise
    #: pay one per ``max_delay``. Proxies that connect meanwhile get every endpoint known at
    #: that time in their first configuration (Istio waits up to 10 s in every case).
    storm_max_delay: float = 5.0


class DebounceState:
    """Pure debounce bookkeeping: pending merged request, first and last arrival times."""

    def __init__(self, settings: DebounceSettings) -> None:
        self.settings = settings
        self.pending: PushRequest | None = None
        self.first_at = 0.0
        self.last_at = 0.0

    def add(self, request: PushRequest, now: float) -> None:
        if self.pending is None:
            self.first_at = now
        self.pending = merge(self.pending, request)
        self.last_at = now

    def deadline(self, storm: bool = False) -> float | None:
        """When the pending request is due, or None if nothing waits. During a ``storm``, a
        request of endpoint changes only waits up to ``storm_max_delay``."""
        if self.pending is None:
            return None
        if not self.settings.enabled:
            return self.first_at
        if storm and self.pending.endpoints_only:
            return self.first_at + max(self.settings.storm_max_delay, self.settings.max_delay)
        return min(self.last_at + self.settings.quiet, self.first_at + self.settings.max_delay)

    def take_due(self, now: float, storm: bool = False) -> PushRequest | None:
        due = self.deadline(storm)
        if due is None or now < due:
            return None
        request, self.pending = self.pending, None
        return request


class Debouncer:
    """Runs :class:`DebounceState` in a task and calls ``fire`` with each merged request."""

    def __init__(
        self,
        settings: DebounceSettings,
        fire: Callable[[PushRequest], Awaitable[None] | None],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        storm: Callable[[], bool] = lambda: False,
    ) -> None:
        self._state = DebounceState(settings)
        #: Whether a connection storm is on now (see ``DebounceSettings.storm_max_delay``).
        self._storm = storm
        self._fire = fire
        self._clock = clock
        self._sleep = sleep
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.fired = 0

    @property
    def pending(self) -> bool:
        return self._state.pending is not None

    def add(self, request: PushRequest) -> None:
        self._state.add(request, self._clock())
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="xds-debounce")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            storm = self._storm()
            deadline = self._state.deadline(storm)
            if deadline is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = self._clock()
            request = self._state.take_due(now, storm)
            if request is None:
                self._wake.clear()
                delay = deadline - now
                if storm:
                    # Look again soon: when the storm ends, the usual deadline applies.
                    delay = min(delay, self._state.settings.quiet)
                waiters = [
                    asyncio.ensure_future(self._wake.wait()),
                    asyncio.ensure_future(self._sleep(delay)),
                ]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
                continue
            self.fired += 1
            try:
                result = self._fire(request)
                if result is not None:
                    await result
            except Exception:
                log.exception("xDS push failed: %s", request.describe())
