"""``pilotfish --help`` lists every command without importing the lazy ones."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from pilotfish.cli.main import LAZY_COMMANDS, cli


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_the_table_keeps_each_lazy_commands_own_short_help(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    assert LAZY_COMMANDS[name].short_help == command.get_short_help_str(limit=10_000)


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:\n", 1)[1]
    names = [line.split()[0] for line in listed.splitlines() if line.startswith("  ")]
    assert names == sorted({*cli.commands, *LAZY_COMMANDS})
    assert "  proxy           Run an Envoy sidecar (or gateway) for one workload until..." in listed


def test_help_imports_no_lazy_command_and_no_heavy_library() -> None:
    modules = sorted({t.target.partition(":")[0] for t in LAZY_COMMANDS.values()})
    heavy = ["pydantic", "grpc", "aiohttp", "httpx", "rich", "envoy", "google.protobuf"]
    probe = (
        "import sys, json\n"
        "from pilotfish.cli.main import cli\n"
        "try:\n"
        "    cli(['--help'], standalone_mode=False)\n"
        "finally:\n"
        f"    print(json.dumps([m for m in {modules + heavy!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout.splitlines()[-1]) == []
