"""The control plane's JWKS fetcher with an in-memory transport: lazy registration, change
notification, refresh, failures keeping the last good keys, discovery documents, idle URIs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from pilotfish.model.jwks import JwksError, JwksFetcher, JwksSettings, check_jwks

KEYS_A = json.dumps({"keys": [{"kty": "oct", "k": "YQ", "kid": "a"}]})
KEYS_B = json.dumps({"keys": [{"kty": "oct", "k": "Yg", "kid": "b"}]})


class FakeIssuer:
    """``url -> body`` (or an exception to raise); counts requests."""

    def __init__(self, pages: dict[str, str | Exception]) -> None:
        self.pages = pages
        self.requests: list[str] = []

    async def fetch(self, url: str) -> str:
        self.requests.append(url)
        page = self.pages.get(url, JwksError(f"GET {url}: HTTP 404"))
        if isinstance(page, Exception):
            raise page
        return page


async def eventually(check: Callable[[], bool], what: str) -> None:
    for _ in range(400):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_check_jwks() -> None:
    assert check_jwks(KEYS_A) == KEYS_A
    for bad in ("nope", "[]", '{"keys": []}', '{"keys": "x"}'):
        with pytest.raises(JwksError):
            check_jwks(bad)


async def test_first_lookup_registers_then_keys_arrive_and_change_is_reported() -> None:
    issuer = FakeIssuer({"https://i/jwks": KEYS_A})
    changes: list[int] = []
    fetcher = JwksFetcher(JwksSettings(), on_change=lambda: changes.append(1), fetch=issuer.fetch)
    await fetcher.start()
    try:
        assert fetcher.jwks("https://i/jwks") is None
        await eventually(lambda: fetcher.jwks("https://i/jwks") == KEYS_A, "keys fetched")
        assert changes == [1]
        assert issuer.requests == ["https://i/jwks"]
        assert fetcher.status() == [
            {"uri": "https://i/jwks", "fetched": True, "failures": 0, "last_error": ""}
        ]
    finally:
        await fetcher.stop()


async def test_refresh_reports_only_real_changes() -> None:
    issuer = FakeIssuer({"u": KEYS_A})
    changes: list[int] = []
    fetcher = JwksFetcher(JwksSettings(), on_change=lambda: changes.append(1), fetch=issuer.fetch)
    fetcher.jwks("u")
    await fetcher.refresh()
    await fetcher.refresh()
    assert fetcher.jwks("u") == KEYS_A and changes == [1]
    issuer.pages["u"] = KEYS_B
    await fetcher.refresh()
    assert fetcher.jwks("u") == KEYS_B and changes == [1, 1]


async def test_periodic_refresh_picks_up_rotated_keys() -> None:
    issuer = FakeIssuer({"u": KEYS_A})
    fetcher = JwksFetcher(JwksSettings(refresh_interval=0.05), fetch=issuer.fetch)
    await fetcher.start()
    try:
        fetcher.jwks("u")
        await eventually(lambda: fetcher.jwks("u") == KEYS_A, "first keys")
        issuer.pages["u"] = KEYS_B
        await eventually(lambda: fetcher.jwks("u") == KEYS_B, "rotated keys")
    finally:
        await fetcher.stop()


async def test_failures_keep_the_last_good_keys_and_retry() -> None:
    issuer = FakeIssuer({"u": KEYS_A})
    changes: list[int] = []
    settings = JwksSettings(refresh_interval=0.02, retry_min=0.01, retry_max=0.02)
    fetcher = JwksFetcher(settings, on_change=lambda: changes.append(1), fetch=issuer.fetch)
    await fetcher.start()
    try:
        fetcher.jwks("u")
        await eventually(lambda: fetcher.jwks("u") == KEYS_A, "first keys")
        issuer.pages["u"] = "<html>oops</html>"
        await eventually(lambda: fetcher.status()[0]["failures"] >= 2, "retries")
        assert fetcher.jwks("u") == KEYS_A
        assert "not JSON" in fetcher.status()[0]["last_error"]
        issuer.pages["u"] = KEYS_B
        await eventually(lambda: fetcher.jwks("u") == KEYS_B, "recovery")
        assert fetcher.status()[0]["failures"] == 0
        assert changes == [1, 1]
    finally:
        await fetcher.stop()


async def test_unreachable_uri_stays_unknown() -> None:
    issuer = FakeIssuer({"u": ConnectionRefusedError("refused")})
    fetcher = JwksFetcher(JwksSettings(retry_min=0.01), fetch=issuer.fetch)
    fetcher.jwks("u")
    await fetcher.refresh()
    assert fetcher.jwks("u") is None
    assert fetcher.status()[0]["last_error"] == "refused"


async def test_discovery_document_is_followed() -> None:
    discovery = "https://issuer.example/.well-known/openid-configuration"
    issuer = FakeIssuer(
        {
            discovery: json.dumps({"issuer": "https://issuer.example", "jwks_uri": "https://k/j"}),
            "https://k/j": KEYS_A,
        }
    )
    fetcher = JwksFetcher(JwksSettings(), fetch=issuer.fetch)
    fetcher.jwks(discovery)
    await fetcher.refresh()
    assert fetcher.jwks(discovery) == KEYS_A
    assert issuer.requests == [discovery, "https://k/j"]
    issuer.pages[discovery] = "{}"
    fetcher2 = JwksFetcher(JwksSettings(), fetch=issuer.fetch)
    fetcher2.jwks(discovery)
    await fetcher2.refresh()
    assert "no jwks_uri" in fetcher2.status()[0]["last_error"]


async def test_oversized_answers_are_refused() -> None:
    issuer = FakeIssuer({"u": KEYS_A})
    fetcher = JwksFetcher(JwksSettings(max_bytes=10), fetch=issuer.fetch)
    fetcher.jwks("u")
    await fetcher.refresh()
    assert fetcher.jwks("u") is None
    assert "more than 10 bytes" in fetcher.status()[0]["last_error"]


async def test_idle_uris_stop_refreshing_until_asked_again() -> None:
    now = [0.0]
    issuer = FakeIssuer({"u": KEYS_A})
    fetcher = JwksFetcher(JwksSettings(idle_after=100), fetch=issuer.fetch, clock=lambda: now[0])
    fetcher.jwks("u")
    await fetcher.refresh()
    assert len(issuer.requests) == 1
    now[0] = 500.0
    await fetcher.refresh()
    assert len(issuer.requests) == 1  # idle: not refreshed
    assert fetcher.jwks("u") == KEYS_A  # cached keys still served, and the URI is active again
    await fetcher.refresh()
    assert len(issuer.requests) == 2


async def test_lookup_from_another_thread_wakes_the_loop() -> None:
    issuer = FakeIssuer({"u": KEYS_A})
    fetcher = JwksFetcher(JwksSettings(), fetch=issuer.fetch)
    await fetcher.start()
    try:
        await asyncio.to_thread(fetcher.jwks, "u")
        await eventually(lambda: fetcher.jwks("u") == KEYS_A, "keys after a threaded lookup")
    finally:
        await fetcher.stop()
