"""Shared helpers for identity unit tests: a fixed clock and CA builders."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from pilotfish.identity.ca import CASettings, MeshCA

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

MakeCA = Callable[..., MeshCA]


class ManualTime:
    """A settable ``now()`` for code that takes a clock function."""

    def __init__(self, start: datetime = T0) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def manual_time() -> ManualTime:
    return ManualTime()


@pytest.fixture
def make_ca(tmp_path: Path, manual_time: ManualTime) -> Callable[..., MeshCA]:
    def make(name: str = "ca", **settings: object) -> MeshCA:
        return MeshCA.open(CASettings(tmp_path / name, **settings), now=manual_time)  # type: ignore[arg-type]

    return make


def verify_client(
    chain: list[x509.Certificate], roots: list[x509.Certificate], at: datetime
) -> list[str]:
    """Independent check with cryptography's RFC 5280 verifier; returns the URI SANs."""
    verifier = PolicyBuilder().store(Store(roots)).time(at).build_client_verifier()
    verified = verifier.verify(chain[0], chain[1:])
    return [str(n.value) for n in verified.subjects or []]
