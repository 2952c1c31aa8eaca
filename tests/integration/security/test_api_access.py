"""Who may use the HTTP API, what they changed, and the API over TLS: a real server process
on a real SQLite store, driven through the real CLI."""

from __future__ import annotations

import json
import ssl
import textwrap
from collections.abc import Callable

import httpx
import pytest

from tests.integration.harness import ControlPlane

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

VS = textwrap.dedent(
    """\
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata:
      name: reviews
    spec:
      hosts: [reviews]
      http:
      - route:
        - destination: {host: reviews}
    """
)


def test_roles_and_audit_through_the_cli(control_plane: ControlPlane) -> None:
    cp = control_plane
    viewer = cp.cli("token", "create", "ci-viewer", "--role", "read-only", check=True)
    secret = viewer.stdout.strip()
    deployer = cp.cli("token", "create", "deployer", "--role", "admin", check=True).stdout.strip()
    workload = cp.cli("token", "create", "--service-account", "reviews", check=True).stdout.strip()

    cp.cli("--token", deployer, "apply", "-f", "-", input=VS, check=True)
    applied_at = cp.revision()

    # read-only: gets, but neither applies nor deletes (403 naming the user and the role).
    got = cp.cli("--token", secret, "get", "virtualservices", "-o", "json", check=True)
    assert [i["metadata"]["name"] for i in json.loads(got.stdout)["items"]] == ["reviews"]
    refused = cp.cli("--token", secret, "apply", "-f", "-", input=VS.replace("reviews", "x"))
    assert refused.returncode == 1
    assert 'user "ci-viewer" (role read-only) cannot apply' in refused.stderr
    refused = cp.cli("--token", secret, "delete", "virtualservice", "reviews")
    assert refused.returncode == 1 and "role read-only" in refused.stderr
    # A workload token fetches certificates only: the API refuses it.
    refused = cp.cli("--token", workload, "get", "virtualservices")
    assert refused.returncode == 1 and "(role workload)" in refused.stderr
    resp = httpx.get(
        f"{cp.url}/apis/networking.istio.io/v1/virtualservices",
        headers={"Authorization": f"Bearer {workload}"},
    )
    assert resp.status_code == 403
    assert cp.revision() == applied_at  # nothing refused changed anything

    cp.cli("--token", deployer, "delete", "virtualservice", "reviews", check=True)
    deleted_at = cp.revision()

    log = json.loads(cp.cli("audit", "-o", "json", check=True).stdout)["items"]
    changes = [(e["user"], e["role"], e["verb"], e["revision"]) for e in log]
    assert ("deployer", "admin", "apply", applied_at) in changes
    assert ("deployer", "admin", "delete", deleted_at) in changes
    assert ("admin", "admin", "create") in [c[:3] for c in changes]  # the tokens' creation
    assert not any(e["user"] == "ci-viewer" for e in log)
    # read-only may read the log; the table names the objects.
    table = cp.cli("--token", secret, "audit", check=True).stdout
    assert "VirtualService/default/reviews" in table and "deployer" in table

    listed = cp.cli("token", "list", check=True).stdout
    assert "ci-viewer" in listed and "read-only" in listed and secret not in listed
    cp.cli("token", "delete", "ci-viewer", check=True)
    gone = cp.cli("--token", secret, "get", "virtualservices")
    assert gone.returncode == 1 and "valid bearer token" in gone.stderr


def test_api_over_tls(control_plane_factory: Callable[..., ControlPlane]) -> None:
    cp = control_plane_factory("--api-tls")
    assert cp.url.startswith("https://")
    # The context the server wrote verifies the API with the mesh roots.
    cp.cli("apply", "-f", "-", input=VS, check=True)
    assert "reviews" in cp.cli("get", "virtualservices", check=True).stdout
    roots = ssl.create_default_context(cafile=str(cp.roots))
    ok = httpx.get(f"{cp.url}/version", verify=roots)
    assert ok.status_code == 200
    with pytest.raises(httpx.ConnectError):  # not trusted without the mesh roots
        httpx.get(f"{cp.url}/version")
    with pytest.raises(httpx.HTTPError):  # and no plaintext on the port
        httpx.get(cp.url.replace("https://", "http://") + "/version")


def test_root_rotation_steps_are_audited(control_plane: ControlPlane) -> None:
    cp = control_plane
    viewer = cp.cli("token", "create", "viewer", "--role", "read-only", check=True).stdout.strip()
    before = json.loads(cp.cli("ca", "status", "-o", "json", check=True).stdout)["signingRoot"]
    refused = cp.cli("--token", viewer, "ca", "rotate-root")
    assert refused.returncode == 1 and "role read-only" in refused.stderr, refused.stderr

    out = cp.cli("ca", "rotate-root", check=True).stdout
    assert "root rotation done" in out, out
    after = json.loads(cp.cli("ca", "status", "-o", "json", check=True).stdout)["signingRoot"]
    assert after != before

    log = json.loads(cp.cli("audit", "-o", "json", check=True).stdout)["items"]
    steps = [(e["user"], e["role"], e["objects"]) for e in log if e["verb"] == "rotate-root"]
    assert steps == [
        ("admin", "admin", [{"kind": "MeshRoot", "namespace": "", "name": after, "step": s}])
        for s in ("add", "activate", "retire")
    ], steps
    assert all(e["revision"] == cp.revision() for e in log if e["verb"] == "rotate-root")
    table = cp.cli("audit", check=True).stdout
    assert f"MeshRoot/{after} (retire)" in table, table
