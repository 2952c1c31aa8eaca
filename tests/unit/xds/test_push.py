"""PushRequest merging and debounce (fake clock; no timing assertions)."""

from __future__ import annotations

import asyncio

from pilotfish.xds.push import Debouncer, DebounceSettings, DebounceState, PushRequest


def test_merge_unions_keys_reasons_and_nodes() -> None:
    one = PushRequest.of("config", full=False, config_keys={"VirtualService/default/a"})
    two = PushRequest.of("config", full=False, config_keys={"DestinationRule/default/a"})
    three = PushRequest.of("endpoint", full=True, node_ids={"n1"})
    merged = one.merge(two).merge(three)
    assert merged.full
    assert merged.config_keys == {"VirtualService/default/a", "DestinationRule/default/a"}
    assert dict(merged.reasons) == {"config": 2, "endpoint": 1}
    assert merged.node_ids is None  # one of them concerned every proxy
    assert merged.start == min(one.start, two.start, three.start)
    only = PushRequest.of("x", node_ids={"n1"}).merge(PushRequest.of("y", node_ids={"n2"}))
    assert only.node_ids == {"n1", "n2"}
    assert only.concerns("n2") and not only.concerns("n3")


def test_quiet_period_restarts_with_each_request() -> None:
    state = DebounceState(DebounceSettings(quiet=0.1, max_delay=1.0))
    state.add(PushRequest.of("a"), now=0.0)
    assert state.take_due(0.05) is None
    state.add(PushRequest.of("b"), now=0.08)
    assert state.take_due(0.15) is None
    fired = state.take_due(0.18)
    assert fired is not None and dict(fired.reasons) == {"a": 1, "b": 1}
    assert state.deadline() is None


def test_max_delay_caps_a_stream_of_changes() -> None:
    # Seconds as exact binary fractions: a change every 0.5 s, quiet 1 s, cap 4 s.
    state = DebounceState(DebounceSettings(quiet=1.0, max_delay=4.0))
    t = 0.0
    fired = None
    while fired is None:
        state.add(PushRequest.of("tick"), now=t)
        t += 0.5
        fired = state.take_due(t)
    assert t == 4.0
    assert dict(fired.reasons) == {"tick": 8}


def test_disabled_debounce_fires_at_once() -> None:
    state = DebounceState(DebounceSettings(enabled=False))
    state.add(PushRequest.of("a"), now=3.0)
    assert state.take_due(3.0) is not None


async def test_debouncer_task_merges_a_burst_into_one_push() -> None:
    fired: list[PushRequest] = []
    done = asyncio.Event()

    def fire(request: PushRequest) -> None:
        fired.append(request)
        done.set()

    debouncer = Debouncer(DebounceSettings(quiet=0.05, max_delay=5.0), fire)
    debouncer.start()
    try:
        for i in range(5):
            debouncer.add(PushRequest.of(f"r{i}"))
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await debouncer.stop()
    assert len(fired) == 1
    assert {r for r, _ in fired[0].reasons} == {f"r{i}" for i in range(5)}
    assert not debouncer.pending


async def test_debouncer_survives_a_failing_push() -> None:
    calls: list[PushRequest] = []
    second = asyncio.Event()

    async def fire(request: PushRequest) -> None:
        calls.append(request)
        if len(calls) == 1:
            raise RuntimeError("boom")
        second.set()

    debouncer = Debouncer(DebounceSettings(enabled=False), fire)
    debouncer.start()
    try:
        debouncer.add(PushRequest.of("one"))
        while not calls:
            await asyncio.sleep(0.01)
        debouncer.add(PushRequest.of("two"))
        await asyncio.wait_for(second.wait(), 10)
    finally:
        await debouncer.stop()
    assert [dict(c.reasons) for c in calls] == [{"one": 1}, {"two": 1}]


def test_a_storm_holds_endpoint_changes_up_to_its_own_cap() -> None:
    settings = DebounceSettings(quiet=0.25, max_delay=1.0, storm_max_delay=4.0)
    state = DebounceState(settings)
    state.add(PushRequest.of("endpoint", full=False), now=0.0)
    # A sidecar connecting every 0.125 s: without a storm the cap (1 s) fires it...
    for i in range(1, 8):
        state.add(PushRequest.of("endpoint", full=False), now=i * 0.125)
    assert state.deadline(storm=False) == 1.0
    # ...while proxies wait for their first configuration, it waits up to 4 s.
    assert state.deadline(storm=True) == 4.0
    assert state.take_due(2.0, storm=True) is None
    fired = state.take_due(4.0, storm=True)
    assert fired is not None and dict(fired.reasons) == {"endpoint": 8}


def test_a_storm_does_not_hold_config_changes() -> None:
    state = DebounceState(DebounceSettings(quiet=0.25, max_delay=1.0, storm_max_delay=4.0))
    state.add(PushRequest.of("endpoint", full=False), now=0.0)
    state.add(PushRequest.of("config", full=False), now=0.5)
    assert state.deadline(storm=True) == 0.75
    assert not PushRequest.of("endpoint").merge(PushRequest.of("config")).endpoints_only
    assert PushRequest.of("endpoint").merge(PushRequest.of("endpoint")).endpoints_only


async def test_held_endpoint_push_fires_soon_after_the_storm_ends() -> None:
    fired: list[PushRequest] = []
    storm = True
    debouncer = Debouncer(
        DebounceSettings(quiet=0.02, max_delay=0.05, storm_max_delay=60.0),
        fired.append,
        storm=lambda: storm,
    )
    debouncer.start()
    try:
        debouncer.add(PushRequest.of("endpoint", full=False))
        await asyncio.sleep(0.3)
        assert fired == []  # held: the storm goes on
        storm = False
        for _ in range(500):
            if fired:
                break
            await asyncio.sleep(0.01)
    finally:
        await debouncer.stop()
    assert [dict(r.reasons) for r in fired] == [{"endpoint": 1}]
