"""The control plane and the CLI as a user drives them: real server process, real SQLite."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import yaml

from tests.integration.harness import ControlPlane

TUTORIALS = Path(__file__).resolve().parents[3] / "samples" / "tutorials"

VS_V1 = textwrap.dedent(
    """\
    apiVersion: networking.istio.io/v1beta1
    kind: VirtualService
    metadata:
      name: reviews
    spec:
      hosts:
      - reviews
      http:
      - route:
        - destination:
            host: reviews
            subset: v1
    """
)

INVALID = textwrap.dedent(
    """\
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata:
      name: ok-rule
    spec:
      host: ratings
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata:
      name: broken
    spec:
      hosts: [reviews]
      http:
      - route:
        - destination: {host: reviews, subset: v1}
          weight: 50
        - destination: {host: reviews, subset: v2}
          weight: -10
    """
)


def test_every_tutorial_example_applies_and_lists(control_plane: ControlPlane) -> None:
    control_plane.cli("create", "namespace", "legacy", check=True)
    res = control_plane.cli("apply", "-f", str(TUTORIALS), check=True)
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert lines and all(ln.endswith(" created") or ln.endswith(" configured") for ln in lines), (
        res.stdout
    )
    docs = [
        d for f in sorted(TUTORIALS.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d
    ]
    assert len(docs) >= 15
    # The tracing IstioOperator is written without metadata: istioctl's installed-state.
    for d in docs:
        d.setdefault("metadata", {"name": "installed-state", "namespace": "istio-system"})
    # Two tutorials name an AuthorizationPolicy the same: the file applied last wins.
    latest = {
        (d["kind"], d["metadata"].get("namespace", "default"), d["metadata"]["name"]): d
        for d in docs
    }
    for (_, ns, _), d in latest.items():
        got = control_plane.cli(
            "get", d["kind"], d["metadata"]["name"], "-n", ns, "-o", "json", check=True
        )
        obj = json.loads(got.stdout)
        assert obj["spec"] == d.get("spec", obj["spec"])
        assert obj["metadata"]["resourceVersion"]
    table = control_plane.cli("get", "vs", "-A", check=True).stdout
    assert table.splitlines()[0].split()[:4] == ["NAMESPACE", "NAME", "GATEWAYS", "HOSTS"]
    several = control_plane.cli("get", "vs,pa", "-A", check=True).stdout
    headers = [ln.split()[:3] for ln in several.splitlines() if ln.startswith("NAMESPACE")]
    assert headers == [["NAMESPACE", "NAME", "GATEWAYS"], ["NAMESPACE", "NAME", "MODE"]]


def test_apply_get_describe_delete_roundtrip(control_plane: ControlPlane, tmp_path: Path) -> None:
    f = tmp_path / "vs.yaml"
    f.write_text(VS_V1)
    assert control_plane.cli("apply", "-f", str(f), check=True).stdout.strip() == (
        "virtualservice.networking.istio.io/reviews created"
    )
    assert control_plane.cli("apply", "-f", str(f), check=True).stdout.strip().endswith("unchanged")
    f.write_text(VS_V1.replace("subset: v1", "subset: v2"))
    assert (
        control_plane.cli("apply", "-f", str(f), check=True).stdout.strip().endswith("configured")
    )

    got = yaml.safe_load(
        control_plane.cli("get", "virtualservice", "reviews", "-o", "yaml", check=True).stdout
    )
    assert got["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v2"
    assert got["apiVersion"] == "networking.istio.io/v1beta1"  # kept as written

    desc = control_plane.cli("describe", "vs", "reviews", check=True).stdout
    assert "Name:         reviews" in desc and "subset: v2" in desc

    listing = json.loads(control_plane.cli("get", "vs", "-o", "json", check=True).stdout)
    assert listing["kind"] == "List" and [i["metadata"]["name"] for i in listing["items"]] == [
        "reviews"
    ]

    assert "deleted" in control_plane.cli("delete", "vs", "reviews", check=True).stdout
    missing = control_plane.cli("get", "vs", "reviews")
    assert missing.returncode != 0 and 'virtualservices "reviews" not found' in missing.stderr


def test_invalid_file_is_rejected_whole_with_field_paths(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(INVALID)
    before = control_plane.revision()
    res = control_plane.cli("apply", "-f", str(f))
    assert res.returncode != 0
    assert "VirtualService default/broken" in res.stderr
    assert "spec.http[0].route[1].weight" in res.stderr
    assert str(f) in res.stderr
    # One file is one transaction: the valid DestinationRule in it was not stored either.
    assert control_plane.revision() == before
    assert control_plane.cli("get", "dr", "ok-rule").returncode != 0
    # The same message offline.
    offline = control_plane.cli("validate", "-f", str(f))
    assert offline.returncode != 0 and "spec.http[0].route[1].weight" in offline.stderr


def test_dry_run_stores_nothing(control_plane: ControlPlane, tmp_path: Path) -> None:
    f = tmp_path / "vs.yaml"
    f.write_text(VS_V1)
    before = control_plane.revision()
    res = control_plane.cli("apply", "-f", str(f), "--dry-run", check=True)
    assert "created (server dry run)" in res.stdout  # a bare --dry-run is the server's
    res = control_plane.cli("apply", "-f", str(f), "--dry-run=server", check=True)
    assert "created (server dry run)" in res.stdout
    res = control_plane.cli("apply", "-f", str(f), "--dry-run=client", check=True)
    assert "reviews valid (client dry run)" in res.stdout
    assert control_plane.revision() == before


def test_stdin_and_namespace_flag(control_plane: ControlPlane) -> None:
    control_plane.cli("create", "namespace", "staging", check=True)
    control_plane.cli("apply", "-f", "-", "-n", "staging", input=VS_V1, check=True)
    got = json.loads(
        control_plane.cli("get", "vs", "reviews", "-n", "staging", "-o", "json", check=True).stdout
    )
    assert got["metadata"]["namespace"] == "staging"
    # A namespace that does not exist is refused, with the fix in the message.
    res = control_plane.cli("apply", "-f", "-", "-n", "nowhere", input=VS_V1)
    assert res.returncode != 0 and 'namespaces "nowhere" not found' in res.stderr


def test_token_is_required_and_wrong_token_changes_nothing(control_plane: ControlPlane) -> None:
    path = "/apis/networking.istio.io/v1/namespaces/default/virtualservices"
    body = yaml.safe_load(VS_V1)
    before = control_plane.revision()
    assert httpx.get(control_plane.url + path).status_code == 401
    bad = httpx.post(control_plane.url + path, json=body, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert control_plane.revision() == before
    good = httpx.post(
        control_plane.url + path,
        json=body,
        headers={"Authorization": f"Bearer {control_plane.token}"},
    )
    assert good.status_code == 201, good.text
    assert control_plane.revision() > before


def test_label_namespace_and_short_names(control_plane: ControlPlane) -> None:
    res = control_plane.cli("label", "namespace", "default", "istio-injection=enabled", check=True)
    assert res.stdout.strip() == "namespace/default labeled"
    ns = json.loads(control_plane.cli("get", "ns", "default", "-o", "json", check=True).stdout)
    assert ns["metadata"]["labels"]["istio-injection"] == "enabled"
    # Changing an existing value needs --overwrite, as kubectl.
    assert control_plane.cli("label", "ns", "default", "istio-injection=disabled").returncode != 0
    control_plane.cli("label", "ns", "default", "istio-injection-", check=True)
    ns = json.loads(control_plane.cli("get", "ns", "default", "-o", "json", check=True).stdout)
    assert "istio-injection" not in (ns["metadata"].get("labels") or {})


def test_unknown_kind_and_bad_yaml_are_clear(control_plane: ControlPlane, tmp_path: Path) -> None:
    assert "doesn't have a resource type" in control_plane.cli("get", "widgets").stderr
    f = tmp_path / "broken.yaml"
    f.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x\n")
    res = control_plane.cli("apply", "-f", str(f))
    assert res.returncode != 0 and "broken.yaml" in res.stderr


def test_state_survives_restart(control_plane_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cp = control_plane_factory()
    f = tmp_path / "vs.yaml"
    f.write_text(VS_V1)
    cp.cli("apply", "-f", str(f), check=True)
    rev = cp.revision()
    cp.kill()
    cp2 = control_plane_factory()
    assert cp2.revision() == rev
    assert cp2.cli("get", "vs", "reviews", check=True).returncode == 0


def test_istio_warnings_are_shown_and_the_resource_is_stored(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    f = tmp_path / "passthrough.yaml"
    f.write_text(
        textwrap.dedent(
            """\
            apiVersion: networking.istio.io/v1
            kind: Gateway
            metadata: {name: pt}
            spec:
              selector: {istio: ingressgateway}
              servers:
              - port: {number: 443, name: tls, protocol: TLS}
                hosts: ["db.example.com"]
                tls: {mode: PASSTHROUGH, credentialName: db-cert}
            """
        )
    )
    res = control_plane.cli("apply", "-f", str(f), check=True)
    assert "gateway.networking.istio.io/pt created" in res.stdout
    assert "Warning: Gateway default/pt: spec.servers[0].tls: PASSTHROUGH mode" in res.stderr
    offline = control_plane.cli("validate", "-f", str(f), check=True)
    assert "PASSTHROUGH mode does not use certificates" in offline.stderr
