"""A control-plane restart: killed with SIGKILL and started again on the same store and
ports, while requests run through two sidecars (each an endpoint only through its xDS
connection). Then:

* not one request failed, before, during or after the restart;
* both Envoys reconnected to the restarted control plane by themselves, resuming their
  streams (Delta, declaring what they hold), and it sent them no resource again: what they
  hold is what it generates (content-hash versions survive the restart) and the sidecars
  connected before the restart are endpoints from its start
  (``pilotfish_xds_resources_sent`` stays at 0 while ``pilot_xds_pushes`` counts the
  answers to their requests);
* a change applied afterwards still reaches the client's Envoy.

No timing is asserted; waits are bounded.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import (
    REVIEWS_SERVICE,
    ControlPlane,
    Mesh,
    eventually,
    start_control_plane,
)
from tests.integration.replicas.test_failover import Load, connected_to, header_route, served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def counters(cp: ControlPlane, name: str) -> dict[str, float]:
    """``name{type="..."}`` samples of the control plane's ``/metrics``, by type."""
    out: dict[str, float] = {}
    for line in httpx.get(f"{cp.url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line.rpartition(" ")
            out[labels.split('type="', 1)[1].split('"', 1)[0]] = float(value)
    return out


def test_a_restart_fails_no_request_and_sends_no_unchanged_resource_again(
    control_plane: ControlPlane, tmp_path: Path, free_port: Callable[[], int]
) -> None:
    cp = control_plane
    mesh = Mesh(cp, tmp_path, free_port)
    restarted: ControlPlane | None = None
    try:
        mesh.apply(REVIEWS_SERVICE)
        mesh.apply(header_route("before"))
        mesh.add("reviews-v1", {"app": "reviews", "version": "v1"})
        client = mesh.add("productpage", {"app": "productpage"}, app_port=None)

        eventually(lambda: served(client, "before"), 30, "reviews through the client's sidecar")
        # The control plane records the sidecars connected through their streams.
        record = cp.data_dir / "connected-sidecars.json"
        eventually(lambda: record.exists() and "reviews-v1" in record.read_text(), 10, "the record")

        with Load(client) as load:
            eventually(lambda: load.ok >= 20, 20, "requests flowing")
            # The control plane and its API worker, as a crash of its host or unit would.
            os.killpg(cp.proc.pid, signal.SIGKILL)
            cp.proc.wait(10)
            restarted = start_control_plane(cp.data_dir, cp.config, cp.api_port, cp.xds_port)
            for name in ("productpage", "reviews-v1"):
                eventually(partial(connected_to, restarted, name), 60, f"{name} reconnected")

            def answered() -> bool:
                pushes = counters(restarted, "pilot_xds_pushes")
                return all(pushes.get(t, 0) >= 2 for t in ("cds", "eds", "lds", "rds"))

            # Each Envoy's requests for clusters, endpoints, listeners and routes answered.
            eventually(answered, 30, "both Envoys' resumed requests answered")
            after_restart = load.ok
            eventually(lambda: load.ok >= after_restart + 50, 30, "requests after the restart")
            sent = counters(restarted, "pilotfish_xds_resources_sent")
            assert sum(sent.values()) == 0, f"resources sent again after the restart: {sent}"

            res = restarted.cli("apply", "-f", "-", input=header_route("after"))
            assert res.returncode == 0, res.stderr
            eventually(lambda: served(client, "after"), 30, "the change applied after the restart")
            after_change = load.ok
            eventually(lambda: load.ok >= after_change + 20, 20, "requests after the change")

        assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:5]}"
        # The change is the first resource the restarted control plane sent: the route config,
        # or over VHDS the virtual host it changed.
        sent = counters(restarted, "pilotfish_xds_resources_sent")
        assert sent.get("rds", 0) + sent.get("vhds", 0) >= 1, sent
    finally:
        mesh.stop()
        if restarted is not None:
            restarted.kill(signal.SIGKILL)
