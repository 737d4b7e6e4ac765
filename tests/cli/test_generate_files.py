"""`lcfix generate INPUT` over a prompt file: manifest, resume, --compare contact sheet."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lcfix.cli.main import cli


def _run(*args: str) -> object:
    return CliRunner().invoke(cli, ["generate", *args], catch_exceptions=False)


def test_file_input_generates_every_prompt_with_baselines_and_resumes(tmp_path: Path) -> None:
    src = tmp_path / "prompts.txt"
    src.write_text("A tea cup of iced coke\n# skip me\nA red fox in a forest\n")
    out = tmp_path / "out"
    result = _run(str(src), "-b", "fake:demo", "--out", str(out), "--compare", "--seed", "3")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    done = [m for m in manifest if m.get("status") == "done"]
    assert len(done) == 4  # two prompts x (baseline + lcfix)
    html = (out / "index.html").read_text()
    images = sorted(p.name for p in out.rglob("*.png") if p.name != "contact_sheet.png")
    assert len(images) == 4
    for name in images:
        assert name in html
    assert (out / "contact_sheet.png").exists()

    again = _run(str(src), "-b", "fake:demo", "--out", str(out), "--compare", "--seed", "3")
    assert again.exit_code == 0
    assert "4 skipped" in again.stderr  # type: ignore[attr-defined]
    lines_after = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines_after) == len(manifest)


def test_bad_input_file_exits_2_with_file_and_line(tmp_path: Path) -> None:
    src = tmp_path / "p.jsonl"
    src.write_text('{"prompt": "ok"}\n{"prompt": ""}\n')
    result = _run(str(src), "-b", "fake:demo", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "p.jsonl:2: field 'prompt': empty prompt" in result.stderr  # type: ignore[attr-defined]
