"""istio-init style capture in a real pod: who lands on 15001/15006 and who goes direct.

Plain TCP listeners stand in for Envoy on 15001 and 15006 (run as the proxy user) and answer
with the original destination iptables recorded, which proves the redirect.
"""

from __future__ import annotations

from pathlib import Path

from pilotfish.platform.local.capture import CaptureSettings, apply_capture, remove_capture
from pilotfish.platform.local.commands import IptablesTools, run
from pilotfish.platform.local.network import PodNetwork
from pilotfish.platform.local.process import PodProcess
from pilotfish.platform.local.users import MeshUsers
from tests.integration.platform.helpers import connect_from, start_echo

VIP = "10.96.0.50"


def test_outbound_and_inbound_capture(
    pod_network: PodNetwork, mesh_users: MeshUsers, started: list[PodProcess], log_dir: Path
) -> None:
    proxy, app = mesh_users.proxy, mesh_users.app
    a = pod_network.create_pod_netns("captured")
    b = pod_network.create_pod_netns("plain")
    for ns, tag, port, user in [
        (a.name, "outbound", 15001, proxy),
        (a.name, "inbound", 15006, proxy),
        (a.name, "ready", 15021, proxy),
        (a.name, "app-a", 8080, app),
        (b.name, "app-b", 8080, app),
    ]:
        started.append(start_echo(ns, tag, port, user.uid, user.gid, log_dir))

    script = apply_capture(a.name, CaptureSettings(proxy_uid=proxy.uid, proxy_gid=proxy.gid))
    saved = run(["ip", "netns", "exec", a.name, IptablesTools.default().save, "-t", "nat"]).stdout
    assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in saved
    assert saved.count("-A PREROUTING") == 1
    apply_capture(a.name, CaptureSettings(proxy_uid=proxy.uid, proxy_gid=proxy.gid))
    resaved = run(["ip", "netns", "exec", a.name, IptablesTools.default().save, "-t", "nat"])
    assert resaved.stdout.count("-A PREROUTING") == 1  # re-applying replaces, never duplicates
    assert script.startswith("*nat")

    # Outbound from the app: captured, with the original destination preserved.
    app_out = connect_from(
        a.name, app.uid, app.gid, f"{b.ip}:8080", f"{VIP}:9080", "127.0.0.1:8080", f"{a.ip}:8080"
    )
    assert app_out[0] == f"outbound {b.ip}:8080 {a.ip}"
    assert app_out[1] == f"outbound {VIP}:9080 {a.ip}"  # a made-up VIP reaches iptables
    assert app_out[2].startswith("app-a 127.0.0.1:8080")  # localhost is never captured
    assert app_out[3].startswith(f"app-a {a.ip}:8080")  # the app calling its own pod IP

    # The proxy's own traffic goes direct; to its own pod IP it is sent to inbound, except
    # Envoy's inbound passthrough from 127.0.0.6.
    proxy_out = connect_from(
        a.name,
        proxy.uid,
        proxy.gid,
        f"{b.ip}:8080",
        f"{a.ip}:8080",
        f"{a.ip}:8080@127.0.0.6",
    )
    assert proxy_out[0] == f"app-b {b.ip}:8080 {a.ip}"
    assert proxy_out[1].startswith(f"inbound {a.ip}:8080")
    assert proxy_out[2] == f"app-a {a.ip}:8080 127.0.0.6"

    # Inbound from another pod and from the host: captured to 15006, except the proxy's ports.
    from_b = connect_from(b.name, app.uid, app.gid, f"{a.ip}:8080", f"{a.ip}:15021")
    assert from_b[0] == f"inbound {a.ip}:8080 {b.ip}"
    assert from_b[1] == f"ready {a.ip}:15021 {b.ip}"
    from_host = connect_from(None, app.uid, app.gid, f"{a.ip}:8080")
    assert from_host[0] == f"inbound {a.ip}:8080 {pod_network.settings.gateway_ip}"

    # Without capture everything goes direct again.
    remove_capture(a.name)
    after = connect_from(a.name, app.uid, app.gid, f"{b.ip}:8080")
    assert after[0] == f"app-b {b.ip}:8080 {a.ip}"
    assert connect_from(b.name, app.uid, app.gid, f"{a.ip}:8080")[0].startswith("app-a")


def test_excluded_ports_and_cidrs_go_direct(
    pod_network: PodNetwork, mesh_users: MeshUsers, started: list[PodProcess], log_dir: Path
) -> None:
    proxy, app = mesh_users.proxy, mesh_users.app
    a = pod_network.create_pod_netns("captured")
    b = pod_network.create_pod_netns("plain")
    for ns, tag, port, user in [
        (a.name, "outbound", 15001, proxy),
        (a.name, "inbound", 15006, proxy),
        (a.name, "ssh-a", 2222, app),
        (b.name, "db-b", 5432, app),
        (b.name, "app-b", 8080, app),
    ]:
        started.append(start_echo(ns, tag, port, user.uid, user.gid, log_dir))
    apply_capture(
        a.name,
        CaptureSettings(
            proxy_uid=proxy.uid,
            proxy_gid=proxy.gid,
            exclude_inbound_ports=(2222,),
            exclude_outbound_ports=(5432,),
        ),
    )
    out = connect_from(a.name, app.uid, app.gid, f"{b.ip}:5432", f"{b.ip}:8080")
    assert out[0].startswith("db-b")
    assert out[1].startswith("outbound")
    assert connect_from(b.name, app.uid, app.gid, f"{a.ip}:2222")[0].startswith("ssh-a")

    apply_capture(
        a.name,
        CaptureSettings(
            proxy_uid=proxy.uid, proxy_gid=proxy.gid, exclude_outbound_cidrs=(f"{b.ip}/32",)
        ),
    )
    out = connect_from(a.name, app.uid, app.gid, f"{b.ip}:8080")
    assert out[0].startswith("app-b")
    assert connect_from(b.name, app.uid, app.gid, f"{a.ip}:2222")[0].startswith("inbound")
