"""Pods on a bridge: pod to pod, host to pod, names from the pod's hosts file, pod deletion."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from pilotfish.platform.local.commands import run
from pilotfish.platform.local.hosts import (
    ServiceName,
    render_hosts,
    render_resolv_conf,
    write_pod_dns,
)
from pilotfish.platform.local.network import PodNetwork, mac_for
from pilotfish.platform.local.process import PodProcess, netns_pids, run_in_pod, start_in_pod
from pilotfish.platform.local.users import MeshUsers
from tests.integration.platform.helpers import POD_PYTHON, wait_for_log

FETCH = r"""
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
print(opener.open(sys.argv[1], timeout=10).read().decode().strip())
"""


def test_pods_reach_each_other_and_host_reaches_pod(
    pod_network: PodNetwork, mesh_users: MeshUsers, started: list[PodProcess], log_dir: Path
) -> None:
    app = mesh_users.app
    server = pod_network.create_pod_netns("server")
    client = pod_network.create_pod_netns("client")
    assert server.ip != client.ip
    site = Path(tempfile.mkdtemp(prefix="pf-site-"))
    try:
        site.chmod(0o755)
        token = f"hello from {server.name}"
        (site / "index.html").write_text(token)
        (site / "index.html").chmod(0o644)
        proc = start_in_pod(
            server.name,
            [POD_PYTHON, "-u", "-m", "http.server", "8080", "--bind", "0.0.0.0"],
            uid=app.uid,
            gid=app.gid,
            cwd=site,
            log_path=log_dir / "http.log",
        )
        started.append(proc)
        wait_for_log(proc, "Serving HTTP")

        # pod -> pod, as the unprivileged app user
        got = run_in_pod(
            client.name, [POD_PYTHON, "-c", FETCH, f"http://{server.ip}:8080/"], uid=app.uid,
            gid=app.gid, timeout=30,
        )  # fmt: skip
        assert got.returncode == 0, got.stderr
        assert got.stdout.strip() == token

        # host -> pod through the bridge address
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{server.ip}:8080/", timeout=10) as resp:
            assert resp.read().decode() == token
    finally:
        shutil.rmtree(site, ignore_errors=True)

    # the pod side looks as designed
    addr = run(["ip", "-n", server.name, "-4", "addr", "show", "dev", "eth0"]).stdout
    assert f"{server.ip}/24" in addr
    link = run(["ip", "-n", server.name, "link", "show", "dev", "eth0"]).stdout
    assert mac_for(ipaddress.IPv4Address(server.ip)) in link
    routes = run(["ip", "-n", server.name, "route"]).stdout
    assert f"default via {pod_network.settings.gateway_ip}" in routes
    assert f"{pod_network.settings.service_cidr} dev eth0" in routes


def test_hosts_file_resolves_and_is_updated_in_place(
    pod_network: PodNetwork, mesh_users: MeshUsers, started: list[PodProcess], log_dir: Path
) -> None:
    app = mesh_users.app
    pod = pod_network.create_pod_netns("productpage-v1-0.default")
    services = [ServiceName("reviews", "default", "10.96.0.12")]
    write_pod_dns(
        pod.name,
        render_hosts("productpage-v1-0", pod.ip, "default", services),
        render_resolv_conf("default"),
    )
    lookup = "import socket, sys\nprint(*[socket.gethostbyname(n) for n in sys.argv[1:]])\n"
    names = ["reviews", "reviews.default.svc.cluster.local", "productpage-v1-0", "localhost"]
    got = run_in_pod(pod.name, [POD_PYTHON, "-c", lookup, *names], uid=app.uid, gid=app.gid)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["10.96.0.12", "10.96.0.12", pod.ip, "127.0.0.1"]

    # A process already running sees a service added later (the file is rewritten in place).
    watcher = start_in_pod(
        pod.name,
        [
            POD_PYTHON,
            "-c",
            "import socket, time\n"
            "print('watching', flush=True)\n"
            "while True:\n"
            "    try:\n"
            "        print('resolved', socket.gethostbyname('ratings'), flush=True); break\n"
            "    except OSError:\n"
            "        time.sleep(0.05)\n",
        ],
        uid=app.uid,
        gid=app.gid,
        log_path=log_dir / "watch.log",
    )
    started.append(watcher)
    wait_for_log(watcher, "watching")
    services.append(ServiceName("ratings", "default", "10.96.0.13"))
    write_pod_dns(pod.name, render_hosts("productpage-v1-0", pod.ip, "default", services))
    assert "resolved 10.96.0.13" in wait_for_log(watcher, "resolved")

    # A name that is in no hosts file fails inside the pod (no query leaves it).
    missing = run_in_pod(pod.name, [POD_PYTHON, "-c", lookup, "details"], uid=app.uid, gid=app.gid)
    assert missing.returncode != 0
    assert "gaierror" in missing.stderr


def test_delete_pod_netns_removes_it_and_frees_the_address(pod_network: PodNetwork) -> None:
    s = pod_network.settings
    first = pod_network.create_pod_netns("a")
    assert pod_network.create_pod_netns("a") == first  # idempotent for a live pod
    write_pod_dns(first.name, "127.0.0.1 localhost\n")
    sleeper = start_in_pod(first.name, ["sleep", "600"])
    try:
        # `ip netns exec` moves the process into the pod a moment after it starts.
        deadline = time.monotonic() + 10
        while sleeper.pid not in netns_pids(first.name) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sleeper.pid in netns_pids(first.name)
        pod_network.delete_pod_netns("a")
        assert sleeper.wait(10) is not None  # killed with its pod
    finally:
        sleeper.stop(grace=1.0)
    pod_network.delete_pod_netns("a")  # idempotent
    assert first.name not in run(["ip", "netns", "list"]).stdout
    assert run(["ip", "link", "show", "dev", first.veth_host], check=False).returncode != 0
    assert not (s.etc_netns / first.name).exists()

    again = pod_network.create_pod_netns("b")
    assert again.ip == first.ip  # released addresses are reused ...
    link = run(["ip", "-n", again.name, "link", "show", "dev", "eth0"]).stdout
    assert mac_for(ipaddress.IPv4Address(again.ip)) in link  # ... with the same MAC
    probe = subprocess.run(["ip", "netns", "exec", again.name, "true"], check=False)
    assert probe.returncode == 0


ROUTE = r"""
import socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    try:
        s.connect((sys.argv[1], 15012))
        print("route")
    except OSError as exc:
        print("no route", exc.errno)
"""


def test_a_begun_pod_network_has_its_route_once_finished(pod_network: PodNetwork) -> None:
    # A sidecar's agent enters the namespace after begin_pod_netns: it exists, with eth0, but
    # has no route to the control plane (the gateway) until finish_pod_netns.
    pod = pod_network.begin_pod_netns("early")
    assert Path("/run/netns", pod.name).exists()
    early = run_in_pod(pod.name, [POD_PYTHON, "-c", ROUTE, pod.gateway])
    assert early.stdout.startswith("no route"), early
    assert pod_network.begin_pod_netns("early") == pod  # idempotent for a live pod
    pod_network.finish_pod_netns("early")
    late = run_in_pod(pod.name, [POD_PYTHON, "-c", ROUTE, pod.gateway])
    assert late.stdout.strip() == "route", late
    pod_network.delete_pod_netns("early")
    assert not Path("/run/netns", pod.name).exists()
