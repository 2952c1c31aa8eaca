"""`pilotfish proxy-status`: a NOT SENT the proxy never asked for is explained, not hidden."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from pilotfish.cli import main
from pilotfish.cli.main import not_sent_note

SYNCED = {"state": "SYNCED", "sent_nonce": "n1", "acked_nonce": "n1", "subscribed": []}
GATEWAY = "istio-egressgateway-5d8f.istio-system"


def test_gateway_without_routes_is_explained() -> None:
    # The Envoy never subscribed to RDS (its listeners use none): no type entry at all.
    note = not_sent_note(GATEWAY, "RDS", {})
    assert note is not None
    assert note.startswith(f"{GATEWAY}: RDS NOT SENT: its listeners use no routes")
    assert "expected" in note


def test_routes_asked_for_but_not_sent_is_not_excused() -> None:
    asked = {"state": "NOT SENT", "sent_nonce": "", "subscribed": ["80"], "wildcard": False}
    assert not_sent_note(GATEWAY, "RDS", asked) is None
    assert not_sent_note(GATEWAY, "RDS", {**asked, "subscribed": [], "wildcard": True}) is None


def test_sent_types_and_cds_lds_get_no_note() -> None:
    assert not_sent_note(GATEWAY, "RDS", SYNCED) is None
    assert not_sent_note(GATEWAY, "CDS", {}) is None  # a proxy always asks for clusters
    assert not_sent_note(GATEWAY, "LDS", {}) is None


class _Client:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def proxy_status(self) -> list[dict[str, Any]]:
        return self.items


def test_table_keeps_istioctl_state_and_prints_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    types = {t: SYNCED for t in ("CDS", "LDS", "EDS")}
    items = [
        {"pod_name": "istio-egressgateway-5d8f", "namespace": "istio-system",
         "cluster": "Kubernetes", "protocol": "SotW", "types": types},
        {"pod_name": "productpage-v1", "namespace": "default", "cluster": "Kubernetes",
         "protocol": "SotW", "types": {**types, "RDS": SYNCED}},
    ]  # fmt: skip
    monkeypatch.setattr(main.Globals, "client", lambda self: _Client(items))
    out = CliRunner().invoke(main.cli, ["proxy-status"])
    assert out.exit_code == 0, out.output
    gateway_row = next(line for line in out.output.splitlines() if line.startswith(GATEWAY))
    assert gateway_row.split()[2:6] == ["SYNCED", "SYNCED", "SYNCED", "NOT"]
    notes = [line for line in out.output.splitlines() if "NOT SENT:" in line]
    assert len(notes) == 1 and notes[0].startswith(f"{GATEWAY}: RDS NOT SENT")
