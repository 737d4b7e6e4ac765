from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lcfix.cli.main import cli
from lcfix.plans import Plan
from lcfix.testing import sample_plan

EDITED = "[tea cup:a tea cup of iced coke:0.25]"


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_from_a1111_prints_the_plan() -> None:
    code, out, _ = _run("export", "--from-a1111", EDITED)
    assert code == 0
    plan = Plan.model_validate_json(out)
    assert plan.planner.name == "a1111"
    assert [(s.prompt, s.end) for s in plan.stages] == [
        ("tea cup", 0.25),
        ("a tea cup of iced coke", 1.0),
    ]


def test_from_a1111_absolute_steps_and_export_to_comfy() -> None:
    code, out, _ = _run(
        "export",
        "--from-a1111",
        "[tea cup:a tea cup of iced coke:5]",
        "--steps",
        "20",
        "--to",
        "comfy",
        "--scheduler",
        "karras",
        "--clip",
        "7:1",
    )
    assert code == 0, out
    frag = json.loads(out)
    assert frag["_lcfix"]["switches"][0]["step"] == 5
    assert "karras" in frag["_lcfix_note"]
    encodes = [
        n for k, n in frag.items() if not k.startswith("_") and n["class_type"] == "CLIPTextEncode"
    ]
    assert [n["inputs"]["clip"] for n in encodes] == [["7", 1], ["7", 1]]


def test_plans_jsonl_to_a1111_one_line_each(tmp_path: Path) -> None:
    plans = tmp_path / "plans.jsonl"
    lines = [
        json.dumps({"id": "a", **sample_plan().model_dump(mode="json")}),
        json.dumps({"id": "b", "prompt": "x", "error": "planning failed"}),
        json.dumps({"id": "c", "prompt": "a [cat:dog:0.5] on a hat"}),
    ]
    plans.write_text("\n".join(lines) + "\n")
    code, out, err = _run("export", str(plans), "--to", "a1111")
    assert code == 0
    assert out.splitlines() == [
        "[tea cup:a tea cup of iced coke:0.25]",
        "[a cat on a hat:a dog on a hat:0.5]",
    ]
    assert "skipped" in err


def test_plans_jsonl_to_comfy_jsonl(tmp_path: Path) -> None:
    plans = tmp_path / "plans.jsonl"
    plans.write_text(json.dumps({"id": 9, **sample_plan().model_dump(mode="json")}) + "\n")
    out_file = tmp_path / "comfy.jsonl"
    code, _, _ = _run(
        "export",
        str(plans),
        "--to",
        "comfy",
        "--steps",
        "30",
        "--model-type",
        "flow",
        "--shift",
        "8",
        "-o",
        str(out_file),
    )
    assert code == 0
    row = json.loads(out_file.read_text())
    assert row["id"] == "9" and row["workflow"]["_lcfix"]["shift"] == 8.0


def test_edited_prompt_as_source_needs_no_planner() -> None:
    code, out, _ = _run("export", EDITED, "--to", "a1111")
    assert code == 0 and out.strip() == EDITED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "x"], "--to is required"),
        (["export"], "SOURCE or --from-a1111"),
        (["export", "--from-a1111", "[a|b]"], "alternation"),
        (["export", "--from-a1111", "[a:b:3]"], "absolute step"),
        (["export", "--from-a1111", EDITED, "--to", "comfy", "--shift", "2"], "flow only"),
        (["export", "--from-a1111", EDITED, "--to", "comfy", "--clip", "x"], "NODE:OUTPUT"),
    ],
)
def test_usage_and_input_errors_exit_2(args: list[str], message: str) -> None:
    code, out, err = _run(*args)
    assert code == 2
    assert message in out + err


def test_bad_plan_line_names_the_line(tmp_path: Path) -> None:
    plans = tmp_path / "plans.jsonl"
    plans.write_text('{"id": 1, "prompt": "a cat", "stages": []}\n')
    code, _, err = _run("export", str(plans), "--to", "a1111")
    assert code == 2 and "plans.jsonl:1" in err


def test_plain_prompt_is_planned() -> None:
    pytest.importorskip("lcfix.offline")
    code, out, _ = _run("export", "a tea cup of iced coke", "--to", "a1111", "--planner", "offline")
    assert code == 0 and out.startswith("[")
