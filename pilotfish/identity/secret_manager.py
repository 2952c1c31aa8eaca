"""The agent's workload secret: key pair, certificate from the CA, renewal (agent side).

The private key is made here and never leaves the agent: each (re)issue generates a fresh
ECDSA P-256 key, builds a CSR for the workload's SPIFFE ID and hands it to a
:data:`CertificateFetcher` (by default the gRPC client of ``ca_grpc.py``). The result is
checked (identity, public key, chain to the returned roots) before it replaces the current
secret; until then the old certificate keeps being served.

Renewal happens at half-life (``renew_fraction``) plus or minus ``jitter`` of the lifetime, so
a fleet started together does not renew together. A failed request is retried with
exponential backoff (``retry_initial`` doubling up to ``retry_max``). Subscribers (the SDS
server) are called after each change, in the event loop. Time comes from a :class:`Clock`, so
tests run renewals instantly with a fake one.

::

    manager = SecretManager(SecretManagerSettings(identity), fetcher)
    await manager.start()
    secret = await manager.wait_ready()
    unsubscribe = manager.subscribe(on_change)
    await manager.renew_now()        # forced rotation
    await manager.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from pilotfish.identity import pki
from pilotfish.identity.certificate import SignedCertificate
from pilotfish.identity.spiffe import SpiffeId

log = logging.getLogger("pilotfish.identity")

#: ``await fetcher(csr_pem, requested_ttl)`` returns the signed certificate or raises.
CertificateFetcher = Callable[[str, timedelta], Awaitable[SignedCertificate]]
SecretCallback = Callable[["WorkloadSecret"], None]


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class SecretManagerSettings:
    identity: SpiffeId
    requested_ttl: timedelta = timedelta(hours=24)
    #: Renew when this fraction of the lifetime has passed ...
    renew_fraction: float = 0.5
    #: ... plus or minus up to this fraction of the lifetime, at random.
    jitter: float = 0.05
    retry_initial: timedelta = timedelta(seconds=1)
    retry_max: timedelta = timedelta(minutes=1)

    def __post_init__(self) -> None:
        if not 0.0 < self.renew_fraction < 1.0:
            raise ValueError("renew_fraction must be between 0 and 1")
        if not 0.0 <= self.jitter < min(self.renew_fraction, 1.0 - self.renew_fraction):
            raise ValueError("jitter must be >= 0 and keep the renewal inside the lifetime")
        if self.retry_initial <= timedelta(0) or self.retry_max < self.retry_initial:
            raise ValueError("retry_initial must be positive and at most retry_max")


@dataclass(frozen=True)
class WorkloadSecret:
    """The current certificate, its private key and the trust bundle (PEM text)."""

    identity: SpiffeId
    cert_chain_pem: str
    private_key_pem: str
    root_bundle_pem: str
    serial: int
    not_before: datetime
    not_after: datetime
    #: Increases by one with every installed certificate.
    version: int
    renew_at: datetime


def renewal_time(
    not_before: datetime, not_after: datetime, fraction: float, jitter: float, draw: float
) -> datetime:
    """When to renew: ``fraction`` of the lifetime, moved by ``jitter * draw`` (draw in [-1, 1])."""
    lifetime = not_after - not_before
    return not_before + lifetime * (fraction + jitter * max(-1.0, min(1.0, draw)))


def backoff_delay(attempt: int, initial: timedelta, maximum: timedelta) -> timedelta:
    """Delay before retry number ``attempt`` (1-based): initial, doubling, capped."""
    return min(initial * (2 ** max(0, min(attempt - 1, 30))), maximum)


def check_signed(
    signed: SignedCertificate, identity: SpiffeId, key: pki.SigningKey, now: datetime
) -> None:
    """Raise ValueError unless the certificate is for ``identity`` and ``key`` and chains to
    one of the roots it came with."""
    if signed.identity != identity:
        raise ValueError(f"the CA issued a certificate for {signed.identity}, not {identity}")
    chain = pki.load_certificates(signed.cert_chain_pem)
    if not pki.same_public_key(chain[0], key):
        raise ValueError("the certificate does not carry this agent's public key")
    pki.verify_chain(chain, pki.load_certificates(signed.root_bundle_pem), now)


def token_from_file(path: Path) -> Callable[[], str]:
    """A token source that re-reads ``path`` for every request (tokens get replaced)."""

    def read() -> str:
        return path.read_text().strip()

    return read


class SecretManager:
    """Keeps one workload certificate fresh and tells subscribers when it changes."""

    def __init__(
        self,
        settings: SecretManagerSettings,
        fetcher: CertificateFetcher,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._fetcher = fetcher
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._current: WorkloadSecret | None = None
        self._subscribers: list[SecretCallback] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._version = 0
        #: Consecutive failed requests, and the last error (for health reporting).
        self.failures = 0
        self.last_error: str | None = None

    @property
    def identity(self) -> SpiffeId:
        return self.settings.identity

    def current(self) -> WorkloadSecret | None:
        return self._current

    def subscribe(self, callback: SecretCallback) -> Callable[[], None]:
        """Call ``callback(secret)`` after every change; returns the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    async def start(self) -> None:
        """Start the renewal loop (the first certificate is requested at once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"secret-manager {self.identity}")

    async def wait_ready(self) -> WorkloadSecret:
        """Wait for the first certificate."""
        await self._ready.wait()
        assert self._current is not None
        return self._current

    async def renew_now(self) -> WorkloadSecret:
        """Get a new key and certificate now (raises if the CA refuses; the old one stays)."""
        async with self._lock:
            secret = await self._issue()
        self._wake.set()
        return secret

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> SecretManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- internals ---------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            seen = self._version
            if attempt:
                delay = backoff_delay(attempt, self.settings.retry_initial, self.settings.retry_max)
                wait = delay.total_seconds()
            elif self._current is None:
                wait = 0.0
            else:
                wait = (self._current.renew_at - self._clock.now()).total_seconds()
            if wait > 0 and await self._sleep_or_wake(wait):
                attempt = 0
                continue
            try:
                async with self._lock:
                    if self._version != seen:  # renew_now() got there first
                        attempt = 0
                        continue
                    await self._issue()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:
                attempt += 1
                self.failures += 1
                self.last_error = str(e)
                retry = backoff_delay(attempt, self.settings.retry_initial, self.settings.retry_max)
                serving = f"serial {self._current.serial:x}" if self._current else "nothing"
                log.warning(
                    "certificate for %s not renewed (attempt %d): %s; still serving %s, "
                    "retrying in %.1fs",
                    self.identity,
                    attempt,
                    e,
                    serving,
                    retry.total_seconds(),
                )

    async def _sleep_or_wake(self, seconds: float) -> bool:
        """Sleep on the clock; True if woken early by :meth:`renew_now`."""
        self._wake.clear()
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (sleeper, waker):
                t.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)
        return waker.done() and not waker.cancelled() and self._wake.is_set()

    async def _issue(self) -> WorkloadSecret:
        key = pki.generate_private_key()
        csr = pki.build_csr(key, self.identity)
        signed = await self._fetcher(csr, self.settings.requested_ttl)
        check_signed(signed, self.identity, key, self._clock.now())
        s = self.settings
        # Count the lifetime from now, not from not_before: the CA backdates certificates
        # for clock skew, which would make short-lived ones look half spent on arrival.
        renew_at = renewal_time(
            max(signed.not_before, self._clock.now()),
            signed.not_after,
            s.renew_fraction,
            s.jitter,
            self._rng.uniform(-1, 1),
        )
        self._version += 1
        secret = WorkloadSecret(
            identity=self.identity,
            cert_chain_pem=signed.cert_chain_pem,
            private_key_pem=pki.private_key_pem(key),
            root_bundle_pem=signed.root_bundle_pem,
            serial=signed.serial,
            not_before=signed.not_before,
            not_after=signed.not_after,
            version=self._version,
            renew_at=renew_at,
        )
        self._current = secret
        self.failures, self.last_error = 0, None
        self._ready.set()
        log.info(
            "certificate for %s installed: serial %x, valid until %s, renewal at %s",
            self.identity,
            secret.serial,
            secret.not_after.isoformat(),
            renew_at.isoformat(),
        )
        for callback in list(self._subscribers):
            try:
                callback(secret)
            except Exception:
                log.exception("secret subscriber failed")
        return secret
