from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import lcfix.cli.plan as plan_cli
from lcfix.cli.main import cli
from lcfix.compose import compose_plan
from lcfix.errors import LcfixError, PlannerError
from lcfix.planner import BasePlanner
from lcfix.plans import ConceptPair, Plan, PlannerInfo


class KeywordPlanner(BasePlanner):
    """Flags 'tea cup' + 'coke'; fails on prompts containing FAIL."""

    name = "keyword"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def plan(self, prompt: str) -> Plan:
        self.seen.append(prompt)
        if "FAIL" in prompt:
            raise PlannerError("planner exploded")
        pairs = []
        if "tea cup" in prompt.lower() and "coke" in prompt.lower():
            pairs = [
                ConceptPair(
                    fragile="tea cup",
                    dominant="iced coke",
                    latent="glass",
                    pattern="beverage-container",
                    severity=5,
                )
            ]
        return compose_plan(prompt, pairs, planner=PlannerInfo(name="keyword", version="t"))

    def plan_many(self, prompts: Sequence[str]) -> list[Plan | LcfixError]:
        return super().plan_many(prompts)


@pytest.fixture
def planner(monkeypatch: pytest.MonkeyPatch) -> KeywordPlanner:
    fake = KeywordPlanner()
    monkeypatch.setattr(plan_cli, "get_planner", lambda *a, **k: fake)
    return fake


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_single_prompt_prints_a_readable_plan(planner: KeywordPlanner) -> None:
    result = run("plan", "a tea cup of iced coke")
    assert result.exit_code == 0, result.output
    assert "at risk   yes" in result.output
    assert "tea cup  <-  iced coke" in result.output
    assert "'tea cup' until 25% of the steps" in result.output


def test_single_prompt_as_jsonl_is_a_plan(planner: KeywordPlanner) -> None:
    result = run("plan", "a tea cup of iced coke", "--format", "jsonl")
    obj = json.loads(result.output)
    assert obj["id"] == 1
    Plan.model_validate({k: v for k, v in obj.items() if k != "id"})


def test_file_gives_one_plan_per_prompt_in_order(planner: KeywordPlanner, tmp_path: Path) -> None:
    src = tmp_path / "p.txt"
    src.write_text("# c\na tea cup of iced coke\n\na red fox\n")
    out = tmp_path / "out.jsonl"
    result = run("plan", str(src), "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = lines(out)
    assert [r["id"] for r in rows] == [2, 4]
    assert [r["at_risk"] for r in rows] == [True, False]
    assert "2 planned (1 at risk)" in result.stderr


def test_failed_prompt_gets_an_error_line_and_exit_1(
    planner: KeywordPlanner, tmp_path: Path
) -> None:
    src = tmp_path / "p.jsonl"
    src.write_text('{"id": "a", "prompt": "a FAIL"}\n{"id": "b", "prompt": "a fox"}\n')
    out = tmp_path / "out.jsonl"
    result = run("plan", str(src), "-o", str(out))
    assert result.exit_code == 1
    rows = lines(out)
    assert rows[0] == {"id": "a", "prompt": "a FAIL", "error": "planner exploded"}
    assert rows[1]["id"] == "b" and rows[1]["at_risk"] is False


def test_resume_skips_done_ids_and_repairs_a_torn_line(
    planner: KeywordPlanner, tmp_path: Path
) -> None:
    src = tmp_path / "p.txt"
    src.write_text("one\ntwo\nthree\nfour\n")
    out = tmp_path / "out.jsonl"
    assert run("plan", str(src), "-o", str(out)).exit_code == 0
    full = out.read_text().splitlines(keepends=True)
    out.write_text("".join(full[:2]) + full[2][:17])  # killed while writing line 3
    planner.seen.clear()
    result = run("plan", str(src), "-o", str(out), "--resume")
    assert result.exit_code == 0, result.output
    assert planner.seen == ["three", "four"]
    assert [r["id"] for r in lines(out)] == [1, 2, 3, 4]
    assert "2 skipped" in result.stderr


def test_existing_output_is_never_clobbered_without_a_flag(
    planner: KeywordPlanner, tmp_path: Path
) -> None:
    src = tmp_path / "p.txt"
    src.write_text("one\n")
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 9}\n')
    result = run("plan", str(src), "-o", str(out))
    assert result.exit_code == 2
    assert "--resume" in result.output and out.read_text() == '{"id": 9}\n'
    assert run("plan", str(src), "-o", str(out), "--overwrite").exit_code == 0
    assert [r["id"] for r in lines(out)] == [1]


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("p.txt", b"fine\n\xc3\x28\n", "p.txt:2: undecodable"),
        (
            "p.csv",
            b"text\nhello\n",
            "p.csv:1: field 'prompt': the CSV header has no 'prompt' column",
        ),
        ("p.jsonl", b'{"prompt": "a"}\n42\n', "p.jsonl:2: each line must be a JSON object"),
        ("p.jsonl", b'{"prompt": ""}\n', "p.jsonl:1: field 'prompt': empty prompt"),
        ("p.txt", b"x" * 4001 + b"\n", "p.txt:1: field 'prompt': prompt is 4001 characters"),
    ],
)
def test_bad_input_exits_2_names_file_and_line_and_writes_nothing(
    planner: KeywordPlanner, tmp_path: Path, name: str, content: bytes, needle: str
) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "done"}\n')
    result = run("plan", str(src), "-o", str(out), "--resume")
    assert result.exit_code == 2
    assert needle in result.stderr
    assert out.read_text() == '{"id": "done"}\n'
    assert planner.seen == []


def test_missing_file_exits_2(planner: KeywordPlanner, tmp_path: Path) -> None:
    result = run("plan", str(tmp_path / "missing.txt"))
    assert result.exit_code == 2
    assert "missing.txt: no such file" in result.stderr


def test_stdin_and_table_format(planner: KeywordPlanner) -> None:
    result = run("plan", "-", "--format", "table", input="a tea cup of iced coke\na fox\n")
    assert result.exit_code == 0
    out = result.stdout.splitlines()
    assert out[0].split() == [
        "id",
        "risk",
        "fragile",
        "<-",
        "dominant",
        "latent",
        "stage",
        "1",
        "pattern",
    ]
    assert "tea cup <- iced coke" in out[1] and "25%" in out[1]
    assert out[2].split()[:2] == ["2", "no"]


def test_schema_prints_the_plan_json_schema() -> None:
    result = run("schema")
    schema = json.loads(result.output)
    assert schema["title"] == "Plan"
    assert "stages" in schema["properties"]


def test_summary_names_llm_counts_only_when_they_happened(
    planner: KeywordPlanner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "p.txt"
    src.write_text("a fox\na tea cup of iced coke\n")
    plain = run("plan", str(src), "-o", str(tmp_path / "a.jsonl"))
    assert "fell back" not in plain.stderr and "from cache" not in plain.stderr

    original = planner.plan

    def fallback_plan(prompt: str) -> Plan:
        return original(prompt).with_planner(fallback="llm failed: 500")

    monkeypatch.setattr(planner, "plan", fallback_plan)
    result = run("plan", str(src), "-o", str(tmp_path / "b.jsonl"))
    assert "2 fell back to offline" in result.stderr
