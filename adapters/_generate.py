"""What ``DiffusersAdapter.generate`` runs: staged sampling, the refiner mode and the search.

Split from ``local.py`` so that module stays importable without torch.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from lcfix.adapters._runner import Counter, RunResult, Snapshot, make_generators, run_pipeline
from lcfix.adapters.local import concept_roles, seeds_for, stages_for
from lcfix.adapters.scorer import INFO_SEED, INFO_STEP, INFO_TOTAL, concept_scores
from lcfix.adapters.search import (
    Probe,
    SearchOutcome,
    SearchParams,
    find_switch_step,
    outcome_dict,
    ratio_key,
    search_range,
)
from lcfix.adapters.staging import (
    StageEmbeddings,
    StagingCallback,
    encode_stage,
    sigma_fraction,
)
from lcfix.errors import ConfigError, UnsupportedError
from lcfix.plans import Stage
from lcfix.steps import StageSchedule, schedule_steps

if TYPE_CHECKING:
    from lcfix.adapters.base import GenerationRequest
    from lcfix.adapters.local import DiffusersAdapter


@dataclass
class Job:
    """A request resolved against the pipeline: stages, steps, seeds and call arguments."""

    plan: Any
    stages: tuple[Stage, ...]
    schedule: StageSchedule
    steps: int
    total: int
    seeds: list[int]
    negative: str | None
    call: dict[str, Any]
    output_type: str
    warnings: list[str] = field(default_factory=list)
    _embeds: dict[tuple[int, str], StageEmbeddings] = field(default_factory=dict)

    @property
    def prompts(self) -> list[str]:
        """The prompts of the stages that get steps."""
        return [self.stages[i].prompt for i in self.schedule.stages]

    @classmethod
    def build(cls, adapter: DiffusersAdapter, request: GenerationRequest) -> Job:
        opts = adapter.options
        steps = opts.num_inference_steps or int(adapter.default("num_inference_steps"))
        total = adapter.loop_length(steps)
        stages = stages_for(request)
        schedule = schedule_steps([s.end for s in stages], total)
        call: dict[str, Any] = {"num_inference_steps": steps}
        guidance = opts.guidance_scale
        call["guidance_scale"] = (
            guidance if guidance is not None else adapter.default("guidance_scale")
        )
        if request.width:
            call["width"] = request.width
        if request.height:
            call["height"] = request.height
        if opts.max_sequence_length and adapter.family in ("sd3", "flux"):
            call["max_sequence_length"] = opts.max_sequence_length
        warnings = list(schedule.warnings)
        negative = request.negative_prompt
        if adapter.family == "flux":
            if opts.true_cfg_scale is not None:
                call["true_cfg_scale"] = opts.true_cfg_scale
            if negative and (opts.true_cfg_scale or 1.0) <= 1.0:
                warnings.append("Flux ignores the negative prompt unless true_cfg_scale > 1")
                negative = None
        return cls(
            plan=request.plan,
            stages=stages,
            schedule=schedule,
            steps=steps,
            total=total,
            seeds=seeds_for(request),
            negative=negative,
            call=call,
            output_type=opts.output_type,
            warnings=warnings,
        )

    def embed(self, pipe: Any, prompt: str, max_sequence_length: int | None) -> StageEmbeddings:
        key = (id(pipe), prompt)
        if key not in self._embeds:
            self._embeds[key] = encode_stage(pipe, prompt, max_sequence_length=max_sequence_length)
        return self._embeds[key]


@dataclass
class Images:
    """Images (and final latents) for some seeds, with the switch steps that made them."""

    pil: list[Any]
    latents: list[torch.Tensor]
    bounds: list[int]
    sigma: list[float | None]


@dataclass
class JobOutput:
    images: list[Any]
    warnings: list[str]
    timings: dict[str, float]
    extra: dict[str, Any]


def _callback(
    adapter: DiffusersAdapter, job: Job, prompts: list[str], bounds: list[int]
) -> StagingCallback:
    msl = adapter.options.max_sequence_length
    stages = [job.embed(adapter.pipe, p, msl) for p in prompts]
    neg = None
    if adapter.family == "sd3" or (adapter.family == "flux" and job.negative):
        neg = job.embed(adapter.pipe, job.negative or "", msl)
    cb = StagingCallback(
        stages,
        [b / job.total for b in bounds] + [1.0],
        family=adapter.family,
        total_steps=job.total,
        switch_steps=bounds,
        negative=neg,
        pipe=adapter.pipe,
        max_sequence_length=msl,
    )
    cb.resolve(job.total)
    return cb


def run_single(
    adapter: DiffusersAdapter,
    job: Job,
    seeds: list[int],
    prompts: list[str],
    bounds: list[int],
    counter: Counter,
    *,
    output_type: str,
    resume: Snapshot | None = None,
    capture: range | tuple[int, ...] = (),
    stop_at: int | None = None,
) -> RunResult:
    """One staged pass of the base pipeline (or part of one)."""
    cb = _callback(adapter, job, prompts, bounds)
    kwargs = {
        **job.call,
        **cb.pipeline_inputs(len(seeds), negative_prompt=job.negative),
        "output_type": output_type,
    }
    return run_pipeline(
        adapter.pipe,
        kwargs,
        staging=cb,
        generators=make_generators(seeds, adapter.generator_device()),
        n_images=len(seeds),
        counter=counter,
        resume=resume,
        capture=capture,
        stop_at=stop_at,
        total=job.total,
    )


def denoising_boundary(scheduler: Any, steps: int, k: int) -> float:
    """The ``denoising_end``/``denoising_start`` value that splits SDXL sampling at step k."""
    probe = copy.deepcopy(scheduler)
    probe.set_timesteps(steps)
    value = sigma_fraction(probe, k)
    if value is None:
        raise UnsupportedError(
            f"cannot place a refiner switch at step {k} of {steps} with {type(scheduler).__name__}",
            adapter="diffusers",
        )
    return value


def run_refiner(
    adapter: DiffusersAdapter,
    job: Job,
    seeds: list[int],
    prompts: list[str],
    bounds: list[int],
    counter: Counter,
    *,
    output_type: str,
    latents: torch.Tensor | None = None,
) -> tuple[RunResult, list[float | None]]:
    """SDXL base for the early stages up to ``denoising_end``, the refiner for the rest."""
    k = bounds[-1]
    d = denoising_boundary(adapter.pipe.scheduler, job.steps, k)
    gens = make_generators(seeds, adapter.generator_device())
    sigma: list[float | None] = []
    if latents is None:
        cb = _callback(adapter, job, prompts[:-1], bounds[:-1])
        kwargs = {
            **job.call,
            **cb.pipeline_inputs(len(seeds), negative_prompt=job.negative),
            "denoising_end": d,
            "output_type": "latent",
        }
        base = run_pipeline(
            adapter.pipe, kwargs, staging=cb, generators=gens, n_images=len(seeds),
            counter=counter, total=job.total,
        )  # fmt: skip
        latents = base.output.images
        sigma = [b.sigma_fraction for b in base.boundaries]
    emb = job.embed(adapter.refiner, prompts[-1], None)
    rk: dict[str, Any] = {
        "prompt_embeds": emb.prompt_embeds,
        "pooled_prompt_embeds": emb.pooled,
        "num_images_per_prompt": len(seeds),
        "image": latents,
        "denoising_start": d,
        "num_inference_steps": job.steps,
        "guidance_scale": job.call["guidance_scale"],
        "output_type": output_type,
    }
    if job.negative:
        rk["negative_prompt"] = job.negative
    res = run_pipeline(
        adapter.refiner, rk, staging=None, generators=gens, n_images=len(seeds), counter=counter
    )
    return res, [*sigma, d]


def _pil_and_latents(res: RunResult, n: int) -> tuple[list[Any], list[torch.Tensor]]:
    images = res.output.images
    if isinstance(images, torch.Tensor):  # output_type="latent"
        return [], [t.detach().cpu() for t in images]
    lat = res.final_latents
    latents = [t.detach().cpu() for t in lat] if lat is not None else []
    return list(images)[:n], latents


def staged(
    adapter: DiffusersAdapter, job: Job, seeds: list[int], bounds: list[int], counter: Counter
) -> Images:
    """Sample ``seeds`` with the stages switching at ``bounds``."""
    prompts = job.prompts
    if adapter.options.mode == "refiner" and bounds:
        res, sigma = run_refiner(
            adapter, job, seeds, prompts, bounds, counter, output_type=job.output_type
        )
    else:
        res = run_single(adapter, job, seeds, prompts, bounds, counter, output_type=job.output_type)
        sigma = [b.sigma_fraction for b in res.boundaries]
    pil, lat = _pil_and_latents(res, len(seeds))
    return Images(pil, lat, list(bounds), sigma)


class Brancher:
    """One shared stage-1 trunk for a group of seeds, and probes that branch off it."""

    def __init__(
        self,
        adapter: DiffusersAdapter,
        job: Job,
        seeds: list[int],
        inner: list[int],
        lo: int,
        counter: Counter,
        scorer: Any,
    ) -> None:
        self.adapter, self.job, self.seeds, self.inner = adapter, job, seeds, inner
        self.lo, self.counter, self.scorer = lo, counter, scorer
        self.concepts, self.fragile, self.dominant = concept_roles(job.plan)
        self.snapshots: dict[int, Snapshot] = {}
        self.trunk_end = 0
        self.results: dict[int, Images] = {}

    def cost(self, k: int) -> float:
        """Image-steps that probing ``k`` would add: trunk extension plus the branch."""
        return float(len(self.seeds) * (max(0, k - self.trunk_end) + (self.job.total - k)))

    def _extend(self, k: int) -> None:
        if k <= self.trunk_end:
            return
        res = run_single(
            self.adapter, self.job, self.seeds, self.job.prompts[:-1], self.inner, self.counter,
            output_type="latent", resume=self.snapshots.get(self.trunk_end),
            capture=range(max(self.lo, self.trunk_end + 1), k + 1), stop_at=k,
        )  # fmt: skip
        self.snapshots.update(res.snapshots)
        self.trunk_end = k

    def images_at(self, k: int) -> Images:
        """The group's images with the final switch at ``k`` (sampled once, then kept)."""
        if k in self.results:
            return self.results[k]
        self._extend(k)
        snap = self.snapshots[k]
        bounds = [*self.inner, k]
        if self.adapter.options.mode == "refiner":
            res, sigma = run_refiner(
                self.adapter, self.job, self.seeds, self.job.prompts, bounds, self.counter,
                output_type="pil", latents=snap.latents,
            )  # fmt: skip
        else:
            res = run_single(
                self.adapter, self.job, self.seeds, self.job.prompts, bounds, self.counter,
                output_type="pil", resume=snap,
            )  # fmt: skip
            sigma = [b.sigma_fraction for b in res.boundaries]
        pil, lat = _pil_and_latents(res, len(self.seeds))
        for im, seed in zip(pil, self.seeds, strict=True):
            im.info.update({INFO_STEP: k, INFO_TOTAL: self.job.total, INFO_SEED: seed})
        self.results[k] = Images(pil, lat, bounds, sigma)
        return self.results[k]

    def probe(self, k: int) -> Probe:
        scores = concept_scores(self.scorer, self.images_at(k).pil, self.concepts)
        low = {n.lower(): v for n, v in scores.items()}
        return Probe(
            k,
            min(low[f.lower()] for f in self.fragile),
            min(low[d.lower()] for d in self.dominant),
        )


def _search_key(
    adapter: DiffusersAdapter, job: Job, params: SearchParams, seeds: list[int] | None
) -> str:
    sched = adapter.pipe.scheduler
    return ratio_key(
        model=adapter.model, family=adapter.family, mode=adapter.options.mode,
        scheduler=type(sched).__name__, scheduler_config=dict(sched.config), steps=job.steps,
        pairs=sorted((p.fragile.lower(), p.dominant.lower()) for p in job.plan.pairs),
        stages=len(job.schedule.stages), inner=list(job.schedule.steps[:-1]),
        scorer=getattr(adapter.scorer, "name", type(adapter.scorer).__name__),
        params=[params.threshold, params.epsilon, params.start, params.end],
        guidance=job.call.get("guidance_scale"), seeds=seeds,
        size=[job.call.get("width"), job.call.get("height")],
    )  # fmt: skip


def _search(
    adapter: DiffusersAdapter, job: Job, counter: Counter
) -> tuple[list[Images], dict[str, Any]]:
    opts = adapter.options
    params = SearchParams(opts.search_threshold, opts.search_epsilon, *opts.search_range)
    inner = list(job.schedule.steps[:-1])
    lo, hi = search_range(job.total, params, after=inner[-1] if inner else 0)
    prior = min(max(job.schedule.steps[-1], lo), hi)
    seeds = job.seeds
    per_image = opts.search == "image"
    groups = [[s] for s in seeds] if per_image else [seeds[: opts.search_images]]
    rest = [] if per_image else seeds[opts.search_images :]
    scorer = adapter.scorer
    parts: list[Images] = []
    traces: list[dict[str, Any]] = []
    for group in groups:
        key = _search_key(adapter, job, params, group if per_image else None)
        hit = adapter.ratio_cache.get(key) if opts.search_cache else None
        if hit is not None and lo <= int(hit["step"]) <= hi:
            parts.append(staged(adapter, job, group, [*inner, int(hit["step"])], counter))
            traces.append({"seeds": group, "cached": True, **hit})
            continue
        budget = opts.search_budget * len(group) * job.total
        if not per_image:
            budget = opts.search_budget * len(seeds) * job.total - len(rest) * job.total
        br = Brancher(adapter, job, group, inner, lo, counter, scorer)
        outcome: SearchOutcome = find_switch_step(
            br.probe, lo, hi, prior, params=params, cost=br.cost, budget=budget
        )
        parts.append(br.images_at(outcome.step))
        info = outcome_dict(outcome, job.total)
        if opts.search_cache:
            adapter.ratio_cache.put(key, outcome.step, job.total, **{
                k: v for k, v in info.items() if k not in ("step", "probes")
            })  # fmt: skip
        traces.append({"seeds": group, "cached": False, "range": [lo, hi], "prior": prior, **info})
    if rest:
        parts.append(staged(adapter, job, rest, parts[0].bounds, counter))
    return parts, {"mode": opts.search, "groups": traces, "scorer": getattr(scorer, "name", "")}


def run_job(adapter: DiffusersAdapter, job: Job) -> JobOutput:
    """Sample every image of ``job``; search the switch step first when asked to."""
    counter = Counter()
    timings: dict[str, float] = {}
    warnings = list(job.warnings)
    search_info: dict[str, Any] | None = None
    bounds = list(job.schedule.steps)
    parts: list[Images]
    started = time.perf_counter()
    searching = adapter.options.search != "off" and bool(bounds)
    if searching and not job.plan.pairs:
        warnings.append("search skipped: the plan names no concept pair to score")
        searching = False
    if searching:
        try:
            parts, search_info = _search(adapter, job, counter)
        except ConfigError as exc:  # no switch step fits this step count
            warnings.append(f"search skipped: {exc}")
            searching = False
    if not searching:
        parts = [staged(adapter, job, job.seeds, bounds, counter)]
    timings["sampling_s"] = round(time.perf_counter() - started, 4)
    per_image: list[dict[str, Any]] = []
    pil: list[Any] = []
    latents: list[torch.Tensor] = []
    for part in parts:
        for im_idx in range(max(len(part.pil), len(part.latents))):
            per_image.append(
                {
                    "switch_steps": part.bounds,
                    "fractions": [round(b / job.total, 6) for b in part.bounds],
                    "sigma_fractions": part.sigma,
                }
            )
            if part.pil:
                pil.append(part.pil[im_idx])
        latents += part.latents
    for i, (row, seed) in enumerate(zip(per_image, job.seeds, strict=False)):
        row.update(index=i, seed=seed)
    first = (
        per_image[0] if per_image else {"switch_steps": [], "fractions": [], "sigma_fractions": []}
    )
    extra: dict[str, Any] = {
        "family": adapter.family,
        "mode": adapter.options.mode,
        "steps": job.steps,
        "loop_steps": job.total,
        "stage_prompts": job.prompts,
        "switch_steps": first["switch_steps"],
        "fractions": first["fractions"],
        "sigma_fractions": first["sigma_fractions"],
        "images": per_image,
        "search": search_info,
        "denoiser_calls": counter.calls,
        "denoiser_image_steps": counter.image_steps,
        "plain_image_steps": len(job.seeds) * job.total,
    }
    if job.output_type == "latent":
        extra["latents"] = torch.stack(latents) if latents else None
    return JobOutput(pil, warnings, timings, extra)
