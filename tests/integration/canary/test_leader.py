"""Two control-plane replicas on one PostgreSQL database: only the lease holder runs canaries,
and the other takes over when it stops.

The store is the real PostgreSQL store; the canary is only initialized here (no metric query
or webhook is made), and the runtime's part is played by writing Deployment status.
"""

from __future__ import annotations

import asyncio
import time

from pilotfish.canary.controller import LEASE, CanaryController, ControllerSettings
from pilotfish.config.store.base import Key, Put
from pilotfish.config.store.postgres import PostgresStore
from pilotfish.registry.vip import VipAllocator
from tests.postgres import PostgresCluster
from tests.unit.canary.test_controller import NS, FakeChecks, canary, deployment, settle


def test_the_lease_holder_runs_the_canary_and_the_other_replica_takes_over(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.new_database()
    a, b = PostgresStore(url), PostgresStore(url)
    try:
        a.commit([Put(deployment()), Put(canary())])
        checks = FakeChecks()
        ctl_a = CanaryController(a, checks, ControllerSettings("a", tick=0.1), VipAllocator())
        ctl_b = CanaryController(b, checks, ControllerSettings("b", tick=0.1), VipAllocator())
        assert a.try_lease(LEASE, "a", 15.0)  # replica a is the leader

        async def scenario() -> None:
            stop_a, stop_b = asyncio.Event(), asyncio.Event()
            run_a = asyncio.create_task(ctl_a.run(stop_a))
            run_b = asyncio.create_task(ctl_b.run(stop_b))
            deadline = time.monotonic() + 10
            while a.get(Key("Deployment", NS, "podinfo-primary")) is None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            # b never acted: it does not hold the lease.
            assert not b.try_lease(LEASE, "b", 15.0)
            stop_a.set()
            await run_a  # releases the lease
            settle(a)  # the primary is ready: the next step is the leader's
            deadline = time.monotonic() + 10
            while True:
                obj = b.get(Key("Canary", NS, "podinfo"))
                if obj is not None and (obj.body.get("status") or {}).get("phase") == "Initialized":
                    break
                assert time.monotonic() < deadline, obj.body if obj else None
                await asyncio.sleep(0.1)
            stop_b.set()
            await run_b

        asyncio.run(scenario())
    finally:
        a.close()
        b.close()
