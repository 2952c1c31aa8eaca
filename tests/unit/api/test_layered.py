"""Layered maps record every key written or removed after the copy of their base."""

from __future__ import annotations

from pilotfish.api.layered import Layered


def test_every_mutator_records_what_it_touches() -> None:
    base = {"a": 1, "b": 2, "c": 3, "d": 4}
    m = Layered(base)
    assert m == base and m.base is base and not m.touched
    m["e"] = 5
    del m["a"]
    m.pop("b")
    m.pop("missing", None)
    m.setdefault("f", 6)
    m.update({"c": 30}, g=7)
    m |= {"h": 8}
    key, _ = m.popitem()
    assert m.touched == {"a", "b", "missing", "c", "e", "f", "g", "h", key}
    assert base == {"a": 1, "b": 2, "c": 3, "d": 4}  # the base is never written
    # What is not touched is the base's.
    assert all(m[k] is base[k] for k in m.keys() - m.touched)


def test_clear_forgets_the_base() -> None:
    m = Layered({"a": 1})
    m.clear()
    assert m == {} and m.base is None and not m.touched
