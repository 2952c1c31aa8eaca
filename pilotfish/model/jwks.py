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

Anyone who may apply a RequestAuthentication chooses where the control plane sends requests,
so, as recent istiod does, no key is fetched from a blocked address: link-local addresses
(the cloud metadata service 169.254.169.254 among them) and the other cloud metadata
addresses (:data:`ALWAYS_BLOCKED`) always, and the CIDRs of istiod's
``BLOCKED_CIDRS_IN_JWKS_URIS`` (``set_blocked_cidrs``). The check is made on the address a
connection is about to be opened to, after name resolution (:class:`GuardedBackend`), so it
holds for the discovery document, its ``jwks_uri`` and every redirect hop (redirects are
followed here, hop by hop, at most :data:`MAX_REDIRECTS`), and a name that resolves to a
blocked address is refused as the address itself. A blocked fetch fails like any other (logged,
``status()``'s ``last_error``, retried with backoff) and, unlike other failures, drops the keys
fetched before: the translator then sends the key set that verifies no token (fail closed).

The HTTP transport is ``fetch(url) -> text`` (httpcore, through :class:`GuardedBackend`, by
default) so tests need no network::

    fetcher = JwksFetcher(JwksSettings(), on_change=lambda: push("jwks"))
    await fetcher.start()
    fetcher.jwks("https://issuer.example/jwks.json")   # None at first, keys after the fetch
    await fetcher.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore

from pilotfish.api.meshconfig import IPNetwork, parse_cidrs

log = logging.getLogger(__name__)

OIDC_DISCOVERY_PATH = "/.well-known/openid-configuration"

Fetch = Callable[[str], Awaitable[str]]

#: Blocked whatever ``BLOCKED_CIDRS_IN_JWKS_URIS`` says, as recent istiod does: link-local
#: unicast and multicast (cloud metadata at 169.254.169.254 included), and the cloud metadata
#: addresses outside it (Alibaba Cloud's, AWS's IPv6 one).
ALWAYS_BLOCKED: tuple[IPNetwork, ...] = parse_cidrs(
    "169.254.0.0/16, fe80::/10, 224.0.0.0/24, ff02::/16, 100.100.100.200/32, fd00:ec2::/32"
)
#: Redirects followed from one URI (Go's HTTP client, which istiod uses, stops at 10).
MAX_REDIRECTS = 10
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class JwksSettings:
    #: Istio's default refresh interval (PILOT_JWT_PUB_KEY_REFRESH_INTERVAL) is 20 minutes.
    refresh_interval: float = 20 * 60.0
    retry_min: float = 1.0
    retry_max: float = 60.0
    timeout: float = 5.0
    idle_after: float = 24 * 3600.0
    max_bytes: int = 1 << 20
    #: TLS verification for https URIs: True (the system's roots), False, or a CA bundle path.
    verify: bool | str = True
    #: CIDRs never fetched from, besides :data:`ALWAYS_BLOCKED` (istiod's
    #: ``BLOCKED_CIDRS_IN_JWKS_URIS``; ``JwksFetcher.set_blocked_cidrs`` changes it live).
    blocked_cidrs: tuple[IPNetwork, ...] = ()


class JwksError(Exception):
    """A key set could not be fetched or is not a JSON Web Key Set."""


class BlockedAddressError(JwksError):
    """The fetch would connect to an address in a blocked CIDR."""


def blocked_by(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, blocked: Iterable[IPNetwork]
) -> IPNetwork | None:
    """The first network of ``blocked`` holding ``address`` (an IPv4-mapped IPv6 address is
    checked as its IPv4 address too), or None."""
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    for net in blocked:
        for a in candidates:
            if a.version == net.version and a in net:
                return net
    return None


def _blocked_text(net: IPNetwork) -> str:
    if any(net == n for n in ALWAYS_BLOCKED):
        return f"{net}, link-local and cloud metadata addresses are never fetched from"
    return f"{net}, blocked by BLOCKED_CIDRS_IN_JWKS_URIS"


Resolve = Callable[[str, int], Awaitable[list[str]]]


async def _resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in seen:
            seen.append(addr)
    return seen


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend that connects only to addresses outside ``blocked()``: a
    name is resolved here and each of its addresses tried in turn, the blocked ones skipped
    (as Go's dialer ``Control`` hook does for istiod). TLS still names and verifies the host
    of the URL (httpcore takes the SNI from the request, not from the address dialled)."""

    def __init__(
        self,
        blocked: Callable[[], Sequence[IPNetwork]],
        resolve: Resolve = _resolve,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._blocked = blocked
        self._resolve = resolve
        self._inner = inner or httpcore.AnyIOBackend()

    async def allowed_addresses(self, host: str, port: int) -> list[str]:
        """``host``'s addresses outside the blocked CIDRs; BlockedAddressError if none."""
        host = host.strip("[]")
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = await self._resolve(host, port)
            except OSError as exc:
                raise JwksError(f"cannot resolve {host}: {exc}") from exc
        blocked = self._blocked()
        allowed: list[str] = []
        refusals: list[str] = []
        for addr in addresses:
            net = blocked_by(ipaddress.ip_address(addr.split("%")[0]), blocked)
            if net is None:
                allowed.append(addr)
            else:
                refusals.append(f"{addr} is in {_blocked_text(net)}")
        if not allowed:
            who = host if addresses == [host] else f"{host} ({', '.join(addresses)})"
            raise BlockedAddressError(f"address blocked: {who}: {'; '.join(refusals)}")
        return allowed

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for addr in await self.allowed_addresses(host, port):
            try:
                return await self._inner.connect_tcp(
                    addr,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise JwksError("JWKS are not fetched over Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


#: One HTTP GET without following redirects: ``url -> (status, Location or None, body)``.
Hop = Callable[[str], Awaitable[tuple[int, str | None, bytes]]]


async def follow_redirects(url: str, hop: Hop, max_redirects: int = MAX_REDIRECTS) -> bytes:
    """The body ``url`` answers, following redirects hop by hop through ``hop`` (each hop's
    connection checked by the backend); errors name the hop and where it was redirected from."""
    current, chain = url, [url]
    for _ in range(max_redirects + 1):
        via = f" (redirected from {chain[0]})" if len(chain) > 1 else ""
        try:
            status, location, body = await hop(current)
        except JwksError as exc:
            raise type(exc)(f"GET {current}{via}: {exc}") from exc
        if status in _REDIRECTS and location:
            target = urljoin(current, location)
            if urlsplit(target).scheme not in ("http", "https"):
                raise JwksError(f"GET {current}{via}: redirect to {target!r} is not http(s)")
            current = target
            chain.append(target)
            continue
        if status != 200:
            raise JwksError(f"GET {current}{via}: HTTP {status}")
        return body
    raise JwksError(f"GET {url}: more than {max_redirects} redirects")


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
        self._pool: httpcore.AsyncConnectionPool | None = None
        self._blocked: tuple[IPNetwork, ...] = ALWAYS_BLOCKED + tuple(self.settings.blocked_cidrs)
        self.backend = GuardedBackend(lambda: self._blocked)

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

    def set_blocked_cidrs(self, cidrs: Sequence[IPNetwork]) -> None:
        """Block ``cidrs`` (besides :data:`ALWAYS_BLOCKED`) from now on. When they change,
        every known URI is fetched again at once, so keys fetched from a now-blocked address
        are dropped and keys refused before are fetched. Any thread."""
        blocked = ALWAYS_BLOCKED + tuple(cidrs)
        with self._lock:
            if blocked == self._blocked:
                return
            self._blocked = blocked
            for e in self._entries.values():
                e.next_fetch = 0.0
                e.failures = 0
        log.info("JWKS fetches blocked from %s", ", ".join(str(n) for n in blocked))
        self._poke()

    @property
    def blocked_cidrs(self) -> tuple[IPNetwork, ...]:
        return self._blocked

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
            self._pool = httpcore.AsyncConnectionPool(
                ssl_context=self._ssl_context(), network_backend=self.backend
            )
        self._task = asyncio.create_task(self._run(), name="jwks-fetcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

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
        except Exception as exc:  # any failure keeps the last good keys, unless blocked
            blocked = isinstance(exc, BlockedAddressError)
            with self._lock:
                entry.failures += 1
                entry.last_error = str(exc) or type(exc).__name__
                backoff = self.settings.retry_min * 2 ** min(entry.failures - 1, 16)
                entry.next_fetch = self._clock() + min(backoff, self.settings.retry_max)
                dropped = blocked and entry.jwks is not None
                if blocked:
                    entry.jwks = None
            log.warning("fetching JWKS %s failed (%d): %s", entry.uri, entry.failures, exc)
            if dropped and self.on_change is not None:
                self.on_change()
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
            body = await follow_redirects(url, self._hop)
            text = body.decode("utf-8", errors="replace")
        if len(text) > self.settings.max_bytes:
            raise JwksError(f"GET {url}: more than {self.settings.max_bytes} bytes")
        return text

    def _ssl_context(self) -> ssl.SSLContext:
        verify = self.settings.verify
        if verify is False:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if isinstance(verify, str):
            return ssl.create_default_context(cafile=verify)
        return ssl.create_default_context()  # the system's roots, as istiod's Go client

    async def _hop(self, url: str) -> tuple[int, str | None, bytes]:
        assert self._pool is not None, "start() first"
        if urlsplit(url).scheme not in ("http", "https"):
            raise JwksError(f"{url!r} is not an http(s) URL")
        t = self.settings.timeout
        timeouts = {"connect": t, "read": t, "write": t, "pool": t}
        try:
            async with asyncio.timeout(t * 2):
                async with self._pool.stream(
                    "GET",
                    url,
                    headers=[(b"accept", b"application/json"), (b"user-agent", b"pilotfish")],
                    extensions={"timeout": timeouts},
                ) as resp:
                    location = None
                    for name, value in resp.headers:
                        if name.lower() == b"location":
                            location = value.decode("latin-1")
                    body = bytearray()
                    if resp.status == 200:
                        async for chunk in resp.aiter_stream():
                            body += chunk
                            if len(body) > self.settings.max_bytes:
                                raise JwksError(f"more than {self.settings.max_bytes} bytes")
                    return resp.status, location, bytes(body)
        except httpcore.TimeoutException as exc:
            raise JwksError(f"timed out: {exc or type(exc).__name__}") from exc
        except TimeoutError as exc:
            raise JwksError(f"timed out after {t * 2:g} s") from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise JwksError(f"{type(exc).__name__}: {exc}") from exc
