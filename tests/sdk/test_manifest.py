from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lcfix.errors import ConfigError, InputError
from lcfix.manifest import (
    MANIFEST_NAME,
    JobRecord,
    Manifest,
    job_key,
    plan_fingerprint,
    read_records,
    write_atomic,
)
from lcfix.testing import sample_plan


def _record(key: str, status: str = "done", **kw: object) -> JobRecord:
    return JobRecord.model_validate(
        {
            "key": key,
            "status": status,
            "prompt_id": "1",
            "variant": "lcfix",
            "prompt": "a tea cup of iced coke",
            "backend": "fake:x",
            **kw,
        }
    )


def _key(**changes: object) -> str:
    args: dict[str, object] = {
        "prompt": "a tea cup of iced coke",
        "plan": sample_plan(),
        "backend": "openai:gpt-image-1",
        "options": {"num_images": 1, "width": None},
        "seed": 7,
        "variant": "lcfix",
    }
    args.update(changes)
    return job_key(**args)  # type: ignore[arg-type]


def test_key_depends_on_each_part() -> None:
    base = _key()
    assert len(base) == 64
    assert _key() == base
    assert _key(prompt="a glass of iced coke") != base
    assert _key(backend="openai:gpt-image-1.5") != base
    assert _key(options={"num_images": 2, "width": None}) != base
    assert _key(seed=8) != base
    assert _key(variant="baseline") != base
    other_plan = sample_plan().model_copy(update={"stages": sample_plan().stages[1:]})
    assert _key(plan=other_plan) != base


def test_key_ignores_planner_provenance_and_baseline_ignores_plan() -> None:
    plan = sample_plan()
    cached = plan.with_planner(cached=True, attempts=3)
    assert plan_fingerprint(cached) == plan_fingerprint(plan)
    assert _key(plan=cached) == _key()
    assert _key(variant="baseline", plan=None) == _key(variant="baseline")


def test_append_then_reload(tmp_path: Path) -> None:
    with Manifest(tmp_path) as m:
        m.append(_record("a", files=["images/a.png"]))
        m.append(_record("b", status="failed", error="boom", error_type="BackendServerError"))
        assert m.is_done("a") and m.is_failed("b")
    lines = (tmp_path / MANIFEST_NAME).read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["files"] == ["images/a.png"]
    with Manifest(tmp_path) as m:
        assert m.is_done("a") and m.is_failed("b") and not m.is_done("c")
        m.append(_record("b", attempt=2))  # a retried job: the latest line wins
        assert m.is_done("b")
        assert [r.key for r in m.records()] == ["a", "b"]
    assert [r.status for r in read_records(tmp_path)] == ["done", "done"]


def test_torn_last_line_is_dropped(tmp_path: Path) -> None:
    with Manifest(tmp_path) as m:
        m.append(_record("a"))
    path = tmp_path / MANIFEST_NAME
    with path.open("a") as fh:
        fh.write('{"key": "b", "status": "do')  # killed mid-write
    with Manifest(tmp_path) as m:
        assert m.is_done("a") and m.get("b") is None
        m.append(_record("c"))
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == ["a", "c"]


def test_corrupt_middle_line_names_the_line(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text('{"key": "a"}\nnot json\n')
    with pytest.raises(InputError, match=r"manifest.jsonl:1"):
        Manifest(tmp_path)


def test_second_writer_is_refused(tmp_path: Path) -> None:
    with Manifest(tmp_path):
        code = (
            "import sys; from lcfix.manifest import Manifest\n"
            "from lcfix.errors import ConfigError\n"
            "try:\n    Manifest(sys.argv[1])\nexcept ConfigError as e:\n"
            "    print(e); sys.exit(3)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 3, proc.stderr
        assert "another lcfix run" in proc.stdout
    Manifest(tmp_path).close()  # released on close


def test_closed_manifest_refuses_writes(tmp_path: Path) -> None:
    m = Manifest(tmp_path)
    m.close()
    with pytest.raises(ConfigError, match="closed"):
        m.append(_record("a"))


def test_write_atomic_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "images" / "x.png"
    write_atomic(target, b"abc")
    write_atomic(target, b"defg")
    assert target.read_bytes() == b"defg"
    assert [p.name for p in target.parent.iterdir()] == ["x.png"]
