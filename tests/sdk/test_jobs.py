from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lcfix.adapters.base import GenerationRequest, GenerationResult
from lcfix.errors import BackendServerError, LcfixError, RateLimitError
from lcfix.inputs import PromptRecord
from lcfix.jobs import Progress, RateLimiter, arun_jobs, baseline_plan, default_seed, run_jobs
from lcfix.manifest import MANIFEST_NAME, read_records
from lcfix.plans import Plan
from lcfix.testing import FakeAdapter
from tests.sdk.fakes import FakeImagesServer, FakePlanner

ROOT = Path(__file__).resolve().parents[2]


def _records(*prompts: str) -> list[PromptRecord]:
    return [PromptRecord(i, p, i, "<test>") for i, p in enumerate(prompts, start=1)]


PROMPTS = ("a tea cup of iced coke", "a flamingo with zebra stripes", "cherries on a palm tree")


def test_generate_with_compare_writes_everything(tmp_path: Path) -> None:
    adapter = FakeAdapter(options={"size": 16})
    seen: list[Progress] = []
    summary = run_jobs(
        _records(*PROMPTS),
        backend=adapter,
        out_dir=tmp_path,
        planner=FakePlanner(),
        compare=True,
        seed=7,
        num_images=2,
        progress=lambda p: seen.append(Progress(p.total, p.done, p.failed, p.skipped, p.elapsed_s)),
    )
    assert (summary.total, summary.done, summary.failed, summary.images) == (6, 6, 0, 12)
    records = read_records(tmp_path)
    assert len(records) == 6
    for rec in records:
        assert len(rec.files) == 2 and len(rec.sidecars) == 2
        for rel, side in zip(rec.files, rec.sidecars, strict=True):
            assert (tmp_path / rel).read_bytes().startswith(b"\x89PNG")
            meta = json.loads((tmp_path / side).read_text())
            assert meta["variant"] == rec.variant and meta["job_key"] == rec.key
            assert meta["plan"]["prompt"] == rec.prompt
    base = [r for r in adapter.requests if r.plan.planner.name == "baseline"]
    fixed = [r for r in adapter.requests if r.plan.planner.name == "fake"]
    assert len(base) == 3 and len(fixed) == 3
    assert all(r.staging == "off" and not r.plan.at_risk and r.seed == 7 for r in base)
    assert all(r.staging == "auto" and r.plan.at_risk and r.seed == 7 for r in fixed)
    assert summary.report is not None and summary.report.html.exists()
    html = summary.report.html.read_text()
    assert all(Path(f).name in html for r in records for f in r.files)
    assert seen[0].done == 0 and seen[-1].done == 6 and seen[-1].eta_s == 0
    assert seen[-1].describe().startswith("6/6 jobs") and "eta 0:00" in seen[-1].describe()
    assert "index.html" in summary.describe()
    # Another input in the same directory: its sheet shows only its own prompts.
    other = run_jobs(
        _records("a fox on a glass table"),
        backend=adapter,
        out_dir=tmp_path,
        planner=FakePlanner(),
        compare=True,
        seed=7,
    )
    assert other.report is not None
    assert "glass table" in other.report.html.read_text()
    assert "flamingo" not in other.report.html.read_text()


def test_rerun_is_idempotent(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    run_jobs(_records(*PROMPTS), backend=adapter, out_dir=tmp_path, planner=FakePlanner(), seed=1)
    first = len(adapter.requests)
    lines = (tmp_path / MANIFEST_NAME).read_text().splitlines()
    summary = run_jobs(
        _records(*PROMPTS), backend=adapter, out_dir=tmp_path, planner=FakePlanner(), seed=1
    )
    assert len(adapter.requests) == first == 3
    assert (summary.skipped, summary.done) == (3, 0)
    assert (tmp_path / MANIFEST_NAME).read_text().splitlines() == lines
    # A new seed is a new job.
    run_jobs(
        _records(*PROMPTS[:1]), backend=adapter, out_dir=tmp_path, planner=FakePlanner(), seed=2
    )
    assert len(adapter.requests) == 4


def test_failed_jobs_are_recorded_and_retried_on_request(tmp_path: Path) -> None:
    adapter = FakeAdapter(errors=[BackendServerError("upstream 502", adapter="fake")])
    kw: dict[str, Any] = {
        "backend": adapter,
        "out_dir": tmp_path,
        "planner": FakePlanner(),
        "seed": 3,
        "concurrency": 1,
    }
    s1 = run_jobs(_records(*PROMPTS[:2]), **kw)
    assert (s1.done, s1.failed) == (1, 1) and not s1.ok
    failed = [r for r in read_records(tmp_path) if r.status == "failed"]
    assert failed[0].error_type == "BackendServerError" and "upstream 502" in (
        failed[0].error or ""
    )
    s2 = run_jobs(_records(*PROMPTS[:2]), **kw)
    assert len(adapter.requests) == 2 and s2.failed_earlier == 1 and not s2.ok
    text = s2.describe()
    assert "upstream 502" in text and "--retry-failed" in text
    s3 = run_jobs(_records(*PROMPTS[:2]), retry_failed=True, **kw)
    assert len(adapter.requests) == 3 and (s3.done, s3.failed) == (1, 0)
    assert all(r.status == "done" for r in read_records(tmp_path))
    assert [r.attempt for r in read_records(tmp_path) if r.prompt_id == "1"] == [2]


def test_rate_limit_pauses_and_retries(tmp_path: Path) -> None:
    adapter = FakeAdapter(errors=[RateLimitError("slow down", retry_after=0.3, adapter="fake")])
    t0 = time.monotonic()
    s = run_jobs(_records(PROMPTS[0]), backend=adapter, out_dir=tmp_path, planner=FakePlanner())
    assert s.done == 1 and len(adapter.requests) == 2
    assert time.monotonic() - t0 >= 0.3


def test_planning_failure_is_a_failed_job(tmp_path: Path) -> None:
    s = run_jobs(
        _records(*PROMPTS[:2]),
        backend=FakeAdapter(),
        out_dir=tmp_path,
        planner=FakePlanner(fail_on="flamingo"),
        compare=True,
    )
    assert (s.done, s.failed) == (3, 1)  # both baselines run; one lcfix job could not plan
    assert any("cannot plan" in e for e in s.errors)


def test_default_seed_is_shared_and_stable(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    run_jobs(
        _records(PROMPTS[0]), backend=adapter, out_dir=tmp_path, planner=FakePlanner(), compare=True
    )
    seeds = {r.seed for r in adapter.requests}
    assert seeds == {default_seed(PROMPTS[0])}
    assert baseline_plan(PROMPTS[0]).rewrites.natural == PROMPTS[0]


def test_plan_not_at_risk_reuses_the_baseline_images(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    recs = _records("a red fox in the snow", PROMPTS[0])
    s = run_jobs(recs, backend=adapter, out_dir=tmp_path, planner=FakePlanner(), compare=True)
    assert s.done == 4
    assert [r.plan.prompt for r in adapter.requests].count("a red fox in the snow") == 1
    by = {(r.prompt_id, r.variant): r for r in read_records(tmp_path)}
    base, fixed = by[("1", "baseline")], by[("1", "lcfix")]
    assert fixed.files != base.files
    assert (tmp_path / fixed.files[0]).read_bytes() == (tmp_path / base.files[0]).read_bytes()
    meta = json.loads((tmp_path / fixed.sidecars[0]).read_text())
    assert meta["variant"] == "lcfix" and meta["reused_from"] == base.key
    # Resumed with the baseline done and the lcfix line lost: still no new request.
    lines = (tmp_path / MANIFEST_NAME).read_text().splitlines()
    kept = [x for x in lines if json.loads(x)["key"] != fixed.key]
    (tmp_path / MANIFEST_NAME).write_text("\n".join(kept) + "\n")
    s2 = run_jobs(recs, backend=adapter, out_dir=tmp_path, planner=FakePlanner(), compare=True)
    assert s2.done == 1 and len(adapter.requests) == 3


class _SlowAdapter(FakeAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.peak = 0

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0.05)
        self.active -= 1
        return self.generate(request)


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    adapter = _SlowAdapter()
    prompts = [f"a tea cup number {i}" for i in range(8)]
    run_jobs(
        _records(*prompts), backend=adapter, out_dir=tmp_path, planner=FakePlanner(), concurrency=3
    )
    assert adapter.peak == 3


async def test_rate_limiter_spaces_requests() -> None:
    limiter = RateLimiter(rpm=1200)  # one start every 50 ms
    t0 = time.monotonic()
    for _ in range(4):
        await limiter.acquire()
    assert time.monotonic() - t0 >= 0.15
    limiter.pause(0.1)
    t1 = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - t1 >= 0.09


async def test_scorer_columns_reach_the_report(tmp_path: Path) -> None:
    def scorer(image: bytes, plan: Plan) -> dict[str, float]:
        return {c.name: 0.5 for c in plan.concepts}

    s = await arun_jobs(
        _records(PROMPTS[0]),
        backend=FakeAdapter(),
        out_dir=tmp_path,
        planner=FakePlanner(),
        compare=True,
        scorer=scorer,
    )
    assert s.report is not None
    recs = read_records(tmp_path)
    assert all(r.scores == {"tea": 0.5, "coke": 0.5} for r in recs)
    assert "concept score" in s.report.html.read_text()


# --- kill -9 mid-run, run again: nothing finished is requested twice ----------------------


_CHILD = """
import sys
from lcfix.jobs import run_jobs
from tests.sdk.fakes import FakePlanner
run_jobs(sys.argv[1], backend="openai:gpt-image-1", api_base=sys.argv[2], out_dir=sys.argv[3],
         planner=FakePlanner(), compare=True, seed=5, concurrency=1)
"""


def test_kill_9_then_resume_requests_no_finished_job_twice(
    tmp_path: Path, server: FakeImagesServer
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"a tea cup of iced coke number {i}" for i in range(5)) + "\n")
    out = tmp_path / "out"
    api_base = f"http://127.0.0.1:{server.server_address[1]}/v1"
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(prompts), api_base, str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    manifest = out / MANIFEST_NAME
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if manifest.exists() and len(manifest.read_text().splitlines()) >= 3:
                break
            if child.poll() is not None:
                pytest.fail(f"the run ended before the kill: {child.stderr.read()!r}")  # type: ignore[union-attr]
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    finished = read_records(out)
    assert 3 <= len(finished) < 10, "the kill must land mid-run"
    sent_before = sum(server.prompts.values())

    os.environ["OPENAI_API_KEY"] = "sk-test-not-a-real-key"
    try:
        summary = run_jobs(
            prompts,
            backend="openai:gpt-image-1",
            api_base=api_base,
            out_dir=out,
            planner=FakePlanner(),
            compare=True,
            seed=5,
            concurrency=1,
        )
    finally:
        del os.environ["OPENAI_API_KEY"]
    assert summary.skipped == len(finished) and summary.done == 10 - len(finished)
    records = read_records(out)
    assert len(records) == 10 and all(r.status == "done" for r in records)
    for rec in finished:
        assert rec.prompt_sent is not None
        assert server.prompts[rec.prompt_sent] == 1, rec.prompt_sent
    # At most the one job in flight at the kill was sent twice.
    assert sum(server.prompts.values()) - 10 <= 1
    assert sum(server.prompts.values()) >= sent_before
    assert "sk-test-not-a-real-key" not in "".join(
        p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()
    )


def test_bad_concurrency(tmp_path: Path) -> None:
    with pytest.raises(LcfixError, match="concurrency"):
        run_jobs(
            _records(PROMPTS[0]),
            backend=FakeAdapter(),
            out_dir=tmp_path,
            planner=FakePlanner(),
            concurrency=0,
        )
