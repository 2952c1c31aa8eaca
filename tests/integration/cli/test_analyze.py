"""`pilotfish analyze` as a user runs it: a real control plane with a SQLite store, the real
CLI in a subprocess, files on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.integration.harness import ControlPlane

ROOT = Path(__file__).resolve().parents[3]
BOOKINFO = ROOT / "samples" / "bookinfo"
BOOKINFO_FILES = [
    BOOKINFO / "platform" / "default-namespace.yaml",
    BOOKINFO / "platform" / "bookinfo.yaml",
    BOOKINFO / "networking" / "bookinfo-gateway.yaml",
    BOOKINFO / "networking" / "destination-rule-all.yaml",
    BOOKINFO / "networking" / "virtual-service-all-v1.yaml",
]
CLEAN = "No validation issues found when analyzing namespace: default."
# Bookinfo's destination-rule-all.yaml defines ratings subsets no sample Deployment runs
# (v2-mysql, v2-mysql-vm): IST0173; and bookinfo-gateway.yaml routes gateway requests to
# productpage without the subset virtual-service-all-v1.yaml routes mesh requests to: IST0140.
# istioctl reports both. The tests that want a clean Bookinfo suppress them, as a user would.
NO_PODS = (
    "-S",
    "IST0173=DestinationRule default/*",
    "-S",
    "IngressRouteRulesNotAffected=VirtualService bookinfo.default",
)
UNSERVED_SUBSETS = [
    "Error [IST0173] (DestinationRule default/ratings) The Subset v2-mysql defined in the "
    "DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
    "Error [IST0173] (DestinationRule default/ratings) The Subset v2-mysql-vm defined in the "
    "DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
    "Warning [IST0140] (VirtualService default/bookinfo) Subset in virtual service "
    "default/productpage has no effect on ingress gateway default/bookinfo requests",
]

REVIEWS_V4 = textwrap.dedent(
    """\
    apiVersion: networking.istio.io/v1
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
            subset: v4
    """
)

# Line 11 holds the mistake (subset v9); the first document is correct against live config.
FILE_WITH_MISTAKE = textwrap.dedent(
    """\
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata:
      name: ratings
    spec:
      hosts: [ratings]
      http:
      - route:
        - destination:
            host: ratings
            subset: v9
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata:
      name: details
    spec:
      hosts: [details]
      http:
      - route:
        - destination: {host: details, subset: v2}
    """
)

NO_WORKLOAD_POLICY = textwrap.dedent(
    """\
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata:
      name: backend-only
    spec:
      selector:
        matchLabels: {app: backend}
      action: ALLOW
    """
)


def apply_bookinfo(cp: ControlPlane) -> None:
    cp.cli("apply", *[a for f in BOOKINFO_FILES for a in ("-f", str(f))], check=True)


def test_live_config_bookinfo_clean_then_missing_subset(control_plane: ControlPlane) -> None:
    cp = control_plane
    apply_bookinfo(cp)
    res = cp.cli("analyze")
    assert res.returncode == 79
    assert res.stdout.splitlines() == UNSERVED_SUBSETS

    res = cp.cli("analyze", *NO_PODS)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout == ""
    assert CLEAN in res.stderr
    res = cp.cli("analyze", "-A", *NO_PODS)
    assert res.returncode == 0 and "when analyzing all namespaces." in res.stderr, res.stdout

    cp.cli("apply", "-f", "-", input=REVIEWS_V4, check=True)
    res = cp.cli("analyze", *NO_PODS)
    assert res.returncode == 79
    assert res.stdout.splitlines() == [
        "Error [IST0101] (VirtualService default/reviews) Referenced host+subset in "
        'destinationrule not found: "reviews+v4"'
    ]
    assert "Analyzers found issues when analyzing namespace: default." in res.stderr

    res = cp.cli("analyze", "-o", "json", *NO_PODS)
    assert res.returncode == 79
    (item,) = json.loads(res.stdout)
    assert item["code"] == "IST0101" and item["level"] == "Error"
    assert item["origin"] == "VirtualService default/reviews" and "reference" not in item
    assert item["documentationUrl"].endswith("/ist0101/")

    # another namespace is clean: the finding belongs to default
    cp.cli("create", "namespace", "other", check=True)
    res = cp.cli("analyze", "-n", "other")
    assert res.returncode == 0, res.stdout
    assert "namespace: other." in res.stderr


def test_warnings_and_failure_threshold(control_plane: ControlPlane) -> None:
    cp = control_plane
    apply_bookinfo(cp)
    cp.cli("apply", "-f", "-", input=NO_WORKLOAD_POLICY, check=True)
    res = cp.cli("analyze", *NO_PODS)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Warning [IST0127] (AuthorizationPolicy default/backend-only)")
    res = cp.cli("analyze", "--failure-threshold", "Warning", *NO_PODS)
    assert res.returncode == 79
    res = cp.cli("analyze", "--output-threshold", "Error", *NO_PODS)
    assert res.returncode == 0 and res.stdout == "" and CLEAN in res.stderr


def test_file_against_live_config_reports_file_and_line(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    apply_bookinfo(cp)
    path = tmp_path / "routes.yaml"
    path.write_text(FILE_WITH_MISTAKE)

    res = cp.cli("analyze", "-f", str(path), *NO_PODS)
    assert res.returncode == 79
    # details+v2 exists in the live DestinationRules, so only the ratings route is reported
    assert res.stdout.splitlines() == [
        f"Error [IST0101] (VirtualService default/ratings {path}:11) Referenced host+subset in "
        'destinationrule not found: "ratings+v9"'
    ]

    res = cp.cli("analyze", "-f", "-", "-o", "yaml", *NO_PODS, input=FILE_WITH_MISTAKE)
    assert res.returncode == 79
    assert "-:11" in res.stdout and "ratings+v9" in res.stdout


def run_offline(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PILOTFISH_CONFIG": str(home / "no-config")}
    return subprocess.run(
        [sys.executable, "-m", "pilotfish.cli.main", "analyze", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_offline_analyzes_only_the_files(tmp_path: Path) -> None:
    files = [str(f) for f in BOOKINFO_FILES]
    res = run_offline("--offline", *[a for f in files for a in ("-f", f)], home=tmp_path)
    assert res.returncode == 79 and res.stdout.count("[IST0173]") == 2, res.stdout
    res = run_offline("--offline", *NO_PODS, *[a for f in files for a in ("-f", f)], home=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert CLEAN in res.stderr

    broken = tmp_path / "broken.yaml"
    broken.write_text(FILE_WITH_MISTAKE.replace("subset: v9", "subset: v1\n      weight: -5"))
    res = run_offline("--use-kube=false", "-f", str(broken), home=tmp_path)
    assert res.returncode == 79
    lines = res.stdout.splitlines()
    # without live config nothing defines the hosts; the bad weight is a schema error
    assert f"Error [IST0106] (VirtualService default/ratings {broken}:12) Schema validation " in (
        "\n".join(lines)
    )
    assert any('Referenced host not found: "details"' in line for line in lines)

    res = run_offline("--offline", home=tmp_path)
    assert res.returncode == 2 and "needs files" in res.stderr
