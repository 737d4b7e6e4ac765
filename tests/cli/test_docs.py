"""docs/cli.md is generated from --help; it must match the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reference_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_every_command_is_documented() -> None:
    from lcfix.cli.main import _COMMANDS

    text = (ROOT / "docs" / "cli.md").read_text()
    for name in _COMMANDS:
        assert f"## `lcfix {name}`" in text, name
