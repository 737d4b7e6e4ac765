from __future__ import annotations

import io
from pathlib import Path

import pytest

from lcfix.batch import (
    JsonlSink,
    RunSummary,
    complete_lines,
    load_done_ids,
    plan_line,
    plan_records,
)
from lcfix.compose import compose_plan
from lcfix.errors import InputError, LcfixError, PlannerError
from lcfix.inputs import PromptRecord
from lcfix.planner import BasePlanner
from lcfix.plans import Plan, PlannerInfo, Usage


def _plan(prompt: str, **info: object) -> Plan:
    return compose_plan(prompt, [], planner=PlannerInfo(name="t", version="1", **info))  # type: ignore[arg-type]


def test_summary_counts_fallbacks_screening_cache_and_tokens() -> None:
    s = RunSummary()
    s.add(_plan("a", usage=Usage(prompt_tokens=10, completion_tokens=2)))
    s.add(_plan("b", fallback="llm failed: 500", usage=Usage(prompt_tokens=5, completion_tokens=1)))
    s.add(_plan("c", fallback="screened: the offline planner found no risk"))
    s.add(_plan("d", cached=True))
    d = s.as_dict()
    assert (d["planned"], d["fallbacks"], d["screened"], d["cached"]) == (4, 1, 1, 1)
    assert (d["prompt_tokens"], d["completion_tokens"], d["total_tokens"]) == (15, 3, 18)


def test_plan_line_puts_the_id_first_or_records_the_error() -> None:
    rec = PromptRecord("q7", "a fox", 3, "f.txt")
    line = plan_line(rec, _plan("a fox"))
    assert next(iter(line)) == "id" and line["id"] == "q7" and line["prompt"] == "a fox"
    assert plan_line(rec, PlannerError("boom")) == {"id": "q7", "prompt": "a fox", "error": "boom"}


def test_load_done_ids_cuts_a_torn_last_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"id": 1}\n{"id": "b"}\n{"id": 3, "pro')
    assert load_done_ids(out) == {"1", "b"}
    assert out.read_bytes() == b'{"id": 1}\n{"id": "b"}\n'


def test_load_done_ids_names_a_corrupt_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1}\nnot json\n')
    with pytest.raises(InputError) as info:
        load_done_ids(out)
    assert info.value.line == 2 and "cannot resume" in str(info.value)


class _Counting(BasePlanner):
    def __init__(self) -> None:
        self.batches: list[int] = []

    def plan(self, prompt: str) -> Plan:
        if prompt == "bad":
            raise PlannerError("nope")
        return _plan(prompt)

    def plan_many(self, prompts: list[str]) -> list[Plan | LcfixError]:  # type: ignore[override]
        self.batches.append(len(prompts))
        return super().plan_many(prompts)


def test_plan_records_skips_done_ids_keeps_order_and_chunks() -> None:
    records = [PromptRecord(i, p, i, "f") for i, p in enumerate(["a", "bad", "c", "d", "e"], 1)]
    planner = _Counting()
    seen: list[tuple[object, bool]] = []
    summary = plan_records(
        records,
        planner,
        lambda r, res: seen.append((r.id, isinstance(res, Plan))),
        done_ids={"1"},
        chunk_size=2,
    )
    assert seen == [(2, False), (3, True), (4, True), (5, True)]
    assert planner.batches == [2, 2]
    assert (summary.skipped, summary.planned, summary.failed) == (1, 3, 1)
    assert summary.errors == ["f:2: nope"]


def test_jsonl_sink_writes_one_flushed_line_per_object() -> None:
    buf = io.StringIO()
    JsonlSink(buf).write({"id": 1, "prompt": "café"})
    assert buf.getvalue() == '{"id": 1, "prompt": "café"}\n'


def test_complete_lines_skips_blanks_and_numbers_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n\n{"b": 2}\n{"c"')
    assert complete_lines(path) == [(1, '{"a": 1}'), (3, '{"b": 2}')]
    assert path.read_text() == '{"a": 1}\n\n{"b": 2}\n'
    assert complete_lines(tmp_path / "missing.jsonl") == []
