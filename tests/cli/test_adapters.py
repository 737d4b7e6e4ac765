"""``lcfix adapters list``."""

from __future__ import annotations

import json

from click.testing import CliRunner

from lcfix.cli.main import cli

HOSTED = {"openai", "litellm", "stability", "jobapi", "replicate", "fal"}


def test_list_shows_name_origin_version_and_capabilities() -> None:
    result = CliRunner().invoke(cli, ["adapters", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "ORIGIN", "VERSION", "CAPABILITIES"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) >= HOSTED
    assert "staging=emulated" in rows["stability"] and "negative_prompt" in rows["stability"]
    assert "dialect=weighted" in rows["jobapi"] and "revised_prompt" in rows["openai"]
    assert rows["openai"].split()[1] == "lcfix"


def test_list_json() -> None:
    result = CliRunner().invoke(cli, ["adapters", "list", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) >= HOSTED
    openai = rows["openai"]
    assert openai["origin"] == "lcfix" and openai["error"] is None
    assert openai["target"] == "lcfix.adapters.openai_images:OpenAIImagesAdapter"
    assert openai["capabilities"]["max_images"] == 10
    assert openai["capabilities"]["staging"] == "emulated"
    for row in rows.values():  # a backend that fails to import shows its error instead
        assert (row["capabilities"] is None) == (row["error"] is not None)
