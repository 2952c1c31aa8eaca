"""The maximum connection age of the xDS/CA gRPC server (Istio's 30 min by default)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pilotfish.cli.main import cli
from pilotfish.server import ServerSettings
from pilotfish.xds.settings import XdsSettings


def test_default_is_istios_thirty_minutes_with_a_grace_period() -> None:
    assert dict(XdsSettings().grpc_options()) == {
        "grpc.max_connection_age_ms": 1_800_000,
        "grpc.max_connection_age_grace_ms": 10_000,
    }


def test_zero_turns_it_off() -> None:
    assert XdsSettings(max_connection_age=0).grpc_options() == []


def test_server_settings_carry_the_flags(tmp_path: Path) -> None:
    s = ServerSettings.build(
        data_dir=tmp_path, listen="127.0.0.1:1", xds_listen="127.0.0.1:2", store_url=None,
        max_connection_age=60.0, max_connection_age_grace=2.5,
    )  # fmt: skip
    assert (s.max_connection_age, s.max_connection_age_grace) == (60.0, 2.5)


def test_a_bad_duration_names_the_flag() -> None:
    res = CliRunner().invoke(cli, ["server", "--max-connection-age", "soon"])
    assert res.exit_code == 2
    assert "--max-connection-age" in res.output
