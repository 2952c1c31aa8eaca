"""verify-install's pure parts: reading Envoy's version, rendering a finding with its fix."""

from __future__ import annotations

from pilotfish.cli.verify_cmd import FAIL, OK, Check, _parse_envoy_version, _supported


def test_envoy_version_from_the_binary_and_from_server_info() -> None:
    binary = "\n.venv/bin/envoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n"  # noqa: E501
    assert _parse_envoy_version(binary) == (1, 40, 0)
    assert _parse_envoy_version("abc/1.39.2/Modified/DEBUG/BoringSSL") == (1, 39, 2)
    assert _parse_envoy_version("no version here") is None
    assert _supported((1, 40, 3)) and not _supported((1, 39, 2)) and not _supported(None)


def test_a_failure_shows_its_lines_and_fix_a_success_no_fix() -> None:
    bad = Check("iptables", FAIL, "1 problem(s)", "restart the pod", ["web.default: no chain"])
    assert bad.render() == (
        "✘ iptables: 1 problem(s)\n    web.default: no chain\n    fix: restart the pod"
    )
    assert Check("dashboard", OK, "answering", "never shown").render() == "✔ dashboard: answering"


def test_gateway_pods_are_not_expected_to_capture() -> None:
    from pilotfish.cli.verify_cmd import captured_pods

    pods = [
        {"name": "productpage-v1-a", "injected": True, "gateway": False},
        {"name": "istio-egressgateway-a", "injected": True, "gateway": True},
        {"name": "legacy-a", "injected": False},
        {"name": "old-pod-json", "injected": True},  # written before pods recorded "gateway"
    ]
    assert [p["name"] for p in captured_pods(pods)] == ["productpage-v1-a", "old-pod-json"]
