"""Two control-plane replicas (real ``pilotfish server`` processes) on one PostgreSQL database
allocate VIPs at the same moment for hostnames whose hashes collide: every stored address is
held by one hostname, whichever replica committed first."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from pilotfish.api.kinds import APPLY_PATH
from pilotfish.registry.vip import VipAllocator
from tests.integration.harness import ControlPlane

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PAIRS = 8


def colliding(prefix: str, suffix: str, count: int) -> list[tuple[str, str]]:
    """``count`` pairs of names whose hostnames (``prefix-N`` + ``suffix``) share the
    allocator's first choice, each pair a choice of its own."""
    seen: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for i in range(100_000):
        name = f"{prefix}-{i}"
        ip = VipAllocator().allocate(name + suffix)
        if seen.get(ip):
            pairs.append((seen[ip], name))
            seen[ip] = ""
            if len(pairs) == count:
                return pairs
        seen.setdefault(ip, name)
    raise AssertionError("not enough colliding hostnames")


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "name": "http"}]},
    }


def entry(host: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": host.split(".")[0], "namespace": "default"},
        "spec": {
            "hosts": [host],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "NONE",
        },
    }


def test_colliding_vips_applied_through_two_replicas_at_once_stay_unique(
    replicas: tuple[ControlPlane, ControlPlane],
) -> None:
    a, b = replicas
    services = colliding("web", ".default.svc.cluster.local", PAIRS)
    hosts = colliding("ext", ".example.com", PAIRS)
    batches = {
        "a": [service(x) for x, _ in services] + [entry(f"{x}.example.com") for x, _ in hosts],
        "b": [service(y) for _, y in services] + [entry(f"{y}.example.com") for _, y in hosts],
    }
    start = threading.Barrier(2)
    answers: dict[str, httpx.Response | BaseException] = {}

    def apply(name: str, cp: ControlPlane) -> None:
        start.wait()
        try:
            answers[name] = httpx.post(
                f"{cp.url}{APPLY_PATH}",
                json={"items": batches[name]},
                headers={"Authorization": f"Bearer {cp.token}"},
                timeout=60,
            )
        except BaseException as exc:  # reported below
            answers[name] = exc

    threads = [threading.Thread(target=apply, args=x) for x in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, answer in answers.items():
        assert isinstance(answer, httpx.Response), f"replica {name}: {answer!r}"
        assert answer.status_code == 200, f"replica {name}: {answer.text}"

    # Read back through either replica: one hostname per address.
    headers = {"Authorization": f"Bearer {b.token}"}
    got = httpx.get(f"{b.url}/api/v1/namespaces/default/services", headers=headers, timeout=10)
    assert got.status_code == 200, got.text
    held: dict[str, str] = {}
    for item in got.json()["items"]:
        name = item["metadata"]["name"]
        ip = item["spec"]["clusterIP"]
        assert ip not in held, f"{ip} held by Service {name} and {held[ip]}"
        held[ip] = f"Service {name}"
    got = httpx.get(
        f"{b.url}/apis/networking.istio.io/v1/namespaces/default/serviceentries",
        headers=headers,
        timeout=10,
    )
    assert got.status_code == 200, got.text
    for item in got.json()["items"]:
        for addr in item["status"]["addresses"]:
            ip = addr["value"]
            assert ip not in held, f"{ip} held by {addr['host']} and {held[ip]}"
            held[ip] = addr["host"]
    assert len(held) == 4 * PAIRS, held
