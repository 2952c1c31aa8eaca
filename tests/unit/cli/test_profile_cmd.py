"""`pilotfish profile list` and `profile dump` (istioctl's): the profiles install takes, and
the IstioOperator a profile (with -f and --set laid over it) installs."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from pilotfish.cli.main import cli


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["profile", *args])
    return res.exit_code, res.stdout, res.stderr


def test_list_names_each_profile_and_the_parts_it_runs() -> None:
    code, out, _ = run("list")
    assert code == 0
    rows = {ln.split()[0]: ln.split(None, 1)[1] for ln in out.splitlines()[1:]}
    assert list(rows) == ["default", "demo", "minimal", "empty"]
    assert "egress gateway" in rows["demo"] and "egress gateway" not in rows["default"]
    assert rows["default"] == "ingress gateway, prometheus, trace collector, dashboard"
    assert rows["minimal"] == rows["empty"] == "(control plane only)"


def test_dump_demo_is_the_istio_operator_install_writes() -> None:
    code, out, _ = run("dump", "demo")
    assert code == 0
    op = yaml.safe_load(out)
    assert (op["kind"], op["metadata"]["name"]) == ("IstioOperator", "installed-state")
    spec = op["spec"]
    assert spec["profile"] == "demo"
    assert spec["meshConfig"]["accessLogFile"] == "/dev/stdout"
    assert spec["values"]["pilot"]["traceSampling"] == 100
    assert spec["components"]["egressGateways"][0]["enabled"] is True


def test_dump_lays_files_and_set_over_the_profile(tmp_path: Path) -> None:
    f = tmp_path / "op.yaml"
    f.write_text(
        "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\n"
        "spec:\n  meshConfig: {accessLogEncoding: JSON}\n"
    )
    code, out, _ = run(
        "dump", "minimal", "-f", str(f), "--set", "values.pilot.traceSampling=10", "-o", "json"
    )
    assert code == 0
    spec = json.loads(out)["spec"]
    assert spec["meshConfig"]["accessLogEncoding"] == "JSON"
    assert spec["values"]["pilot"]["traceSampling"] == 10
    assert spec["addonComponents"]["prometheus"]["enabled"] is False


def test_unknown_profile_or_key_is_refused_by_name() -> None:
    code, _, err = run("dump", "nope")
    assert code == 1
    assert 'unknown profile "nope" (profiles: default, demo, minimal, empty)' in err
    assert "nothing was dumped" in err and "nothing was installed" not in err
    code, _, err = run("dump", "--set", "meshConfig.accessLogFiel=/dev/stdout")
    assert code == 1
    assert '--set meshConfig.accessLogFiel: unknown field "accessLogFiel" of meshConfig' in err
