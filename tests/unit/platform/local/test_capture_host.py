"""Whole-host capture: the pod's rules, loaded without flushing others' nat rules, and taken
back exactly."""

from __future__ import annotations

from pilotfish.platform.local.capture import (
    CaptureSettings,
    capture_rules,
    host_capture_rules,
    host_release_rules,
)


def test_host_rules_are_the_pods_without_touching_builtin_chains() -> None:
    settings = CaptureSettings(1337, 1337, exclude_inbound_ports=(22,))
    pod = capture_rules(settings).splitlines()
    host = host_capture_rules(settings).splitlines()
    assert not [line for line in host if line.startswith((":PREROUTING", ":OUTPUT", ":INPUT"))]
    assert [line for line in pod if not line.startswith((":PREROUTING", ":INPUT", ":OUTPUT",
                                                          ":POSTROUTING"))] == host  # fmt: skip
    assert "-A ISTIO_INBOUND -p tcp --dport 22 -j RETURN" in host


def test_release_deletes_the_jumps_then_the_chains() -> None:
    settings = CaptureSettings(1337, 1337)
    release = host_release_rules(settings).splitlines()
    assert release[:3] == [
        "*nat",
        "-D PREROUTING -p tcp -j ISTIO_INBOUND",
        "-D OUTPUT -p tcp -j ISTIO_OUTPUT",
    ]
    assert release[-1] == "COMMIT"
    for chain in ("ISTIO_INBOUND", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT", "ISTIO_REDIRECT"):
        assert release.index(f"-F {chain}") < release.index(f"-X {chain}")
    # No inbound capture: no PREROUTING jump to take back.
    outbound_only = host_release_rules(CaptureSettings(1337, 1337, capture_inbound=False))
    assert "PREROUTING" not in outbound_only
