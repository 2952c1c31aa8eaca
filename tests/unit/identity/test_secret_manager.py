"""Secret manager renewal with a fake clock: no real waiting."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from pilotfish.identity import pki
from pilotfish.identity.ca import MeshCA
from pilotfish.identity.csr_service import SignedCertificate
from pilotfish.identity.secret_manager import (
    SecretManager,
    SecretManagerSettings,
    WorkloadSecret,
    backoff_delay,
    check_signed,
    renewal_time,
)
from pilotfish.identity.spiffe import SpiffeId

from .conftest import T0, ManualTime

ID = SpiffeId("cluster.local", "default", "web")


class FakeClock:
    """Time moves only when the test advances it; sleepers wake when their time comes."""

    def __init__(self, time: ManualTime) -> None:
        self.time = time
        self.sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self.time.t

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.time.t + timedelta(seconds=seconds), future)
        self.sleepers.append(entry)
        try:
            await future
        finally:
            self.sleepers.remove(entry)

    async def advance(self, delta: timedelta) -> None:
        self.time.t += delta
        for when, future in list(self.sleepers):
            if when <= self.time.t and not future.done():
                future.set_result(None)
        await settle()


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


class Fetcher:
    """Signs with a real CA; can be made to fail or to wait at a gate."""

    def __init__(self, ca: MeshCA, identity: SpiffeId = ID) -> None:
        self.ca = ca
        self.identity = identity
        self.calls = 0
        self.fail_next = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self, csr_pem: str, ttl: timedelta) -> SignedCertificate:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("CA unavailable")
        chain, bundle = self.ca.sign_workload(csr_pem, self.identity, ttl)
        return SignedCertificate.from_pem(chain, bundle)


@pytest.fixture
def clock(manual_time: ManualTime) -> FakeClock:
    return FakeClock(manual_time)


def _settings(**kw: object) -> SecretManagerSettings:
    base: dict = dict(identity=ID, requested_ttl=timedelta(hours=2), jitter=0.0)
    base.update(kw)
    return SecretManagerSettings(**base)


async def test_first_certificate_and_renewal_at_half_life(
    make_ca: Callable[..., MeshCA], clock: FakeClock
) -> None:
    fetcher = Fetcher(make_ca())
    manager = SecretManager(_settings(), fetcher, clock=clock)
    seen: list[WorkloadSecret] = []
    manager.subscribe(seen.append)
    async with manager:
        first = await asyncio.wait_for(manager.wait_ready(), 5)
        assert first.identity == ID and first.version == 1
        assert first.not_after == T0 + timedelta(hours=2)
        # Half of the lifetime left on arrival: the minute the CA backdates does not count,
        # or a short-lived certificate would look half spent when it arrives.
        assert first.not_before == T0 - timedelta(minutes=1)
        assert first.renew_at == T0 + timedelta(hours=1)
        leaf = pki.load_certificates(first.cert_chain_pem)[0]
        key = pki.load_private_key(first.private_key_pem)
        assert pki.same_public_key(leaf, key)

        await clock.advance(timedelta(minutes=59))
        assert fetcher.calls == 1 and manager.current() is first
        await clock.advance(timedelta(minutes=1))
        await until(lambda: fetcher.calls == 2)
        second = manager.current()
        assert second is not None and second.version == 2 and second.serial != first.serial
        assert second.private_key_pem != first.private_key_pem  # a new key every time
        assert [s.version for s in seen] == [1, 2]


async def test_old_certificate_served_until_the_new_one_is_in_place(
    make_ca: Callable[..., MeshCA], clock: FakeClock
) -> None:
    fetcher = Fetcher(make_ca())
    manager = SecretManager(_settings(), fetcher, clock=clock)
    async with manager:
        first = await asyncio.wait_for(manager.wait_ready(), 5)
        fetcher.gate = asyncio.Event()
        await clock.advance(timedelta(hours=1, minutes=1))
        await until(lambda: fetcher.calls == 2)
        assert manager.current() is first  # request in flight: still the old one
        fetcher.gate.set()
        await until(lambda: manager.current() is not first)
        current = manager.current()
        assert current is not None and current.version == 2


async def test_failures_are_retried_with_backoff(
    make_ca: Callable[..., MeshCA], clock: FakeClock
) -> None:
    fetcher = Fetcher(make_ca())
    manager = SecretManager(_settings(), fetcher, clock=clock)
    async with manager:
        first = await asyncio.wait_for(manager.wait_ready(), 5)
        fetcher.fail_next = 3
        await clock.advance(timedelta(hours=1, minutes=1))
        await until(lambda: fetcher.calls == 2)
        assert manager.failures == 1 and "CA unavailable" in (manager.last_error or "")
        assert manager.current() is first
        await clock.advance(timedelta(milliseconds=999))
        assert fetcher.calls == 2
        await clock.advance(timedelta(milliseconds=1))  # 1 s after the first failure
        await until(lambda: fetcher.calls == 3)
        await clock.advance(timedelta(seconds=2))  # then 2 s
        await until(lambda: fetcher.calls == 4)
        assert manager.current() is first and manager.failures == 3
        await clock.advance(timedelta(seconds=4))  # then 4 s: succeeds
        await until(lambda: manager.current() is not first)
        assert manager.failures == 0 and manager.last_error is None


async def test_renew_now_rotates_and_resets_the_timer(
    make_ca: Callable[..., MeshCA], clock: FakeClock
) -> None:
    fetcher = Fetcher(make_ca())
    manager = SecretManager(_settings(), fetcher, clock=clock)
    async with manager:
        first = await asyncio.wait_for(manager.wait_ready(), 5)
        await clock.advance(timedelta(minutes=30))
        forced = await manager.renew_now()
        assert forced.version == 2 and manager.current() is forced
        assert forced.renew_at == clock.now() + timedelta(hours=1)
        await settle()
        # The old renewal time passes without another request.
        await clock.advance(first.renew_at - clock.now() + timedelta(seconds=1))
        assert fetcher.calls == 2


async def test_a_certificate_for_another_identity_is_not_installed(
    make_ca: Callable[..., MeshCA], clock: FakeClock
) -> None:
    other = SpiffeId("cluster.local", "default", "other")
    manager = SecretManager(_settings(), Fetcher(make_ca(), identity=other), clock=clock)
    with pytest.raises(ValueError, match=re.escape(f"not {ID.uri}")):
        await manager.renew_now()
    assert manager.current() is None


def test_check_signed_requires_our_key(make_ca: Callable[..., MeshCA]) -> None:
    ca = make_ca()
    mine, theirs = pki.generate_private_key(), pki.generate_private_key()
    chain, bundle = ca.sign_workload(pki.build_csr(theirs, ID), ID)
    with pytest.raises(ValueError, match="public key"):
        check_signed(SignedCertificate.from_pem(chain, bundle), ID, mine, T0)
    other_bundle = make_ca("other").trust_bundle()
    chain, _ = ca.sign_workload(pki.build_csr(mine, ID), ID)
    with pytest.raises(ValueError, match="trusted root"):
        check_signed(SignedCertificate.from_pem(chain, other_bundle), ID, mine, T0)


def test_renewal_time_and_jitter_bounds() -> None:
    start, end = T0, T0 + timedelta(hours=24)
    assert renewal_time(start, end, 0.5, 0.0, 0.7) == T0 + timedelta(hours=12)
    assert renewal_time(start, end, 0.5, 0.1, 1.0) == T0 + timedelta(hours=14, minutes=24)
    assert renewal_time(start, end, 0.5, 0.1, -1.0) == T0 + timedelta(hours=9, minutes=36)
    rng = random.Random(7)
    times = {renewal_time(start, end, 0.5, 0.05, rng.uniform(-1, 1)) for _ in range(50)}
    assert len(times) > 1
    assert all(T0 + timedelta(hours=10.8) <= t <= T0 + timedelta(hours=13.2) for t in times)


def test_backoff_doubles_up_to_the_cap() -> None:
    one, cap = timedelta(seconds=1), timedelta(seconds=60)
    assert [backoff_delay(n, one, cap).total_seconds() for n in range(1, 9)] == [
        1,
        2,
        4,
        8,
        16,
        32,
        60,
        60,
    ]
    assert backoff_delay(10_000, one, cap) == cap


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="renew_fraction"):
        SecretManagerSettings(ID, renew_fraction=1.0)
    with pytest.raises(ValueError, match="jitter"):
        SecretManagerSettings(ID, renew_fraction=0.5, jitter=0.6)


async def test_short_lived_certificate_is_not_renewed_on_arrival(
    make_ca: Callable[..., MeshCA], clock: FakeClock
) -> None:
    """A 20 s certificate, backdated a minute by the CA, lives 10 s before its renewal."""
    fetcher = Fetcher(make_ca())
    manager = SecretManager(_settings(requested_ttl=timedelta(seconds=20)), fetcher, clock=clock)
    async with manager:
        first = await asyncio.wait_for(manager.wait_ready(), 5)
        assert first.renew_at == T0 + timedelta(seconds=10)
        await clock.advance(timedelta(seconds=9))
        await settle()
        assert fetcher.calls == 1
        await clock.advance(timedelta(seconds=1))
        await until(lambda: fetcher.calls == 2)
