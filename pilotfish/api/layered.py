"""A dict built from a shared base mapping that records the keys written or removed since.

Translation gives each proxy its own map of clusters and of load assignments, although most
of each is one map shared by every proxy of a view (a copy of it plus the proxy's inbound
clusters). A :class:`Layered` map is such a copy that remembers its base and which keys were
touched after the copy, so the xDS server can do per view what it would otherwise do per
name for every proxy (interning thousands of resources per first configuration): the base's
work once, then only the touched keys.

Every mutator of ``dict`` is overridden to record what it touches; ``clear`` forgets the
base. The base must not change afterwards (translation's shared maps never do).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Layered(dict[K, V]):
    """A copy of ``base`` plus the keys set, replaced or removed since (``touched``)."""

    __slots__ = ("base", "touched")

    def __init__(self, base: Mapping[K, V]) -> None:
        super().__init__(base)
        #: The mapping this one was copied from, or None once it was cleared.
        self.base: Mapping[K, V] | None = base
        #: Keys written or removed since the copy (written back unchanged included).
        self.touched: set[K] = set()

    def __setitem__(self, key: K, value: V) -> None:
        self.touched.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: K) -> None:
        super().__delitem__(key)
        self.touched.add(key)

    def pop(self, key: K, *default: Any) -> Any:
        self.touched.add(key)
        return super().pop(key, *default)

    def popitem(self) -> tuple[K, V]:
        key, value = super().popitem()
        self.touched.add(key)
        return key, value

    def setdefault(self, key: K, default: Any = None) -> Any:
        self.touched.add(key)
        return super().setdefault(key, default)

    def update(self, other: Any = (), /, **kwargs: V) -> None:
        items: dict[Any, V] = dict(other, **kwargs)
        self.touched.update(items)
        super().update(items)

    def __ior__(self, other: Any) -> Layered[K, V]:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        self.base = None
        self.touched.clear()
        super().clear()
