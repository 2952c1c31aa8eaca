"""kube-proxy style VIPs in a pod without a sidecar: spread, updates, rejects, removal."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pilotfish.platform.local.capture import CaptureSettings, apply_capture
from pilotfish.platform.local.commands import IptablesTools, PlatformError, run
from pilotfish.platform.local.network import PodNetwork
from pilotfish.platform.local.process import PodProcess
from pilotfish.platform.local.service_lb import (
    Endpoint,
    ServicePort,
    apply_service_lb,
    remove_service_lb,
)
from pilotfish.platform.local.users import MeshUsers
from tests.integration.platform.helpers import connect_from, start_echo

VIP = "10.96.3.7"


def _save(netns: str) -> str:
    return run(["ip", "netns", "exec", netns, IptablesTools.default().save]).stdout


def test_vip_balances_over_ready_endpoints_and_follows_changes(
    pod_network: PodNetwork, mesh_users: MeshUsers, started: list[PodProcess], log_dir: Path
) -> None:
    app = mesh_users.app
    a = pod_network.create_pod_netns("echo-a")
    b = pod_network.create_pod_netns("echo-b")
    client = pod_network.create_pod_netns("client")
    started.append(start_echo(a.name, "a", 8080, app.uid, app.gid, log_dir))
    started.append(start_echo(b.name, "b", 8080, app.uid, app.gid, log_dir))

    both = ServicePort("default/echo", VIP, 80, (Endpoint(a.ip, 8080), Endpoint(b.ip, 8080)))
    apply_service_lb(client.name, [both])
    answers = connect_from(client.name, app.uid, app.gid, *[f"{VIP}:80"] * 64)
    seen = Counter(line.split()[0] for line in answers)
    # Each connection picks one backend at random; 64 tries all landing on one side is ~1e-19.
    assert set(seen) == {"a", "b"}, answers[:3]
    assert all(line.endswith(client.ip) for line in answers)

    only_b = ServicePort("default/echo", VIP, 80, (Endpoint(b.ip, 8080),))
    apply_service_lb(client.name, [only_b])
    answers = connect_from(client.name, app.uid, app.gid, *[f"{VIP}:80"] * 16)
    assert {line.split()[0] for line in answers} == {"b"}
    saved = _save(client.name)
    assert saved.count("-A OUTPUT -j PF_SERVICES\n") == 1  # updates never duplicate the jumps
    assert saved.count("-A OUTPUT -j PF_SERVICES_REJECT\n") == 1
    assert a.ip not in saved

    # No ready endpoint: refused at once instead of hanging on an address nobody has.
    apply_service_lb(client.name, [ServicePort("default/echo", VIP, 80)])
    assert connect_from(client.name, app.uid, app.gid, f"{VIP}:80") == [
        "error ConnectionRefusedError"
    ]

    remove_service_lb(client.name)
    remove_service_lb(client.name)  # idempotent
    assert "PF_SERVICES" not in _save(client.name)
    # Pod IPs still work directly.
    assert connect_from(client.name, app.uid, app.gid, f"{a.ip}:8080")[0].startswith("a ")


def test_pods_with_capture_are_refused(pod_network: PodNetwork, mesh_users: MeshUsers) -> None:
    pod = pod_network.create_pod_netns("sidecar")
    proxy = mesh_users.proxy
    apply_capture(pod.name, CaptureSettings(proxy_uid=proxy.uid, proxy_gid=proxy.gid))
    svc = ServicePort("default/echo", VIP, 80, (Endpoint("10.96.200.1", 80),))
    with pytest.raises(PlatformError, match=f"{pod.name}: has sidecar capture"):
        apply_service_lb(pod.name, [svc])
    assert "PF_SERVICES" not in _save(pod.name)
