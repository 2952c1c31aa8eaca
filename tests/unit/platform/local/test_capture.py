"""Capture rules: istio-init's nat layout, exclusions, validation."""

from __future__ import annotations

import pytest

from pilotfish.platform.local.capture import CaptureSettings, capture_rules


def _rules(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("-A ")]


def _chain(script: str, chain: str) -> list[str]:
    return [r.removeprefix(f"-A {chain} ") for r in _rules(script) if r.split()[1] == chain]


def test_default_layout_matches_istio_init() -> None:
    script = capture_rules(CaptureSettings(proxy_uid=1337, proxy_gid=1338))
    lines = script.splitlines()
    assert lines[0] == "*nat"
    assert lines[-1] == "COMMIT"
    for chain in ("ISTIO_INBOUND", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT", "ISTIO_REDIRECT"):
        assert f":{chain} - [0:0]" in lines
    assert _chain(script, "PREROUTING") == ["-p tcp -j ISTIO_INBOUND"]
    assert _chain(script, "OUTPUT") == ["-p tcp -j ISTIO_OUTPUT"]
    assert _chain(script, "ISTIO_REDIRECT") == ["-p tcp -j REDIRECT --to-ports 15001"]
    assert _chain(script, "ISTIO_IN_REDIRECT") == ["-p tcp -j REDIRECT --to-ports 15006"]
    assert _chain(script, "ISTIO_INBOUND") == [
        "-p tcp --dport 15020 -j RETURN",
        "-p tcp --dport 15021 -j RETURN",
        "-p tcp --dport 15090 -j RETURN",
        "-p tcp -j ISTIO_IN_REDIRECT",
    ]
    assert _chain(script, "ISTIO_OUTPUT") == [
        "-s 127.0.0.6/32 -o lo -j RETURN",
        "! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT",
        "-o lo -m owner ! --uid-owner 1337 -j RETURN",
        "-m owner --uid-owner 1337 -j RETURN",
        "! -d 127.0.0.1/32 -o lo -m owner --gid-owner 1338 -j ISTIO_IN_REDIRECT",
        "-o lo -m owner ! --gid-owner 1338 -j RETURN",
        "-m owner --gid-owner 1338 -j RETURN",
        "-d 127.0.0.1/32 -j RETURN",
        "-j ISTIO_REDIRECT",
    ]


def test_admin_port_is_not_special_inbound() -> None:
    # 15000 binds localhost only, so it never needs an inbound exception.
    script = capture_rules(CaptureSettings(proxy_uid=1, proxy_gid=1))
    assert "--dport 15000" not in script


def test_exclusions_come_before_capture() -> None:
    script = capture_rules(
        CaptureSettings(
            proxy_uid=7,
            proxy_gid=8,
            exclude_inbound_ports=(22, 15021),
            exclude_outbound_ports=(5432,),
            exclude_outbound_cidrs=("10.0.0.0/8", "192.168.1.7"),
            outbound_port=16001,
            inbound_port=16006,
        )
    )
    inbound = _chain(script, "ISTIO_INBOUND")
    assert inbound.count("-p tcp --dport 15021 -j RETURN") == 1
    assert inbound.index("-p tcp --dport 22 -j RETURN") < inbound.index(
        "-p tcp -j ISTIO_IN_REDIRECT"
    )
    out = _chain(script, "ISTIO_OUTPUT")
    assert out[:3] == [
        "-p tcp --dport 5432 -j RETURN",
        "-d 10.0.0.0/8 -j RETURN",
        "-d 192.168.1.7/32 -j RETURN",
    ]
    assert _chain(script, "ISTIO_REDIRECT") == ["-p tcp -j REDIRECT --to-ports 16001"]
    assert _chain(script, "ISTIO_IN_REDIRECT") == ["-p tcp -j REDIRECT --to-ports 16006"]


def test_include_lists_capture_only_those() -> None:
    script = capture_rules(
        CaptureSettings(
            proxy_uid=7,
            proxy_gid=7,
            include_inbound_ports=(9080, 15021, 8080),
            include_outbound_cidrs=("10.96.0.0/16",),
        )
    )
    assert _chain(script, "ISTIO_INBOUND") == [
        "-p tcp --dport 9080 -j ISTIO_IN_REDIRECT",
        "-p tcp --dport 8080 -j ISTIO_IN_REDIRECT",
    ]
    out = _chain(script, "ISTIO_OUTPUT")
    assert out[-1] == "-d 10.96.0.0/16 -j ISTIO_REDIRECT"
    assert "-j ISTIO_REDIRECT" not in out


def test_no_inbound_capture() -> None:
    for settings in (
        CaptureSettings(proxy_uid=1, proxy_gid=1, capture_inbound=False),
        CaptureSettings(proxy_uid=1, proxy_gid=1, include_inbound_ports=()),
    ):
        script = capture_rules(settings)
        assert _chain(script, "PREROUTING") == []
        assert _chain(script, "ISTIO_INBOUND") == []
        assert _chain(script, "OUTPUT") == ["-p tcp -j ISTIO_OUTPUT"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outbound_port": 0}, "out of range"),
        ({"exclude_inbound_ports": (70000,)}, "out of range"),
        ({"exclude_outbound_cidrs": ("10.0.0.0/33",)}, "not an IP address or CIDR"),
        ({"exclude_outbound_cidrs": ("fd00::/8",)}, "only IPv4"),
        ({"proxy_uid": -1}, "negative"),
    ],
)
def test_invalid_settings(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"proxy_uid": 1337, "proxy_gid": 1337}
    with pytest.raises(ValueError, match=message):
        CaptureSettings(**{**base, **kwargs})  # type: ignore[arg-type]
