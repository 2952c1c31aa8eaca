"""WorkloadGroup auto-registration with real Envoys: an agent started with
``--workload-group`` becomes the WorkloadEntry ``<group>-<ip>`` labelled from the group's
template, serves the Service that selects those labels, calls mesh services, and its entry
goes away once it has left for the reconnect grace."""

from __future__ import annotations

import json

import httpx

from tests.integration.harness import Mesh, eventually

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: vmapp}
spec:
  selector: {app: vmapp}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: client}
spec:
  selector: {app: client}
  ports: [{name: http, port: 9080}]
"""
GROUP = """
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: vmapp}
spec:
  metadata:
    labels: {app: vmapp}
  template:
    labels: {version: v1}
    serviceAccount: vmapp
"""
CONFIG = SERVICES + GROUP


OTHER_GROUP = """
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: other}
spec:
  template:
    serviceAccount: vmapp
"""


def entries(mesh: Mesh) -> dict[str, dict]:  # type: ignore[type-arg]
    res = mesh.live().cli("get", "workloadentries", "-o", "json", check=True)
    data = json.loads(res.stdout)
    items = data.get("items", []) if isinstance(data, dict) else data
    return {str(i["metadata"]["name"]): i for i in items}


def test_a_token_of_another_group_cannot_register(mesh: Mesh) -> None:
    mesh.apply(CONFIG + OTHER_GROUP)
    # Same namespace and service account, but bound to the group "other".
    intruder = mesh.add(
        "ignored",
        {"app": "vmapp"},
        workload_group="vmapp",
        service_account="vmapp",
        group_token="other",
        wait=False,
    )
    eventually(
        lambda: "is bound to WorkloadGroup other" in intruder.log.read_text(),
        20,
        "the control plane refuses the stream, naming the token's group",
    )
    assert f"vmapp-{intruder.ip}" not in entries(mesh)
    # The token bound to "other" registers into "other".
    member = mesh.add(
        "ignored",
        {"app": "vmapp"},
        workload_group="other",
        service_account="vmapp",
    )
    eventually(lambda: f"other-{member.ip}" in entries(mesh), 20, "entry of group other")
    assert f"vmapp-{intruder.ip}" not in entries(mesh)


def test_agent_registers_into_workload_group_serves_and_leaves(mesh: Mesh) -> None:
    mesh.apply(CONFIG)
    client = mesh.add("client", {"app": "client"})
    # The group's labels on the agent too, as `x workload entry configure` would write them
    # (the proxy's own labels choose its inbound listeners).
    vm = mesh.add(
        "ignored",
        {"app": "vmapp", "version": "v1"},
        workload_group="vmapp",
        service_account="vmapp",
    )
    name = f"vmapp-{vm.ip}"
    assert vm.name == name

    eventually(lambda: name in entries(mesh), 20, f"WorkloadEntry {name}")
    entry = entries(mesh)[name]
    assert entry["spec"]["address"] == vm.ip
    assert entry["spec"]["serviceAccount"] == "vmapp"
    # With its certificate the workload serves mTLS: labelled so, as Istio's injector does.
    assert entry["spec"]["labels"] == {
        "app": "vmapp",
        "version": "v1",
        "security.istio.io/tlsMode": "istio",
    }
    annotations = entry["metadata"]["annotations"]
    assert annotations["istio.io/autoRegistrationGroup"] == "vmapp"
    listed = mesh.live().cli("get", "workloadentries", check=True).stdout
    assert name in listed and vm.ip in listed

    # A mesh workload calls the registered one through its Service (template labels select it).
    def served() -> bool:
        r = client.request("vmapp:9080", "/hello")
        return r.status_code == 200 and r.json()["name"] == name

    eventually(served, 20, "client -> vmapp through the mesh")
    # And the registered workload calls a mesh service.
    r = vm.request("client:9080", "/hello")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "client"

    # It leaves: after the reconnect grace its entry is removed and nothing serves vmapp.
    vm.stop()
    eventually(lambda: name not in entries(mesh), 30, f"WorkloadEntry {name} removed")
    eventually(
        lambda: client.request("vmapp:9080", "/hello").status_code == 503,
        20,
        "vmapp without endpoints",
    )


PROBED_GROUP = (
    GROUP
    + """\
  probe:
    httpGet: {path: /healthz, port: 9080}
    periodSeconds: 1
    failureThreshold: 1
"""
)


def test_probe_feeds_endpoint_health(mesh: Mesh) -> None:
    # The group's probe (Istio's readinessProbe, as `configure` writes it into mesh.yaml) is
    # run by the agent against its app; a failing app's endpoint leaves the Service, and comes
    # back once the probe succeeds again. Another endpoint keeps serving meanwhile.
    mesh.apply(SERVICES + PROBED_GROUP)
    client = mesh.add("client", {"app": "client"})
    other = mesh.add("vmapp-other", {"app": "vmapp", "version": "v1"})
    probe = {"httpGet": {"path": "/healthz", "port": 9080}, "periodSeconds": 1}
    vm = mesh.add(
        "ignored",
        {"app": "vmapp", "version": "v1"},
        workload_group="vmapp",
        service_account="vmapp",
        extra_args=("--readiness-probe", json.dumps(probe | {"failureThreshold": 1})),
    )
    name = vm.name

    def healthy_condition() -> str:
        conditions = (entries(mesh).get(name) or {}).get("status", {}).get("conditions") or []
        return next((str(c["status"]) for c in conditions if c["type"] == "Healthy"), "")

    def served_by() -> set[str]:
        names = set()
        for _ in range(12):
            r = client.request("vmapp:9080", "/hello")
            assert r.status_code == 200, r.text
            names.add(str(r.json()["name"]))
        return names

    eventually(lambda: healthy_condition() == "True", 20, f"{name} reported healthy")
    eventually(lambda: served_by() == {name, other.name}, 20, "both endpoints serve")

    # The app fails its probe: the entry turns unhealthy and only the other endpoint serves.
    assert httpx.get(f"http://{vm.ip}:9080/fail/on", timeout=5).status_code == 200
    eventually(lambda: healthy_condition() == "False", 20, f"{name} reported unhealthy")
    message = next(
        c.get("message", "")
        for c in entries(mesh)[name]["status"]["conditions"]
        if c["type"] == "Healthy"
    )
    assert "503" in message
    eventually(lambda: served_by() == {other.name}, 20, f"{name} left out of vmapp")

    # It passes again: its endpoint comes back.
    assert httpx.get(f"http://{vm.ip}:9080/fail/off", timeout=5).status_code == 200
    eventually(lambda: healthy_condition() == "True", 20, f"{name} healthy again")
    eventually(lambda: name in served_by(), 20, f"{name} serves vmapp again")
