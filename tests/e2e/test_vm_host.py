"""A workload on a second host joins the local mesh through a WorkloadGroup.

The "host" is a network namespace this test makes, linked to the host namespace by a veth
(routes only: the pods reach it through their default route, it reaches them and the control
plane through its own). Its files come from ``pilotfish x workload entry configure``, its agent
is ``pilotfish proxy --config-dir DIR`` alone, capturing the whole host with the pod's iptables
rules. With ``PeerAuthentication`` STRICT in the namespace:

- the agent registers the WorkloadEntry ``vmapp-<ip>`` and a pod calls the host's app through
  the Service ``vmapp`` (mTLS from the pod's sidecar to the host's);
- a plaintext call to the host's app from outside the mesh is refused (inbound is captured);
- the host's app calls a mesh Service at its VIP (outbound is captured; mTLS to the pod);
- when the agent stops, its capture rules are gone and, after the reconnect grace, its entry:
  the Service has no endpoint left.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, Mesh, _free_cidr, bring_up

pytestmark = pytest.mark.e2e

CONFIG = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        command: [python3, -m, http.server, "8080"]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: vmapp}
spec:
  selector: {app: vmapp}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec:
  mtls: {mode: STRICT}
"""

GROUP = """
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: vmapp, namespace: default}
spec:
  metadata:
    labels: {app: vmapp}
  template:
    serviceAccount: vmapp
    labels: {version: v1}
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with bring_up(tmp_path_factory.mktemp("vmhost")) as m:
        m.cli("label", "namespace", "default", "istio-injection=enabled", "--overwrite")
        yield m


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {res.returncode}\n{res.stdout}{res.stderr}")
    return res


def settle(check: Callable[[], object], what: str, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last is True:
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {last}")


def nat_rules(netns: str) -> str:
    return sh("ip", "netns", "exec", netns, "iptables-nft-save", "-t", "nat").stdout


@pytest.fixture
def host(mesh: Mesh) -> Iterator[tuple[str, str]]:
    """A second host: (netns, its IP), linked by a veth and routes; removed after."""
    net = ipaddress.IPv4Network(_free_cidr())
    outer, inner = str(net.network_address + 1), str(net.network_address + 2)
    netns, link = f"{mesh.prefix}vm", f"{mesh.prefix}vm0"
    sh("ip", "netns", "add", netns)
    try:
        sh("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns)
        sh("ip", "addr", "add", f"{outer}/{net.prefixlen}", "dev", link)
        sh("ip", "link", "set", link, "up")
        ns = ("ip", "netns", "exec", netns)
        sh(*ns, "ip", "addr", "add", f"{inner}/{net.prefixlen}", "dev", "eth0")
        sh(*ns, "ip", "link", "set", "eth0", "up")
        sh(*ns, "ip", "link", "set", "lo", "up")
        sh(*ns, "ip", "route", "add", "default", "via", outer)
        yield netns, inner
    finally:
        sh("ip", "link", "del", link, check=False)
        sh("ip", "netns", "del", netns, check=False)


def plain_status(ip: str) -> str:
    """The host's app called directly from the host namespace, outside the mesh."""
    res = sh("curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
             f"http://{ip}:8080/hello", check=False)  # fmt: skip
    return res.stdout.strip() or "000"


def entries(mesh: Mesh) -> dict[str, dict]:  # type: ignore[type-arg]
    items = json.loads(mesh.cli("get", "workloadentries", "-o", "json").stdout).get("items") or []
    return {str(i["metadata"]["name"]): i for i in items}


def curl_in_pod(mesh: Mesh, pod: str, url: str) -> str:
    res = mesh.local("exec", pod, "--", "curl", "-s", "-m", "5", "-w", " %{http_code}", url,
                     check=False)  # fmt: skip
    return res.stdout.strip()


def test_a_second_host_joins_through_its_workload_group(
    mesh: Mesh, host: tuple[str, str], tmp_path: Path
) -> None:
    netns, ip = host
    mesh.cli("apply", "-f", "-", input=CONFIG + "---" + GROUP)
    (web,) = mesh.wait_pods_ready("default", 1)
    web_pod = web["metadata"]["name"]
    vip = json.loads(mesh.cli("get", "svc", "web", "-o", "json").stdout)["spec"]["clusterIP"]

    group = tmp_path / "workloadgroup.yaml"
    group.write_text(GROUP)
    files = tmp_path / "vm-files"
    out = mesh.cli(
        "x", "workload", "entry", "configure", "-f", str(group), "-o", str(files),
        "--autoregister",
    ).stdout  # fmt: skip
    assert "bound to WorkloadGroup vmapp" in out
    for name in ("cluster.env", "mesh.yaml", "root-cert.pem", "istio-token", "hosts"):
        assert (files / name).is_file(), name
    assert (files / "istio-token").stat().st_mode & 0o777 == 0o600
    assert "istiod.istio-system.svc" in (files / "hosts").read_text()

    # The host's app, and its agent from the directory alone.
    site = tmp_path / "site"
    site.mkdir()
    (site / "hello").write_text("hello from the vm\n")
    ns = ("ip", "netns", "exec", netns)
    app = subprocess.Popen(
        [*ns, "python3", "-m", "http.server", "8080", "--directory", str(site)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    # Before the agent: the host is reachable from outside the mesh in plaintext.
    settle(lambda: plain_status(ip) == "200" or plain_status(ip), "the host's app, directly")
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen(
        [*ns, sys.executable, "-m", "pilotfish.cli.main", "proxy", "--config-dir", str(files)],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=mesh.env, start_new_session=True,
    )  # fmt: skip
    try:
        _run(mesh, netns, ip, vip, web_pod, agent, tmp_path)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nagent log:\n{(tmp_path / 'agent.log').read_text()}") from None
    finally:
        for proc in (agent, app):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()
        shutil.rmtree(f"/tmp/pilotfish/proxy/vmapp-{ip}.default", ignore_errors=True)


def _run(
    mesh: Mesh,
    netns: str,
    ip: str,
    vip: str,
    web_pod: str,
    agent: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    ns = ("ip", "netns", "exec", netns)
    name = f"vmapp-{ip}"

    def registered() -> object:
        if agent.poll() is not None:
            raise AssertionError(f"the agent exited with {agent.returncode}")
        return name in entries(mesh) or sorted(entries(mesh))

    settle(registered, f"WorkloadEntry {name}")
    entry = entries(mesh)[name]
    assert entry["spec"]["address"] == ip
    assert entry["spec"]["serviceAccount"] == "vmapp"
    assert entry["spec"]["labels"]["app"] == "vmapp"
    rules = nat_rules(netns)
    assert "-A PREROUTING -p tcp -j ISTIO_INBOUND" in rules
    assert "-A OUTPUT -p tcp -j ISTIO_OUTPUT" in rules

    # A pod calls the host's app through the mesh (mTLS: the namespace is STRICT).
    settle(
        lambda: (
            curl_in_pod(mesh, web_pod, "http://vmapp/hello") == "hello from the vm\n 200"
            or curl_in_pod(mesh, web_pod, "http://vmapp/hello")
        ),
        "web pod -> vmapp on the second host",
    )
    # Plaintext from outside the mesh is captured and refused by the host's sidecar.
    assert plain_status(ip) == "000"
    # The host's app calls a mesh Service at its VIP, through its sidecar (mTLS to web).
    settle(
        lambda: sh(*ns, "curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                   "-H", "Host: web", f"http://{vip}/", check=False).stdout.strip()
        == "200",
        "the second host -> web through the mesh",
    )  # fmt: skip

    # The agent leaves: its rules go at once, its entry after the reconnect grace.
    os.killpg(agent.pid, signal.SIGTERM)
    assert agent.wait(30) == 0, (tmp_path / "agent.log").read_text()
    assert "ISTIO" not in nat_rules(netns)
    settle(lambda: name not in entries(mesh), f"WorkloadEntry {name} removed")
    settle(
        lambda: curl_in_pod(mesh, web_pod, "http://vmapp/hello").endswith("503"),
        "vmapp without endpoints",
    )
