"""Errors users see, and the one hierarchy they come from.

::

    PilotfishError                    anything Pilotfish reports to a user
    ├── LoadError                     a file or document could not be read (YAML syntax, ...)
    │   └── BodyTooLargeError         an API request body over the server's limit
    ├── ValidationError               a resource breaks the schema or Istio's semantics
    │                                 (carries one FieldError per problem)
    ├── UnknownKindError              apiVersion/kind not served
    ├── StoreError                    the config store refused a write
    │   ├── NotFoundError
    │   ├── AlreadyExistsError
    │   ├── ConflictError             resourceVersion did not match (optimistic concurrency)
    │   └── CompactedError            a watch asked for revisions no longer kept
    └── ApiError                      the control-plane API answered with an error (CLI side)

Every message names the resource (``Kind namespace/name``), the field path
(``spec.http[0].route[1].weight``) and the reason, and where known the file,
document index and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pilotfish.api.objects import ResourceKey


class PilotfishError(Exception):
    """Base of every error Pilotfish reports to a user."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where a document came from: file (``-`` for stdin), 0-based document, 1-based line."""

    file: str
    document: int = 0
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file} (document {self.document + 1}"
        if self.line is not None:
            where += f", line {self.line}"
        return where + ")"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem: a dotted field path such as ``spec.http[0].route[1].weight`` and the reason."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class LoadError(PilotfishError):
    """A file could not be read or parsed into documents."""

    def __init__(self, message: str, source: Source | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class BodyTooLargeError(LoadError):
    """An HTTP API request body larger than the server accepts (413)."""


class ValidationError(PilotfishError):
    """A resource is invalid. ``errors`` lists every problem found, each with its field path."""

    def __init__(
        self,
        resource: ResourceKey,
        errors: list[FieldError],
        source: Source | None = None,
    ) -> None:
        self.resource = resource
        self.errors = list(errors)
        self.source = source
        super().__init__(self._render())

    def with_source(self, source: Source) -> ValidationError:
        return ValidationError(self.resource, self.errors, source)

    def _render(self) -> str:
        head = f"{self.source}: " if self.source else ""
        lines = [f"{head}{self.resource}: {e}" for e in self.errors]
        return "\n".join(lines)


class UnknownKindError(PilotfishError):
    """apiVersion/kind is not one Pilotfish serves."""


class StoreError(PilotfishError):
    """The config store refused a write."""


class NotFoundError(StoreError):
    pass


class AlreadyExistsError(StoreError):
    pass


class ConflictError(StoreError):
    pass


class AddressTakenError(ConflictError):
    """A Service or ServiceEntry put would hold a VIP another stored object already holds.

    ``key``: the object being written; ``address``: the VIP; ``holder``: the stored object
    holding it and ``holder_host`` the hostname it holds it for."""

    def __init__(
        self, key: ResourceKey, address: str, holder: ResourceKey, holder_host: str
    ) -> None:
        super().__init__(
            f"{key}: address {address} is already allocated to {holder} ({holder_host})"
        )
        self.key, self.address, self.holder, self.holder_host = key, address, holder, holder_host


class CompactedError(StoreError):
    """A watch asked to resume from a revision whose events are no longer kept."""


@dataclass
class ApiError(PilotfishError):
    """The control-plane HTTP API answered with an error status (seen by the CLI)."""

    status: int
    message: str
    details: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join([self.message, *self.details]) if self.details else self.message
