"""Where the workload token key lives: next to the CA key, so replicas sharing a CA directory
accept each other's tokens; an older key in the data directory keeps working."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pilotfish.identity import TokenAuthority
from pilotfish.server_identity import IdentitySettings, token_key_dir


def test_without_a_ca_dir_the_key_is_in_the_data_dir(tmp_path: Path) -> None:
    settings = IdentitySettings(data_dir=tmp_path / "data")
    assert token_key_dir(settings) == tmp_path / "data" / "ca"


def test_a_shared_ca_dir_holds_the_key(tmp_path: Path) -> None:
    shared = tmp_path / "shared-ca"
    shared.mkdir()
    a = IdentitySettings(data_dir=tmp_path / "a", ca_dir=shared)
    b = IdentitySettings(data_dir=tmp_path / "b", ca_dir=shared)
    assert token_key_dir(a) == shared
    token = TokenAuthority.load_or_create(token_key_dir(a)).issue("default", "web", timedelta(1))
    assert TokenAuthority.load_or_create(token_key_dir(b)).verify(token).service_account == "web"


def test_an_existing_key_in_the_data_dir_is_kept(tmp_path: Path) -> None:
    shared = tmp_path / "cacerts"
    shared.mkdir()
    settings = IdentitySettings(data_dir=tmp_path / "data", ca_dir=shared)
    TokenAuthority.load_or_create(settings.state_dir)
    assert token_key_dir(settings) == settings.state_dir
