"""Nothing survives: process groups stop fully; cleanup_all removes a crashed runtime."""

from __future__ import annotations

import json
from pathlib import Path

from pilotfish.platform.local.capture import CaptureSettings, apply_capture
from pilotfish.platform.local.commands import IptablesTools, run
from pilotfish.platform.local.hosts import render_hosts, write_pod_dns
from pilotfish.platform.local.network import PodNetwork, PodNetworkSettings, cleanup_all
from pilotfish.platform.local.process import netns_pids, start_in_pod
from pilotfish.platform.local.users import MeshUsers
from tests.integration.platform.conftest import new_settings
from tests.integration.platform.helpers import POD_PYTHON, wait_for_log

# Leaves a child that ignores SIGTERM (and its own grandchild) behind in the same group.
STUBBORN = r"""
import signal, subprocess, sys, time
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
child = subprocess.Popen([sys.executable, "-c", code])
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("child", child.pid, flush=True)
time.sleep(600)
"""


def _host_state(s: PodNetworkSettings) -> tuple[list[str], list[str], str, list[str]]:
    netns = [
        line.split()[0]
        for line in run(["ip", "netns", "list"]).stdout.splitlines()
        if line.startswith(f"{s.prefix}-")
    ]
    links = [
        str(link["ifname"])
        for link in json.loads(run(["ip", "-j", "-d", "link", "show"]).stdout)
        if str(link["ifname"]).startswith(s.prefix) or link.get("ifalias") == s.marker
    ]
    rules = run([IptablesTools.default().save]).stdout
    etc = sorted(p.name for p in s.etc_netns.glob(f"{s.prefix}-*")) if s.etc_netns.is_dir() else []
    return netns, links, rules, etc


def test_stop_kills_the_whole_process_group(
    pod_network: PodNetwork, mesh_users: MeshUsers, log_dir: Path
) -> None:
    app = mesh_users.app
    pod = pod_network.create_pod_netns("stubborn")
    proc = start_in_pod(
        pod.name,
        [POD_PYTHON, "-c", STUBBORN],
        uid=app.uid,
        gid=app.gid,
        log_path=log_dir / "stubborn.log",
    )
    try:
        wait_for_log(proc, "child")
        inside = netns_pids(pod.name)
        assert proc.pid in inside and len(inside) == 2
    finally:
        status = proc.stop(grace=0.5)
    assert status is not None
    assert netns_pids(pod.name) == []


def test_cleanup_all_removes_a_crashed_runtime(
    pod_network: PodNetwork, mesh_users: MeshUsers, log_dir: Path
) -> None:
    s = pod_network.settings
    proxy = mesh_users.proxy
    neighbour = PodNetwork(new_settings())  # another runtime on the same host: left alone
    try:
        neighbour.setup()
        other = neighbour.create_pod_netns("keep")
        pods = [pod_network.create_pod_netns(name) for name in ("a", "b", "c")]
        for pod in pods:
            write_pod_dns(pod.name, render_hosts(pod.pod_id, pod.ip, "default", []))
        apply_capture(pods[0].name, CaptureSettings(proxy_uid=proxy.uid, proxy_gid=proxy.gid))
        orphan = start_in_pod(pods[1].name, ["sleep", "600"], uid=proxy.uid, gid=proxy.gid)

        netns, links, rules, etc = _host_state(s)
        assert sorted(netns) == sorted(p.name for p in pods)
        assert s.bridge_name in links and all(p.veth_host in links for p in pods)
        assert s.forward_chain in rules and s.marker in rules
        assert etc == sorted(p.name for p in pods)

        # A fresh process with only the settings, as after a crash of the runtime.
        report = cleanup_all(PodNetworkSettings(prefix=s.prefix, pod_cidr=s.pod_cidr))
        try:
            assert orphan.wait(10) is not None  # processes left in pods are killed
        finally:
            orphan.stop(grace=0.5)
        assert sorted(report.namespaces) == sorted(p.name for p in pods)
        assert s.bridge_name in report.links
        assert report.rules_removed
        assert orphan.pid in report.killed_pids

        netns, links, rules, etc = _host_state(s)
        assert (netns, links, etc) == ([], [], [])
        assert s.forward_chain not in rules and s.marker not in rules
        again = cleanup_all(s)  # idempotent
        assert (again.namespaces, again.links, again.rules_removed) == ([], [], False)

        # The neighbour's network is intact.
        n_netns, n_links, n_rules, _ = _host_state(neighbour.settings)
        assert n_netns == [other.name]
        assert neighbour.settings.bridge_name in n_links and other.veth_host in n_links
        assert neighbour.settings.forward_chain in n_rules
        probe = run(["ip", "-n", other.name, "-4", "addr", "show", "dev", "eth0"]).stdout
        assert other.ip in probe
    finally:
        cleanup_all(neighbour.settings)
