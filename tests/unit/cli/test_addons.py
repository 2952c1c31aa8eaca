"""samples/addons: which documents are addon overlays and what they turn on or off."""

from __future__ import annotations

from pathlib import Path

import yaml

from pilotfish.api.profiles import components_of, install_operator, merge_spec
from pilotfish.cli.addons_cmd import addon_overlay, is_addon_operator
from pilotfish.config.validation import validate

ADDONS = Path(__file__).resolve().parents[3] / "samples" / "addons"


def _load(name: str) -> dict[str, object]:
    return dict(yaml.safe_load((ADDONS / name).read_text()))


def test_every_sample_is_a_valid_addon_overlay() -> None:
    files = sorted(p.name for p in ADDONS.glob("*.yaml"))
    assert files == ["grafana.yaml", "jaeger.yaml", "kiali.yaml", "prometheus.yaml"]
    for name in files:
        body = _load(name)
        assert is_addon_operator(body), name
        validate(body)  # raises when invalid


def test_overlay_on_minimal_turns_on_exactly_the_named_parts() -> None:
    minimal = install_operator(None, [("profile", "minimal")])["spec"]
    wanted = {
        "prometheus.yaml": {"prometheus"},
        "jaeger.yaml": {"trace collector"},
        "kiali.yaml": {"dashboard"},
        "grafana.yaml": {"dashboard", "prometheus"},
    }
    for name, parts in wanted.items():
        spec = merge_spec(minimal, addon_overlay([_load(name)], enable=True))
        assert set(components_of(spec).enabled()) == parts, name
        # delete -f: the same parts off again, on top of a profile that had them
        demo = install_operator(None, [("profile", "demo")])["spec"]
        off = merge_spec(demo, addon_overlay([_load(name)], enable=False))
        assert not parts & set(components_of(off).enabled()), name


def test_other_operators_are_not_addons() -> None:
    assert not is_addon_operator({"kind": "IstioOperator", "spec": {"meshConfig": {}}})
    mixed = {"addonComponents": {"prometheus": {"enabled": True}}, "meshConfig": {}}
    assert not is_addon_operator({"kind": "IstioOperator", "spec": mixed})
    unknown = {"addonComponents": {"istiocoredns": {"enabled": True}}}
    assert not is_addon_operator({"kind": "IstioOperator", "spec": unknown})
    assert not is_addon_operator({"kind": "Service", "spec": {"addonComponents": {}}})


def test_client_dry_run_does_not_warn_that_addons_need_install() -> None:
    from click.testing import CliRunner

    from pilotfish.cli.main import cli

    out = CliRunner().invoke(cli, ["apply", "--dry-run=client", "-f", str(ADDONS)])
    assert out.exit_code == 0, out.output
    assert "Warning" not in out.output
    assert "istiooperator.install.istio.io/addon-prometheus valid (client dry run)" in out.output
