"""`kill -9` of the control plane during an apply leaves all or none of that file's resources."""

from __future__ import annotations

import contextlib
import random
import signal
import threading

import httpx

from tests.integration.harness import ControlPlane

BATCH = 300


def _batch(n: int) -> list[dict[str, object]]:
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": f"b{n}-dr{i}", "labels": {"batch": str(n)}},
            "spec": {
                "host": f"svc{i}.default.svc.cluster.local",
                "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
            },
        }
        for i in range(BATCH)
    ]


def _count(cp: ControlPlane, n: int) -> int:
    r = httpx.get(
        f"{cp.url}/apis/networking.istio.io/v1/namespaces/default/destinationrules",
        params={"labelSelector": f"batch={n}"},
        headers={"Authorization": f"Bearer {cp.token}"},
        timeout=30,
    )
    r.raise_for_status()
    return len(r.json()["items"])


def test_kill_9_during_apply_is_all_or_nothing(control_plane_factory) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    cp = control_plane_factory()
    for n in range(6):
        token = cp.token

        def send(cp: ControlPlane = cp, n: int = n, token: str = token) -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server dies under it: expected
                httpx.post(
                    f"{cp.url}/apis/pilotfish.io/v1/apply",
                    json={"items": _batch(n)},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )

        t = threading.Thread(target=send)
        t.start()
        threading.Event().wait(rng.uniform(0.0, 0.6))
        cp.kill(signal.SIGKILL)
        t.join(30)
        cp = control_plane_factory()
        got = _count(cp, n)
        assert got in (0, BATCH), f"batch {n}: {got} of {BATCH} resources survived a kill -9"
    # Every earlier batch is still all-or-nothing after all the restarts.
    for n in range(6):
        assert _count(cp, n) in (0, BATCH)
