"""The runner behind ``lcfix generate INPUT --backend B --out DIR``.

For each prompt it plans, generates ``num_images`` images with the seed, and saves the images
with their sidecars; with ``compare`` it also generates the baseline (the original prompt,
same seed, no staging, no rewrite) and writes the contact sheet. Every finished job is a line
in ``DIR/manifest.jsonl`` (see ``lcfix.manifest``), so a run can be killed and started again:
finished jobs are skipped, unfinished ones run, failed ones run again with ``retry_failed``.

Hosted backends run ``concurrency`` jobs at once under a per-provider rate limit (``rpm``);
a ``RateLimitError`` that outlives the adapter's own retries pauses every job of that provider
for its ``retry_after`` and the job is tried again.

    >>> summary = run_jobs("prompts.txt", backend="openai:gpt-image-1", out_dir="out",
    ...                    compare=True, seed=7)
    >>> summary.done, summary.failed
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from lcfix.a1111 import parse_if_edited
from lcfix.adapters.base import GenerationResult, ImageAdapter, StagingMode
from lcfix.compose import compose_plan
from lcfix.dispatch import agenerate
from lcfix.errors import ConfigError, InputError, LcfixError, RateLimitError
from lcfix.inputs import PromptRecord, read_prompts
from lcfix.manifest import JobRecord, Manifest, Variant, job_key, write_atomic
from lcfix.outputs import save_result
from lcfix.planner import Planner, PlannerKind
from lcfix.plans import Plan, PlannerInfo
from lcfix.report import ReportPaths, write_report

log = logging.getLogger("lcfix")

IMAGES_DIR = "images"
DEFAULT_HOSTED_CONCURRENCY = 4
RATE_LIMIT_RETRIES = 3
DEFAULT_RETRY_AFTER_S = 10.0
Scorer = Callable[[bytes, Plan], Mapping[str, float]]
"""Scores one image against a plan's concepts, e.g. CLIP similarity per concept."""


@dataclass(frozen=True)
class Job:
    """One unit of work: a prompt, a variant and a seed."""

    key: str
    record: PromptRecord
    variant: Variant
    plan: Plan
    seed: int
    score_plan: Plan | None = None
    """The plan whose concepts a scorer checks (the lcfix plan, for the baseline too)."""
    reuse: str | None = None
    """The baseline job's key when this lcfix job would send the very same request (a plan
    not at risk): its images are copied instead of paying for them twice."""

    @property
    def stem(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.record.prompt.lower()).strip("-")[:32].strip("-")
        rid = re.sub(r"[^A-Za-z0-9]+", "-", str(self.record.id)).strip("-")[:24] or "p"
        return f"{rid}-{slug or 'prompt'}-{self.variant}-{self.key[:8]}"


@dataclass
class Progress:
    """Handed to the progress callback after each job (and once at the start)."""

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0
    last: JobRecord | None = None

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped

    @property
    def eta_s(self) -> float | None:
        """Seconds left, from the pace of the jobs this run has finished."""
        ran = self.done + self.failed
        left = self.total - self.finished
        if ran == 0:
            return None if left else 0.0
        return self.elapsed_s / ran * left

    def describe(self) -> str:
        """One status line: ``12/24 jobs, 1 failed, 4 skipped, eta 0:42``."""
        eta = self.eta_s
        parts = [f"{self.finished}/{self.total} jobs"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        if eta is not None:
            parts.append(f"eta {int(eta) // 60}:{int(eta) % 60:02d}")
        return ", ".join(parts)


@dataclass
class JobSummary:
    """What a run did; ``lcfix generate`` prints it at the end."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failed_earlier: int = 0
    """Jobs that failed in an earlier run and were not retried (see ``retry_failed``)."""
    images: int = 0
    seconds: float = 0.0
    out_dir: Path = Path(".")
    manifest: Path = Path("manifest.jsonl")
    report: ReportPaths | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.failed_earlier == 0

    def describe(self, max_errors: int = 20) -> str:
        """The end-of-run summary, a few lines for a person."""
        lines = [
            f"lcfix: {self.total} jobs: {self.done} done, {self.skipped} skipped (already done"
            f" or failed earlier), {self.failed} failed; {self.images} images in "
            f"{self.seconds:.1f} s -> {self.out_dir}"
        ]
        if self.failed_earlier:
            lines.append(
                f"  {self.failed_earlier} jobs failed in an earlier run; --retry-failed runs "
                "them again"
            )
        lines += [f"  failed: {e}" for e in self.errors[:max_errors]]
        if len(self.errors) > max_errors:
            lines.append(f"  ... and {len(self.errors) - max_errors} more (see the manifest)")
        if self.report is not None:
            lines.append(f"  contact sheet: {self.report.html}")
        return "\n".join(lines)


class RateLimiter:
    """Spaces request starts ``60/rpm`` seconds apart and pauses everyone after a 429."""

    def __init__(self, rpm: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rpm is not None and rpm <= 0:
            raise ConfigError(f"rpm must be positive, got {rpm}")
        self.interval = 60.0 / rpm if rpm else 0.0
        self._clock = clock
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """Hold every later request for ``seconds`` (the provider's Retry-After)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                start = max(now, self._next, self._paused_until)
                if start <= now:
                    break
                await asyncio.sleep(start - now)
            self._next = self._clock() + self.interval


def default_seed(prompt: str) -> int:
    """A seed derived from the prompt, so baseline and lcfix share it and re-runs repeat it."""
    return int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:4], "big") >> 1


def baseline_plan(prompt: str) -> Plan:
    """A plan that sends ``prompt`` as written: one stage, no pairs, every rewrite the prompt."""
    return compose_plan(prompt, [], planner=PlannerInfo(name="baseline", version="1"))


async def plan_prompts(planner: Planner, prompts: Sequence[str]) -> list[Plan | LcfixError]:
    """Plan every prompt; one written in A1111 prompt editing keeps its own schedule."""
    out: list[Plan | LcfixError | None] = []
    rest: list[int] = []
    for i, prompt in enumerate(prompts):
        try:
            plan = parse_if_edited(prompt)
        except InputError as exc:
            out.append(exc)
            continue
        out.append(plan)
        if plan is None:
            rest.append(i)
    if rest:
        planned = await planner.aplan_many([prompts[i] for i in rest])
        for i, result in zip(rest, planned, strict=True):
            out[i] = result
    return [r for r in out if r is not None]


def _backend_name(adapter: ImageAdapter) -> str:
    return f"{adapter.name}:{adapter.model}"


def build_jobs(
    records: Sequence[PromptRecord],
    plans: Sequence[Plan | LcfixError],
    adapter: ImageAdapter,
    *,
    seed: int | None,
    compare: bool,
    options: Mapping[str, Any],
) -> list[Job | tuple[PromptRecord, LcfixError]]:
    """Jobs in input order (baseline before lcfix); a prompt whose planning failed gives its
    error instead of an lcfix job."""
    backend = _backend_name(adapter)
    out: list[Job | tuple[PromptRecord, LcfixError]] = []
    for record, plan in zip(records, plans, strict=True):
        s = default_seed(record.prompt) if seed is None else seed
        concepts = plan if isinstance(plan, Plan) else None
        key_of = functools.partial(job_key, prompt=record.prompt, backend=backend, seed=s)
        if compare:
            key = key_of(plan=None, options={**options, "staging": "off"}, variant="baseline")
            # An A1111 prompt's baseline is its final text, without the editing syntax.
            edited = concepts is not None and concepts.planner.name == "a1111"
            base = baseline_plan(concepts.prompt if edited and concepts else record.prompt)
            out.append(Job(key, record, "baseline", base, s, concepts))
        if isinstance(plan, LcfixError):
            out.append((record, plan))
            continue
        key = key_of(plan=plan, options=options, variant="lcfix")
        reuse = out[-1].key if compare and not plan.at_risk and isinstance(out[-1], Job) else None
        out.append(Job(key, record, "lcfix", plan, s, concepts, reuse))
    return out


def save_job_files(
    out_dir: Path, job: Job, result: GenerationResult
) -> tuple[list[str], list[str]]:
    """Write every image and its JSON sidecar under ``out_dir/images``; relative paths."""
    saved = save_result(
        result,
        out_dir / IMAGES_DIR,
        stem=job.stem,
        metadata={"job_key": job.key, "variant": job.variant, "prompt_id": str(job.record.id)},
    )
    rel = [
        (s.path.relative_to(out_dir).as_posix(), s.sidecar.relative_to(out_dir).as_posix())
        for s in saved
    ]
    return [r[0] for r in rel], [r[1] for r in rel]


def copy_job_files(out_dir: Path, base: JobRecord, job: Job) -> tuple[list[str], list[str]]:
    """Copy a finished baseline's images for an lcfix job that would send the same request."""
    files: list[str] = []
    sidecars: list[str] = []
    for i, (src, src_side) in enumerate(zip(base.files, base.sidecars, strict=False)):
        rel = f"{IMAGES_DIR}/{job.stem}-{i}{Path(src).suffix}"
        side = f"{IMAGES_DIR}/{job.stem}-{i}.json"
        write_atomic(out_dir / rel, (out_dir / src).read_bytes())
        meta = json.loads((out_dir / src_side).read_text(encoding="utf-8"))
        meta.update(
            image=Path(rel).name,
            job_key=job.key,
            variant=job.variant,
            plan=job.plan.model_dump(mode="json"),
            reused_from=base.key,
            note="not at risk: lcfix sends the prompt as written, the same request as the "
            "baseline, so its images are reused",
        )
        write_atomic(out_dir / side, json.dumps(meta, indent=2, ensure_ascii=False).encode())
        files.append(rel)
        sidecars.append(side)
    return files, sidecars


class _Runner:
    def __init__(
        self,
        adapter: ImageAdapter,
        manifest: Manifest,
        *,
        limiter: RateLimiter,
        concurrency: int,
        request: Mapping[str, Any],
        scorer: Scorer | None,
        progress: Callable[[Progress], None] | None,
        state: Progress,
        summary: JobSummary,
    ) -> None:
        self.adapter = adapter
        self.manifest = manifest
        self.limiter = limiter
        self.sem = asyncio.Semaphore(concurrency)
        self.request = request
        self.scorer = scorer
        self.progress = progress
        self.state = state
        self.summary = summary
        self.started = time.perf_counter()
        self.finished: dict[str, asyncio.Event] = {}

    def _event(self, key: str) -> asyncio.Event:
        return self.finished.setdefault(key, asyncio.Event())

    def _finish(self, record: JobRecord) -> None:
        self.manifest.append(record)
        self._event(record.key).set()
        if record.status == "done":
            self.state.done += 1
            self.summary.done += 1
            self.summary.images += len(record.files)
        else:
            self.state.failed += 1
            self.summary.failed += 1
            self.summary.errors.append(f"{record.prompt_id} ({record.variant}): {record.error}")
        self._tick(record)

    def _tick(self, last: JobRecord | None = None) -> None:
        self.state.elapsed_s = time.perf_counter() - self.started
        self.state.last = last
        if self.progress is not None:
            self.progress(self.state)

    def fail(
        self,
        record: PromptRecord,
        variant: Variant,
        key: str,
        exc: BaseException,
        attempt: int,
        started: float | None = None,
    ) -> None:
        seconds = 0.0 if started is None else time.perf_counter() - started
        self._finish(
            JobRecord(
                key=key,
                status="failed",
                prompt_id=str(record.id),
                variant=variant,
                prompt=record.prompt,
                backend=_backend_name(self.adapter),
                error=str(exc) or exc.__class__.__name__,
                error_type=exc.__class__.__name__,
                attempt=attempt,
                seconds=round(seconds, 3),
            )
        )

    async def run(self, job: Job, attempt: int) -> None:
        if job.reuse is not None and await self._reuse(job, attempt):
            return
        async with self.sem:
            started = time.perf_counter()
            try:
                result = await self._generate(job)
                files, sidecars = await asyncio.to_thread(
                    save_job_files, self.manifest.dir, job, result
                )
                scores = await self._score(job, result)
            except Exception as exc:  # any failure is recorded; the run goes on
                self.fail(job.record, job.variant, job.key, exc, attempt, started)
                return
            self._finish(
                JobRecord(
                    key=job.key,
                    status="done",
                    prompt_id=str(job.record.id),
                    variant=job.variant,
                    prompt=job.record.prompt,
                    seed=job.seed,
                    backend=_backend_name(self.adapter),
                    prompt_sent=result.prompt_sent,
                    revised_prompt=result.revised_prompt,
                    files=files,
                    sidecars=sidecars,
                    plan=job.plan.model_dump(mode="json") if job.variant == "lcfix" else None,
                    scores=scores,
                    warnings=list(result.warnings),
                    attempt=attempt,
                    seconds=round(time.perf_counter() - started, 3),
                )
            )

    async def _generate(self, job: Job) -> GenerationResult:
        request = dict(self.request)
        if job.variant == "baseline":
            request["staging"] = "off"
        # A backend without seeds gets none (the seed still keys the job).
        seed = job.seed if self.adapter.capabilities.seed else None
        for tries in range(RATE_LIMIT_RETRIES + 1):
            await self.limiter.acquire()
            try:
                return await agenerate(job.plan, self.adapter, seed=seed, **request)
            except RateLimitError as exc:
                if tries == RATE_LIMIT_RETRIES:
                    raise
                self.limiter.pause(exc.retry_after or DEFAULT_RETRY_AFTER_S)
        raise AssertionError("unreachable")

    async def _reuse(self, job: Job, attempt: int) -> bool:
        """Copy the baseline's images when it finished; False to generate after all."""
        assert job.reuse is not None
        await self._event(job.reuse).wait()
        base = self.manifest.get(job.reuse)
        if base is None or base.status != "done" or not base.files:
            return False
        started = time.perf_counter()
        try:
            files, sidecars = await asyncio.to_thread(copy_job_files, self.manifest.dir, base, job)
        except OSError as exc:
            self.fail(job.record, job.variant, job.key, exc, attempt, started)
            return True
        update = {
            "key": job.key,
            "variant": job.variant,
            "files": files,
            "sidecars": sidecars,
            "plan": job.plan.model_dump(mode="json"),
            "attempt": attempt,
            "reused_from": base.key,
            "finished_at": time.time(),
            "seconds": round(time.perf_counter() - started, 3),
        }
        self._finish(base.model_copy(update=update))
        return True

    async def _score(self, job: Job, result: GenerationResult) -> dict[str, float] | None:
        if self.scorer is None or not result.images:
            return None
        scorer, plan = self.scorer, job.score_plan or job.plan
        per_image = [await asyncio.to_thread(scorer, image.data, plan) for image in result.images]
        names = sorted({k for s in per_image for k in s})
        return {n: sum(s.get(n, 0.0) for s in per_image) / len(per_image) for n in names}


async def arun_jobs(
    source: str | Path | Sequence[PromptRecord],
    *,
    backend: str | ImageAdapter,
    out_dir: str | Path,
    planner: PlannerKind | Planner = "auto",
    model: str | None = None,
    llm_api_base: str | None = None,
    api_base: str | None = None,
    backend_options: Mapping[str, Any] | None = None,
    num_images: int = 1,
    seed: int | None = None,
    negative_prompt: str | None = None,
    width: int | None = None,
    height: int | None = None,
    staging: StagingMode = "auto",
    compare: bool = False,
    retry_failed: bool = False,
    concurrency: int | None = None,
    rpm: float | None = None,
    report: bool | None = None,
    scorer: Scorer | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> JobSummary:
    """Plan and generate every prompt of ``source`` into ``out_dir``; see the module doc.

    ``source`` is a prompt file (``.txt``/``.jsonl``/``.csv``, ``-`` for stdin) or records
    already read. ``report`` writes the contact sheet (default: with ``compare``).
    ``concurrency`` defaults to 1 for local backends and 4 for hosted ones.
    """
    from lcfix.adapters import load_adapter
    from lcfix.planner import get_planner

    started = time.perf_counter()
    records = read_prompts(source) if isinstance(source, str | Path) else list(source)
    out = Path(out_dir)
    own_adapter = isinstance(backend, str)
    if isinstance(backend, str):
        kwargs: dict[str, Any] = {"options": dict(backend_options or {})}
        if api_base is not None:
            kwargs["api_base"] = api_base
        adapter: ImageAdapter = load_adapter(backend, **kwargs)
    else:
        adapter = backend
    own_planner = isinstance(planner, str)
    plnr = (
        get_planner(planner, model=model, api_base=llm_api_base)
        if isinstance(planner, str)
        else planner
    )
    if concurrency is None:
        native = adapter.capabilities.staging == "native"
        concurrency = 1 if native else DEFAULT_HOSTED_CONCURRENCY
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
    if seed is not None and not adapter.capabilities.seed:
        log.warning("%s takes no seed; the seed only tells jobs apart", _backend_name(adapter))
    summary = JobSummary(total=0, out_dir=out)
    try:
        with Manifest(out) as manifest:
            summary.manifest = manifest.path
            plans = await plan_prompts(plnr, [r.prompt for r in records])
            request: dict[str, Any] = {
                "negative_prompt": negative_prompt,
                "width": width,
                "height": height,
                "num_images": num_images,
                "staging": staging,
            }
            opts = getattr(adapter, "options", None)
            backend_opts = opts.model_dump(mode="json") if isinstance(opts, BaseModel) else {}
            options = {"backend_options": backend_opts, **request}
            jobs = build_jobs(records, plans, adapter, seed=seed, compare=compare, options=options)
            summary.total = len(jobs)
            state = Progress(total=len(jobs))
            runner = _Runner(
                adapter,
                manifest,
                limiter=RateLimiter(rpm),
                concurrency=concurrency,
                request=request,
                scorer=scorer,
                progress=progress,
                state=state,
                summary=summary,
            )
            todo: list[Awaitable[None]] = []
            keys: list[str] = []  # this run's jobs, in input order, for the contact sheet
            for job in jobs:
                if isinstance(job, tuple):
                    rec, err = job
                    key = "plan-error:" + hashlib.sha256(rec.prompt.encode()).hexdigest()
                    keys.append(key)
                    runner.fail(rec, "lcfix", key, err, 1)
                    continue
                keys.append(job.key)
                prev = manifest.get(job.key)
                if prev is not None and (
                    prev.status == "done" or (prev.status == "failed" and not retry_failed)
                ):
                    runner._event(job.key).set()
                    state.skipped += 1
                    summary.skipped += 1
                    if prev.status == "failed":
                        summary.failed_earlier += 1
                        summary.errors.append(
                            f"{prev.prompt_id} ({prev.variant}): {prev.error} "
                            "(failed earlier; --retry-failed to retry)"
                        )
                    continue
                todo.append(runner.run(job, (prev.attempt + 1) if prev is not None else 1))
            runner._tick()
            await asyncio.gather(*todo)
            if report if report is not None else compare:
                in_run = [r for r in map(manifest.get, keys) if r is not None]
                summary.report = await asyncio.to_thread(write_report, out, in_run)
    finally:
        if own_adapter:
            await adapter.aclose()
        if own_planner:
            plnr.close()
    summary.seconds = time.perf_counter() - started
    return summary


def run_jobs(source: str | Path | Sequence[PromptRecord], **kwargs: Any) -> JobSummary:
    """The blocking twin of ``arun_jobs`` (same arguments)."""
    return asyncio.run(arun_jobs(source, **kwargs))
