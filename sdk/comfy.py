"""Export a Plan as a ComfyUI API-format workflow fragment.

Each stage becomes a ``CLIPTextEncode`` followed by a ``ConditioningSetTimestepRange``; the
ranges are joined by ``ConditioningCombine``, whose output goes to a KSampler's ``positive``.

ComfyUI's ``start``/``end`` are **not** fractions of the steps: ComfyUI turns a percent into a
sigma (``model_sampling.percent_to_sigma``) and a conditioning is used on a step when the
step's sigma lies inside its range. How many steps fall before a given percent depends on the
scheduler, the step count and the model's noise schedule. So this module computes the sigma
schedule ComfyUI will use (``normal``, ``karras``, ``simple``, ``sgm_uniform`` for
discrete SD/SDXL models and shifted flow models) and picks, for each switch, a percent whose
sigma falls between the last stage-1 step and the first stage-2 step. Pure Python, no I/O.

    >>> frag = export_comfy(plan, steps=20, scheduler="karras", model_type="sdxl")
    >>> frag["_lcfix_note"]  # says how each switch point was converted
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from lcfix.errors import InputError
from lcfix.plans import Plan
from lcfix.steps import schedule_steps

Scheduler = Literal["normal", "karras", "simple", "sgm_uniform"]
ModelType = Literal["sd", "sdxl", "flow"]
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)
MODEL_TYPES: tuple[str, ...] = get_args(ModelType)
DEFAULT_FLOW_SHIFT = 3.0
"""ComfyUI's ModelSamplingDiscreteFlow shift for SD3; Flux-style models differ (pass shift)."""


class _SigmaTable:
    """The ascending sigma table a ComfyUI ``ModelSampling`` holds, and its ends."""

    sigmas: list[float]

    @property
    def sigma_min(self) -> float:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> float:
        return self.sigmas[-1]


class DiscreteSampling(_SigmaTable):
    """ComfyUI's ``ModelSamplingDiscrete`` for eps models: 1000 scaled-linear betas.

    SD 1.x and SDXL share the schedule (linear_start 0.00085, linear_end 0.012).
    """

    def __init__(self, linear_start: float = 0.00085, linear_end: float = 0.012) -> None:
        n = 1000
        a, b = linear_start**0.5, linear_end**0.5
        cumprod = 1.0
        sigmas: list[float] = []
        for i in range(n):
            beta = (a + (b - a) * i / (n - 1)) ** 2
            cumprod *= 1.0 - beta
            sigmas.append(((1 - cumprod) / cumprod) ** 0.5)
        self.sigmas = sigmas
        self.log_sigmas = [math.log(s) for s in sigmas]

    def sigma(self, timestep: float) -> float:
        t = min(max(timestep, 0.0), len(self.sigmas) - 1.0)
        lo, hi = math.floor(t), math.ceil(t)
        w = t - lo
        return math.exp((1 - w) * self.log_sigmas[lo] + w * self.log_sigmas[hi])

    def timestep(self, sigma: float) -> float:
        log_sigma = math.log(sigma)
        return float(
            min(range(len(self.log_sigmas)), key=lambda i: abs(log_sigma - self.log_sigmas[i]))
        )

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return self.sigma((1.0 - percent) * 999.0)

    def sigma_to_percent(self, sigma: float) -> float:
        """The inverse of ``percent_to_sigma`` (log-linear between the 1000 table entries)."""
        ls = math.log(sigma)
        if ls <= self.log_sigmas[0]:
            return 1.0
        if ls >= self.log_sigmas[-1]:
            return 0.0
        hi = bisect.bisect_left(self.log_sigmas, ls)
        lo = hi - 1
        w = (ls - self.log_sigmas[lo]) / (self.log_sigmas[hi] - self.log_sigmas[lo])
        return 1.0 - (lo + w) / 999.0


def _shift(alpha: float, t: float) -> float:
    return t if alpha == 1.0 else alpha * t / (1 + (alpha - 1) * t)


class FlowSampling(_SigmaTable):
    """ComfyUI's ``ModelSamplingDiscreteFlow``: sigma = shift(t), t in (0, 1]."""

    def __init__(self, shift: float = DEFAULT_FLOW_SHIFT, multiplier: float = 1000.0) -> None:
        if shift <= 0:
            raise InputError(f"shift must be positive, got {shift}", field="shift")
        self.shift = shift
        self.multiplier = multiplier
        self.sigmas = [_shift(shift, i / 1000) for i in range(1, 1001)]

    def sigma(self, timestep: float) -> float:
        return _shift(self.shift, timestep / self.multiplier)

    def timestep(self, sigma: float) -> float:
        return sigma * self.multiplier

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return _shift(self.shift, 1.0 - percent)

    def sigma_to_percent(self, sigma: float) -> float:
        a = self.shift
        t = sigma / (a - (a - 1) * sigma)
        return min(max(1.0 - t, 0.0), 1.0)


Sampling = DiscreteSampling | FlowSampling


def model_sampling(model_type: ModelType, shift: float | None = None) -> Sampling:
    """The noise schedule ComfyUI uses for a model family."""
    if model_type in ("sd", "sdxl"):
        if shift is not None:
            raise InputError("shift applies to flow models only", field="shift")
        return DiscreteSampling()
    if model_type == "flow":
        return FlowSampling(DEFAULT_FLOW_SHIFT if shift is None else shift)
    raise InputError(
        f"unknown model type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}",
        field="model_type",
    )


def _linspace(a: float, b: float, n: int) -> list[float]:
    if n == 1:
        return [a]
    return [a + (b - a) * i / (n - 1) for i in range(n)]


def sigma_schedule(
    scheduler: Scheduler, steps: int, model_type: ModelType = "sdxl", shift: float | None = None
) -> list[float]:
    """The ``steps + 1`` sigmas (ending in 0) that ComfyUI's scheduler gives a KSampler."""
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}", field="steps")
    ms = model_sampling(model_type, shift)
    if scheduler in ("normal", "sgm_uniform"):
        start, end = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
        append_zero = True
        if scheduler == "sgm_uniform":
            timesteps = _linspace(start, end, steps + 1)[:-1]
        else:
            n = steps
            if math.isclose(ms.sigma(end), 0, abs_tol=1e-5):
                n, append_zero = steps + 1, False
            timesteps = _linspace(start, end, n)
        sigmas = [ms.sigma(t) for t in timesteps]
        return [*sigmas, 0.0] if append_zero else sigmas
    if scheduler == "simple":
        ss = len(ms.sigmas) / steps
        return [ms.sigmas[-(1 + int(x * ss))] for x in range(steps)] + [0.0]
    if scheduler == "karras":
        rho = 7.0
        lo, hi = ms.sigma_min ** (1 / rho), ms.sigma_max ** (1 / rho)
        return [(hi + r * (lo - hi)) ** rho for r in _linspace(0, 1, steps)] + [0.0]
    raise InputError(
        f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}",
        field="scheduler",
    )


def step_bounds(ends: Sequence[float], total: int) -> tuple[list[int], list[int], list[str]]:
    """Stage ends (fractions) as steps: ``(kept stage indices, switch steps, notes)``.

    ``lcfix.steps.schedule_steps``, the local backend's rule, so an export switches on the
    step a local run would.
    """
    s = schedule_steps(ends, total)
    return list(s.stages), list(s.steps), list(s.warnings)


def stage_steps(end: float, steps: int) -> int:
    """Steps that stage 1 of a two-stage plan gets when it ends at fraction ``end``."""
    _, bounds, _ = step_bounds([end, 1.0], steps)
    return bounds[0] if bounds else steps


@dataclass(frozen=True)
class SwitchPoint:
    """One stage switch, in steps and in ComfyUI's sigma percent."""

    end: float
    """The plan's switch point, a fraction of the steps."""
    step: int
    """Steps before the switch: steps 0 .. step-1 use the earlier stage."""
    percent: float
    """The value for ComfyUI's ``end``/``start`` (a fraction of the sigma range)."""
    sigma: float
    """The sigma that ``percent`` maps to, between the two steps' sigmas."""


def _short(percent: float, ms: Sampling, lo: float, hi: float) -> float:
    # The shortest rounding of `percent` whose sigma still falls strictly between the steps.
    for digits in (3, 4, 6, 8):
        p = round(percent, digits)
        if lo < ms.percent_to_sigma(p) < hi:
            return p
    return percent


def switch_point(
    end: float,
    steps: int,
    scheduler: Scheduler,
    model_type: ModelType = "sdxl",
    shift: float | None = None,
    step: int | None = None,
) -> SwitchPoint:
    """The ComfyUI percent that switches after ``step`` steps (default: ``stage_steps``).

    A conditioning range [start, end] is active on a step whose sigma s satisfies
    ``percent_to_sigma(end) <= s <= percent_to_sigma(start)``; the switch sigma is the
    geometric mean of the last stage-1 sigma and the first stage-2 sigma, so float32
    rounding inside ComfyUI cannot move it onto a step.
    """
    sigmas = sigma_schedule(scheduler, steps, model_type, shift)
    ms = model_sampling(model_type, shift)
    k = stage_steps(end, steps) if step is None else step
    if k >= steps:
        return SwitchPoint(end=end, step=steps, percent=1.0, sigma=0.0)
    hi, lo = sigmas[k - 1], sigmas[k]
    sigma = math.sqrt(hi * lo) if lo > 0 else hi / 2
    percent = _short(ms.sigma_to_percent(sigma), ms, lo, hi)
    return SwitchPoint(
        end=end, step=k, percent=percent, sigma=round(ms.percent_to_sigma(percent), 6)
    )


def _note(
    points: Sequence[SwitchPoint],
    steps: int,
    scheduler: str,
    model_type: str,
    notes: Sequence[str],
) -> str:
    if not points:
        head = "lcfix: one stage, no switch; the conditioning covers every step."
        return " ".join([head, *(n[:1].upper() + n[1:] + "." for n in notes)])
    parts = [
        f"ComfyUI's start/end are fractions of the sigma range, not of the steps. lcfix "
        f"converted each switch for scheduler {scheduler!r}, {steps} steps, model type "
        f"{model_type!r}:"
    ]
    for p in points:
        parts.append(
            f"switch at {p.end:g} of the steps = after step {p.step} of {steps} "
            f"-> percent {p.percent:g} (sigma {p.sigma:.4g})."
        )
    parts += [note[:1].upper() + note[1:] + "." for note in notes]
    parts.append(
        "Other schedulers, step counts or models need a new export; samplers that evaluate "
        "between steps (heun, dpm_2) may see both stages near a switch."
    )
    return " ".join(parts)


def export_comfy(
    plan: Plan,
    *,
    steps: int = 20,
    scheduler: Scheduler = "normal",
    model_type: ModelType = "sdxl",
    shift: float | None = None,
    clip: tuple[str, int] = ("4", 1),
    start_id: int = 100,
) -> dict[str, Any]:
    """The plan as ComfyUI API-format nodes, plus ``_lcfix_note`` and ``_lcfix`` keys.

    ``clip`` is the ``[node_id, output]`` link to your CLIP (``["4", 1]`` is the CLIP output
    of the default workflow's CheckpointLoaderSimple). Wire the node named in
    ``_lcfix["output"]`` to the KSampler's ``positive``, and remove the two ``_lcfix`` keys
    before posting the merged graph to ``/prompt``.
    """
    if scheduler not in SCHEDULERS:
        raise InputError(
            f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}",
            field="scheduler",
        )
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}", field="steps")
    keep, bounds, notes = step_bounds([s.end for s in plan.stages], steps)
    kept_stages = [plan.stages[i] for i in keep]
    kept_points = [
        switch_point(plan.stages[i].end, steps, scheduler, model_type, shift, step=k)
        for i, k in zip(keep, bounds, strict=False)
    ]

    nodes: dict[str, Any] = {}
    next_id = start_id

    def add(class_type: str, inputs: dict[str, Any], title: str) -> str:
        nonlocal next_id
        node_id = str(next_id)
        next_id += 1
        nodes[node_id] = {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}
        return node_id

    ranged: list[str] = []
    info_stages: list[dict[str, Any]] = []
    percents = [0.0, *(p.percent for p in kept_points), 1.0]
    starts = [0, *(p.step for p in kept_points), steps]
    for i, stage in enumerate(kept_stages):
        first, last = starts[i], starts[i + 1] - 1
        text_id = add(
            "CLIPTextEncode",
            {"text": stage.prompt, "clip": [clip[0], clip[1]]},
            f"lcfix stage {i + 1} text",
        )
        info_stages.append(
            {
                "prompt": stage.prompt,
                "end": stage.end,
                "steps": [first, last],
                "start_percent": percents[i],
                "end_percent": percents[i + 1],
            }
        )
        if len(kept_stages) == 1:
            ranged.append(text_id)
            break
        ranged.append(
            add(
                "ConditioningSetTimestepRange",
                {"conditioning": [text_id, 0], "start": percents[i], "end": percents[i + 1]},
                f"lcfix stage {i + 1}: steps {first}-{last} of {steps} "
                f"(sigma percent {percents[i]:g}-{percents[i + 1]:g})",
            )
        )
    out = ranged[0]
    for other in ranged[1:]:
        out = add(
            "ConditioningCombine",
            {"conditioning_1": [out, 0], "conditioning_2": [other, 0]},
            "lcfix combine stages",
        )
    return {
        "_lcfix_note": _note(kept_points, steps, scheduler, model_type, notes),
        "_lcfix": {
            "prompt": plan.prompt,
            "scheduler": scheduler,
            "steps": steps,
            "model_type": model_type,
            "shift": (shift if shift is not None else DEFAULT_FLOW_SHIFT)
            if model_type == "flow"
            else None,
            "output": [out, 0],
            "switches": [asdict(p) for p in kept_points],
            "stages": info_stages,
        },
        **nodes,
    }


def comfy_nodes(fragment: dict[str, Any]) -> dict[str, Any]:
    """The fragment without lcfix's keys: only the ComfyUI nodes."""
    return {k: v for k, v in fragment.items() if not k.startswith("_lcfix")}
