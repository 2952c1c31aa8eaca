"""The maximum connection age: the control plane closes xDS connections once they are old
(``--max-connection-age``) and Envoy reconnects by itself, without a failed request and
without losing config; a change applied afterwards still reaches it.

The age is set to one second so that several reconnections happen within the test; the
test counts Envoy's own connections of the ``xds-grpc`` cluster (``upstream_cx_total``), and
asserts no timing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import REVIEWS_SERVICE, ControlPlane, Mesh, Sidecar, eventually
from tests.integration.replicas.test_failover import Load, header_route, served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def xds_connections(sc: Sidecar) -> int:
    r = httpx.get(
        f"http://127.0.0.1:{sc.admin_port}/stats",
        params={"filter": r"^cluster\.xds-grpc\.upstream_cx_total$"},
        timeout=5,
    )
    for line in r.text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "cluster.xds-grpc.upstream_cx_total":
            return int(value)
    return 0


def test_old_connections_are_closed_and_envoy_reconnects_without_a_failed_request(
    control_plane_factory: Callable[..., ControlPlane],
    tmp_path: Path,
    free_port: Callable[[], int],
) -> None:
    cp = control_plane_factory("--max-connection-age", "1s", "--max-connection-age-grace", "1s")
    mesh = Mesh(cp, tmp_path, free_port)
    try:
        mesh.apply(REVIEWS_SERVICE)
        mesh.apply(header_route("first"))
        mesh.add("reviews-v1", {"app": "reviews", "version": "v1"})
        client = mesh.add("productpage", {"app": "productpage"}, app_port=None)

        eventually(lambda: served(client, "first"), 30, "reviews through the client's sidecar")
        with Load(client) as load:
            start = xds_connections(client)
            eventually(lambda: xds_connections(client) >= start + 3, 60, "xDS reconnections")
            mesh.apply(header_route("second"))
            eventually(lambda: served(client, "second"), 30, "a change after the reconnections")
        assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:5]}"
        assert load.ok > 0
    finally:
        mesh.stop()
