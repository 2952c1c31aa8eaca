"""The control plane's JWKS fetcher: keys for RequestAuthentication ``jwksUri`` rules.

Sidecars may not reach an issuer, so the control plane fetches key sets and the translator
inlines them (``translate.authn``). ``JwksFetcher.jwks(uri)`` is the lookup the translator
calls (from any thread): it answers the cached key set, or None while the URI has never been
fetched successfully, and registers unknown URIs so the fetch loop gets them right away.
Entries are refreshed every ``refresh_interval``; failures are retried with backoff
(``retry_min`` doubling up to ``retry_max``) while the last good key set keeps being served.
When a fetched key set differs from the cached one, ``on_change()`` is called (on the event
loop) so that the caller rebuilds and pushes config. URIs nobody asked for during
``idle_after`` stop being refreshed (their keys stay cached; a new lookup revives them).

A URI ending in ``/.well-known/openid-configuration`` is an OpenID discovery document: its
``jwks_uri`` is fetched in turn (the translator asks for it when a rule names only an issuer).

The HTTP transport is ``fetch(url) -> text`` (httpx by default) so tests need no network::

    fetcher = JwksFetcher(JwksSettings(), on_change=lambda: push("jwks"))
    await fetcher.start()
    fetcher.jwks("https://issuer.example/jwks.json")   # None at first, keys after the fetch
    await fetcher.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

OIDC_DISCOVERY_PATH = "/.well-known/openid-configuration"

Fetch = Callable[[str], Awaitable[str]]


@dataclass(frozen=True)
class JwksSettings:
    #: Istio's default refresh interval (PILOT_JWT_PUB_KEY_REFRESH_INTERVAL) is 20 minutes.
    refresh_interval: float = 20 * 60.0
    retry_min: float = 1.0
    retry_max: float = 60.0
    timeout: float = 5.0
    idle_after: float = 24 * 3600.0
    max_bytes: int = 1 << 20
    #: TLS verification for https URIs: True (system roots), False, or a CA bundle path.
    verify: bool | str = True
    #: Let httpx read proxy settings from the environment.
    trust_env: bool = False


class JwksError(Exception):
    """A key set could not be fetched or is not a JSON Web Key Set."""


def check_jwks(text: str) -> str:
    """``text`` if it is a JSON Web Key Set with at least one key, else JwksError."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise JwksError(f"not JSON: {exc}") from exc
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        raise JwksError('not a JSON Web Key Set: no "keys" list with a key')
    return text


@dataclass
class _Entry:
    uri: str
    last_used: float
    jwks: str | None = None
    next_fetch: float = 0.0
    failures: int = 0
    last_error: str = ""
    fetched_at: float | None = None


class JwksFetcher:
    def __init__(
        self,
        settings: JwksSettings | None = None,
        on_change: Callable[[], None] | None = None,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or JwksSettings()
        self.on_change = on_change
        self._fetch_override = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    # ---- the lookup (any thread) ------------------------------------------------------------

    def jwks(self, uri: str) -> str | None:
        """The cached key set of ``uri`` (None until fetched); registers unknown URIs."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(uri)
            if entry is not None:
                entry.last_used = now
                return entry.jwks
            self._entries[uri] = _Entry(uri, last_used=now)
        self._poke()
        return None

    def status(self) -> list[dict[str, Any]]:
        """One row per known URI (for debugging endpoints and tests)."""
        with self._lock:
            return [
                {
                    "uri": e.uri,
                    "fetched": e.jwks is not None,
                    "failures": e.failures,
                    "last_error": e.last_error,
                }
                for e in sorted(self._entries.values(), key=lambda e: e.uri)
            ]

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._fetch_override is None:
            self._client = httpx.AsyncClient(
                timeout=self.settings.timeout,
                verify=self.settings.verify,
                trust_env=self.settings.trust_env,
                follow_redirects=True,
            )
        self._task = asyncio.create_task(self._run(), name="jwks-fetcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def refresh(self) -> None:
        """Fetch every active URI now (and wait for it)."""
        now = self._clock()
        with self._lock:
            entries = [e for e in self._entries.values() if self._active(e, now)]
        await asyncio.gather(*(self._update(e) for e in entries))

    # ---- the loop -----------------------------------------------------------------------------

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def _active(self, e: _Entry, now: float) -> bool:
        return now - e.last_used < self.settings.idle_after

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            now = self._clock()
            with self._lock:
                due = [
                    e
                    for e in self._entries.values()
                    if e.next_fetch <= now and self._active(e, now)
                ]
                upcoming = [
                    e.next_fetch
                    for e in self._entries.values()
                    if e.next_fetch > now and self._active(e, now)
                ]
            if due:
                await asyncio.gather(*(self._update(e) for e in due))
                continue
            wait = min(upcoming) - now if upcoming else self.settings.refresh_interval
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.01))

    async def _update(self, entry: _Entry) -> None:
        try:
            text = await self._fetch_jwks(entry.uri)
        except Exception as exc:  # any failure keeps the last good keys
            with self._lock:
                entry.failures += 1
                entry.last_error = str(exc) or type(exc).__name__
                backoff = self.settings.retry_min * 2 ** min(entry.failures - 1, 16)
                entry.next_fetch = self._clock() + min(backoff, self.settings.retry_max)
            log.warning("fetching JWKS %s failed (%d): %s", entry.uri, entry.failures, exc)
            return
        with self._lock:
            changed = text != entry.jwks
            entry.jwks = text
            entry.failures = 0
            entry.last_error = ""
            entry.fetched_at = self._clock()
            entry.next_fetch = entry.fetched_at + self.settings.refresh_interval
        if changed:
            log.info("JWKS %s %s", entry.uri, "updated")
            if self.on_change is not None:
                self.on_change()

    async def _fetch_jwks(self, uri: str) -> str:
        if uri.rstrip("/").endswith(OIDC_DISCOVERY_PATH):
            try:
                doc = json.loads(await self._get(uri))
            except ValueError as exc:
                raise JwksError(f"discovery document {uri} is not JSON") from exc
            jwks_uri = doc.get("jwks_uri") if isinstance(doc, dict) else None
            if not isinstance(jwks_uri, str) or not jwks_uri:
                raise JwksError(f"discovery document {uri} has no jwks_uri")
            uri = jwks_uri
        return check_jwks(await self._get(uri))

    async def _get(self, url: str) -> str:
        if self._fetch_override is not None:
            text = await self._fetch_override(url)
        else:
            assert self._client is not None, "start() first"
            resp = await self._client.get(url)
            if resp.status_code != 200:
                raise JwksError(f"GET {url}: HTTP {resp.status_code}")
            text = resp.text
        if len(text) > self.settings.max_bytes:
            raise JwksError(f"GET {url}: more than {self.settings.max_bytes} bytes")
        return text
