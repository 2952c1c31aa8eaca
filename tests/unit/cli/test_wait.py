"""`pilotfish wait --for=synced`: where each proxy stands with a config revision."""

from __future__ import annotations

from typing import Any

import pytest

from pilotfish.cli.wait_cmd import evaluate, parse_timeout, stored_revision


def proxy(name: str, revision: int | None, synced: bool = True, **types: Any) -> dict[str, Any]:
    return {"pod_name": name, "namespace": "default", "config_revision": revision,
            "synced": synced, "types": types}  # fmt: skip


def test_each_proxy_acked_nacked_or_pending() -> None:
    items = [
        proxy("a", 7, CDS={"state": "SYNCED"}),
        proxy("b", 8, RDS={"state": "NACKED", "last_nack": {"error": "bad regex"}}),
        proxy("c", 6),
        proxy("d", 7, synced=False, LDS={"state": "STALE"}),
        proxy("e", None),
    ]
    v = evaluate(items, 7)
    assert v.acked == ["a.default"]
    assert v.nacked == ["b.default: RDS rejected: bad regex"]
    assert v.pending == [
        "c.default: has not received revision 7 (at 6)",
        "d.default: did not acknowledge revision 7 (LDS sent, no answer)",
        "e.default: has not received revision 7 (at none)",
    ]
    assert not v.done
    assert evaluate(items[:2], 7).done


def test_a_rejected_virtual_host_shows_as_a_rejected_route() -> None:
    # Over VHDS a sidecar's virtual hosts are its routes.
    items = [proxy("b", 8, VHDS={"state": "NACKED", "last_nack": {"error": "bad regex"}})]
    v = evaluate(items, 7)
    assert v.nacked == ["b.default: RDS rejected: bad regex (virtual hosts over VHDS)"]


def test_a_proxy_whose_config_could_not_be_generated_fails_the_wait_at_once() -> None:
    broken = proxy("f", 6)
    broken["generation_error"] = {"error": "KeyError: 'reviews'", "at": "2026-12-06T12:00:00"}
    v = evaluate([broken, proxy("a", 7)], 7)
    assert v.nacked == [
        "f.default: the control plane could not generate its config (KeyError: 'reviews'); "
        "it keeps its previous config"
    ]
    assert v.pending == [] and v.done
    # Generated again at the revision waited for: the old failure no longer counts.
    broken["config_revision"] = 7
    assert evaluate([broken], 7).acked == ["f.default"]


def test_timeouts() -> None:
    assert parse_timeout("30s") == 30 and parse_timeout("2m") == 120 and parse_timeout("5") == 5


class FakeClient:
    """Stored objects by (kind, namespace, name) -> resourceVersion."""

    def __init__(self, stored: dict[tuple[str, str | None, str], str]) -> None:
        self.stored = stored

    def get(self, info: Any, namespace: str | None, name: str) -> dict[str, Any]:
        from pilotfish.errors import ApiError

        key = (info.kind, namespace if info.namespaced else None, name)
        if key not in self.stored:
            raise ApiError(404, f"{info.kind} {name} not found")
        return {"metadata": {"name": name, "resourceVersion": self.stored[key]}}


def obj(kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"kind": kind, "metadata": meta}


def test_a_files_revision_is_the_latest_write_of_its_objects() -> None:
    client = FakeClient({
        ("VirtualService", "default", "reviews"): "12",
        ("DestinationRule", "prod", "reviews"): "15",
        ("Namespace", None, "prod"): "3",
    })  # fmt: skip
    bodies = [
        obj("VirtualService", "reviews"),  # no namespace: -n, else default
        obj("DestinationRule", "reviews", "prod"),
        obj("Namespace", "prod"),
    ]
    assert stored_revision(client, bodies, None) == 15
    assert stored_revision(client, bodies[:1], None) == 12


def test_an_object_not_stored_is_named_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    client = FakeClient({("VirtualService", "default", "reviews"): "12"})
    bodies = [obj("VirtualService", "reviews"), obj("VirtualService", "ratings", "prod"),
              obj("Frobnicator", "x")]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        stored_revision(client, bodies, None)
    assert exc.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: VirtualService prod/ratings: not stored (apply it first)",
        "error: Frobnicator default/x: not a kind Pilotfish serves",
    ]
