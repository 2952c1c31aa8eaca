"""Resources as plain data: how one is named (:class:`ResourceKey`) and the untyped ``spec``.

The store keys its objects by :class:`ResourceKey`, the analyzers report findings against one,
and validation errors name the resource they are about with one. No imports beyond the
standard library, so every layer can share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: A ``spec`` (or any part of one) as stored: the JSON object as written.
Spec = dict[str, Any]


@dataclass(frozen=True, slots=True, order=True)
class ResourceKey:
    """``kind``, ``namespace`` (empty for cluster-scoped kinds) and ``name``.

    Printed as users read it: ``VirtualService default/reviews``, ``Namespace default``;
    a resource not named yet (a body that failed validation) prints as ``<unnamed>``.
    """

    kind: str
    namespace: str = ""
    name: str = ""

    @classmethod
    def of(cls, kind: str, namespace: str | None = None, name: str | None = None) -> ResourceKey:
        """The key of a body's ``metadata`` fields, which may be missing."""
        return cls(kind, namespace or "", name or "")

    def __str__(self) -> str:
        name = self.name or "<unnamed>"
        return f"{self.kind} {self.namespace}/{name}" if self.namespace else f"{self.kind} {name}"
