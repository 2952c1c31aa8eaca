"""TCP and TLS routing on sidecars with pods: real capture (iptables REDIRECT), real Envoys.

``tcp-echo`` v1 and v2 answer each line with their word (``one hello``), in plain TCP on 9000
and in TLS on 8443; a ``sleep`` pod connects through its sidecar to the service name (its
VIP). A VirtualService's ``tcp`` rules shift the plain connections 80/20 then 0/100 between
the subsets, and its ``tls`` rules send TLS connections by SNI: ``one.example.com`` to v1,
``two.example.com`` to v2; ``tcp`` matches on the caller's labels (a ``tester`` pod) and on
the destination subnet take precedence over the split.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pilotfish.identity import CASettings, MeshCA
from tests.e2e.conftest import Mesh, bring_up

pytestmark = pytest.mark.e2e

# The apps run from the command line (a private checkout's files are not theirs to read).
SERVER = r"""
import socketserver, ssl, sys, tempfile, threading
prefix, cert, key = sys.argv[1].encode(), sys.argv[2], sys.argv[3]
files = []
for pem in (cert, key):
    f = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
    f.write(pem)
    f.close()
    files.append(f.name)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(*files)
def handler(tls):
    class Echo(socketserver.StreamRequestHandler):
        def setup(self):
            if tls:
                self.request = ctx.wrap_socket(self.request, server_side=True)
            super().setup()
        def handle(self):
            for line in self.rfile:
                self.wfile.write(prefix + b" " + line)
                self.wfile.flush()
    return Echo
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
plain = socketserver.ThreadingTCPServer(("0.0.0.0", 9000), handler(False))
secure = socketserver.ThreadingTCPServer(("0.0.0.0", 8443), handler(True))
threading.Thread(target=secure.serve_forever, daemon=True).start()
plain.serve_forever()
"""

CLIENT = r"""
import collections, json, socket, ssl, sys
host, port, sni, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
seen = collections.Counter()
for _ in range(n):
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            s = ctx.wrap_socket(raw, server_hostname=sni) if sni else raw
            s.sendall(b"hello\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        seen[data.decode().split(" ")[0] or "closed"] += 1
    except OSError:
        seen["error"] += 1
print(json.dumps(seen))
"""


def deployment(name: str, labels: dict[str, str], command: list[str], ports: list[int]) -> Any:
    container: dict[str, Any] = {"name": name, "command": command}
    if ports:
        container["ports"] = [{"containerPort": p} for p in ports]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "tcp-echo", "namespace": "default"},
    "spec": {
        "selector": {"app": "tcp-echo"},
        "ports": [{"name": "tcp", "port": 9000}, {"name": "tls", "port": 8443}],
    },
}
SUBSETS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "tcp-echo", "namespace": "default"},
    "spec": {
        "host": "tcp-echo",
        "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}},
        ],
    },
}


def dest(subset: str, port: int, weight: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": "tcp-echo", "subset": subset,
                                         "port": {"number": port}}}  # fmt: skip
    if weight is not None:
        d["weight"] = weight
    return d


def routing(v1: int, v2: int, *first: dict[str, Any]) -> dict[str, Any]:
    """The VirtualService: ``first`` tcp matches sending to v2, then the v1/v2 split."""
    tcp: list[dict[str, Any]] = (
        [{"match": list(first), "route": [dest("v2", 9000)]}] if first else []
    )
    tcp.append({"match": [{"port": 9000}], "route": [dest("v1", 9000, v1), dest("v2", 9000, v2)]})
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "tcp-echo", "namespace": "default"},
        "spec": {
            "hosts": ["tcp-echo", "*.example.com"],
            "tcp": tcp,
            "tls": [
                {
                    "match": [{"port": 8443, "sniHosts": ["one.example.com"]}],
                    "route": [dest("v1", 8443)],
                },
                {
                    "match": [{"port": 8443, "sniHosts": ["two.example.com"]}],
                    "route": [dest("v2", 8443)],
                },
            ],
        },
    }


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with bring_up(tmp_path_factory.mktemp("l4")) as m:
        m.cli("label", "namespace", "default", "istio-injection=enabled", "--overwrite")
        yield m


def apply(mesh: Mesh, tmp: Path, *docs: Any) -> None:
    path = tmp / "docs.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}))
    mesh.cli("apply", "-f", str(path))


def connections(mesh: Mesh, pod: str, port: int, sni: str = "", n: int = 20) -> dict[str, int]:
    """Which word answered each of ``n`` connections from ``pod`` to tcp-echo:port."""
    res = mesh.local(
        "exec", pod, "--", "python3", "-c", CLIENT, "tcp-echo", str(port), sni, str(n),
        check=False,
    )  # fmt: skip
    try:
        return dict(json.loads(res.stdout))
    except ValueError:
        return {"exec failed": 1}


def settle(check: Any, what: str, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last is True:
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {last}")


def test_tcp_shifting_and_tls_sni_routes_on_sidecars(mesh: Mesh, tmp_path: Path) -> None:
    ca = MeshCA.open(CASettings(tmp_path / "ca"))
    cert = ca.issue_serving_certificate(["*.example.com"])
    server = ["python3", "-c", SERVER]
    keys = [cert.cert_chain_pem, cert.private_key_pem]
    apply(
        mesh,
        tmp_path,
        deployment("sleep", {"app": "sleep"},
                   ["python3", "-c", "import time; time.sleep(1e9)"], []),
        deployment("tester", {"app": "tester"},
                   ["python3", "-c", "import time; time.sleep(1e9)"], []),
        deployment("tcp-echo-v1", {"app": "tcp-echo", "version": "v1"},
                   [*server, "one", *keys], [9000, 8443]),
        deployment("tcp-echo-v2", {"app": "tcp-echo", "version": "v2"},
                   [*server, "two", *keys], [9000, 8443]),
        SERVICE,
        SUBSETS,
        routing(100, 0),
    )  # fmt: skip
    mesh.wait_pods_ready("default", 4)
    sleep, tester = mesh.pod_named("sleep"), mesh.pod_named("tester")

    def only(word: str, port: int, sni: str = "") -> bool | dict[str, int]:
        seen = connections(mesh, sleep, port, sni)
        return seen == {word: 20} or seen

    # tcp: 100/0, then 80/20, then 0/100.
    settle(lambda: only("one", 9000), "all plain connections to v1")
    apply(mesh, tmp_path, routing(80, 20))
    settle(lambda: "two" in connections(mesh, sleep, 9000, n=5), "v2 taking connections")
    split = connections(mesh, sleep, 9000, n=200)
    assert set(split) == {"one", "two"}, split
    assert 20 <= split["two"] <= 60, split  # expected 40; 3.5 standard deviations either way
    apply(mesh, tmp_path, routing(0, 100))
    settle(lambda: only("two", 9000), "all plain connections to v2")
    # tls: by SNI, whatever the tcp rules say.
    settle(lambda: only("one", 8443, "one.example.com"), "one.example.com to v1")
    assert only("two", 8443, "two.example.com") is True
    # An SNI no tls rule names goes to the service (both subsets).
    other = connections(mesh, sleep, 8443, "three.example.com", n=40)
    assert set(other) == {"one", "two"}, other

    # tcp matches on the caller's labels and on the destination subnet (the VIP).
    # Each wait includes the caller whose answer changes: the tester got "two" before too.
    apply(mesh, tmp_path, routing(100, 0, {"sourceLabels": {"app": "tester"}}))
    settle(
        lambda: (
            connections(mesh, tester, 9000) == {"two": 20}
            and connections(mesh, sleep, 9000) == {"one": 20}
        ),
        "tester's own rule",
    )
    assert connections(mesh, sleep, 9000) == {"one": 20}
    svc = json.loads(mesh.cli("get", "service", "tcp-echo", "-o", "json").stdout)
    vip = svc["spec"]["clusterIP"]
    apply(mesh, tmp_path, routing(100, 0, {"destinationSubnets": ["192.0.2.0/24"]}))
    settle(lambda: connections(mesh, tester, 9000) == {"one": 20}, "another subnet")
    apply(mesh, tmp_path, routing(100, 0, {"destinationSubnets": [f"{vip}/32"]}))
    settle(lambda: connections(mesh, sleep, 9000) == {"two": 20}, "the VIP's subnet")
    # ... and on the caller's address (sourceSubnet).
    tester_ip = {p["metadata"]["name"]: p["status"]["podIP"] for p in mesh.pods()}[tester]
    apply(mesh, tmp_path, routing(100, 0, {"sourceSubnet": f"{tester_ip}/32"}))
    settle(
        lambda: (
            connections(mesh, tester, 9000) == {"two": 20}
            and connections(mesh, sleep, 9000) == {"one": 20}
        ),
        "the tester's address",
    )
    assert connections(mesh, sleep, 9000) == {"one": 20}


# A plain TCP echo (``one hello``) on 9000, for the RBAC test.
ECHO = r"""
import socketserver
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(b"one " + line)
            self.wfile.flush()
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", 9000), Echo).serve_forever()
"""
RBAC_NS = "rbac"


def tcp_policy(action: str, source_ip: str) -> dict[str, Any]:
    """An AuthorizationPolicy on tcp-echo's port 9000 matching connections from ``source_ip``."""
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "echo-tcp", "namespace": RBAC_NS},
        "spec": {
            "selector": {"matchLabels": {"app": "tcp-echo"}},
            "action": action,
            "rules": [
                {
                    "from": [{"source": {"ipBlocks": [f"{source_ip}/32"]}}],
                    "to": [{"operation": {"ports": ["9000"]}}],
                }
            ],
        },
    }


def test_explain_tcp_rbac_agrees_with_real_connections(mesh: Mesh, tmp_path: Path) -> None:
    """`x explain tcp://...`'s network RBAC verdict against what real connections got: an
    ALLOW policy that matches one client closes the other's connections, a DENY the reverse."""
    idle = ["python3", "-c", "import time; time.sleep(1e9)"]
    docs = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": RBAC_NS, "labels": {"istio-injection": "enabled"}}},
        deployment("sleep", {"app": "sleep"}, idle, []),
        deployment("tester", {"app": "tester"}, idle, []),
        deployment("tcp-echo", {"app": "tcp-echo"}, ["python3", "-c", ECHO], [9000]),
        {**SERVICE, "spec": {"selector": {"app": "tcp-echo"},
                             "ports": [{"name": "tcp", "port": 9000}]}},
    ]  # fmt: skip
    for d in docs[1:]:
        d["metadata"] = {**d["metadata"], "namespace": RBAC_NS}
    apply(mesh, tmp_path, *docs)
    pods = {p["metadata"]["name"]: p for p in mesh.wait_pods_ready(RBAC_NS, 3)}
    sleep = mesh.pod_named("sleep", RBAC_NS)
    tester = mesh.pod_named("tester", RBAC_NS)
    tester_ip = pods[tester]["status"]["podIP"]

    def explained(pod: str) -> dict[str, Any]:
        out = mesh.cli("x", "explain", "--from", f"{pod}.{RBAC_NS}", "tcp://tcp-echo:9000",
                       "-o", "json").stdout  # fmt: skip
        return dict(json.loads(out)["verdict"])

    def real(pod: str) -> bool | dict[str, int]:
        """True when every connection got the echo, False when RBAC closed every one."""
        res = mesh.local(
            "exec", pod, "-n", RBAC_NS, "--", "python3", "-c", CLIENT, "tcp-echo", "9000", "",
            "5", check=False,
        )  # fmt: skip
        try:
            seen = dict(json.loads(res.stdout))
        except ValueError:
            return {"exec failed": 1}
        return True if set(seen) == {"one"} else False if set(seen) == {"closed"} else seen

    for action, allowed in (("ALLOW", {tester: True, sleep: False}),
                            ("DENY", {tester: False, sleep: True})):  # fmt: skip
        apply(mesh, tmp_path, tcp_policy(action, tester_ip))
        mesh.cli("wait", "--for=synced", "--timeout", "60s")
        for pod, want in allowed.items():
            verdict = explained(pod)
            assert verdict["allowed"] is want, (action, pod, verdict)
            if action == "ALLOW" or not want:  # the policy decided (a DENY that does not
                assert verdict["policy"] == f"{RBAC_NS}/echo-tcp", verdict  # match: none)
            if not want:
                assert verdict["reason"] == "RBAC: connection closed", verdict
            what = f"{action}: connections from {pod} {'accepted' if want else 'closed'}"

            def agrees(p: str = pod, w: bool = want) -> bool | dict[str, Any]:
                got = real(p)
                return True if got is w else {"explained": w, "real": got}

            settle(agrees, what)
