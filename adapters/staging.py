"""Concept staging inside one diffusers sampling pass, as a reusable ``PipelineCallback``.

The fragile concept conditions the first steps; the callback then swaps the text conditioning
to the next stage's prompt, ending with the full prompt. Pass it to your own pipeline call and
combine it with other callbacks through ``MultiPipelineCallbacks``::

    from lcfix.adapters.staging import StagingCallback

    prompts = ["tea cup", "a tea cup of iced coke"]
    cb = StagingCallback.from_prompts(pipe, prompts, ends=[0.25, 1.0])
    image = pipe(**cb.pipeline_inputs(negative_prompt="blurry"), callback_on_step_end=cb).images[0]
    cb.boundaries   # SDXL, 40 steps: [Boundary(step=10, fraction=0.25, sigma_fraction=0.2615)]

What is swapped, per family: SD 1.x/2.x ``prompt_embeds`` (whose second half under
classifier-free guidance is the positive prompt); SDXL ``prompt_embeds`` and ``add_text_embeds``;
SD3 ``prompt_embeds`` and ``pooled_prompt_embeds``; Flux ``prompt_embeds`` plus the pooled
embedding, which Flux does not expose to callbacks: ``pipeline_inputs()`` hands the pipeline a
pooled tensor that the callback owns and overwrites in place at each switch. The unconditional
half is kept as the pipeline built it, so negative prompts and CFG-cutoff callbacks compose.

Requires the ``diffusion`` extra (torch, diffusers); importing this module imports them.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lcfix.errors import ConfigError, ExtraNotInstalledError, UnsupportedError
from lcfix.steps import StageSchedule, schedule_steps

try:
    import torch
    from diffusers.callbacks import PipelineCallback
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ExtraNotInstalledError("Local staging", "diffusion", exc.name or "diffusers") from exc

Family = Literal["sd", "sdxl", "sd3", "flux"]

SUPPORTED_PIPELINES: dict[str, Family] = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "FluxPipeline": "flux",
}
"""Pipeline classes (and their subclasses) that staging supports, by family."""

_SWAPPED: dict[Family, list[str]] = {
    "sd": ["prompt_embeds"],
    "sdxl": ["prompt_embeds", "add_text_embeds"],
    "sd3": ["prompt_embeds", "pooled_prompt_embeds"],
    "flux": ["prompt_embeds"],
}


def pipeline_family(pipe: Any) -> Family:
    """The family of a diffusers pipeline object; UnsupportedError names the supported ones."""
    for cls in type(pipe).__mro__:
        family = SUPPORTED_PIPELINES.get(cls.__name__)
        if family is not None:
            return family
    supported = ", ".join(SUPPORTED_PIPELINES)
    raise UnsupportedError(
        f"cannot stage {type(pipe).__name__}; supported pipeline classes: {supported}",
        adapter="diffusers",
    )


def denoiser(pipe: Any) -> Any:
    """The network a pipeline calls once per step (its UNet or its transformer)."""
    return pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer


@dataclass(frozen=True)
class Boundary:
    """Where one stage hands over to the next.

    ``step`` is the first step of the next stage (so the earlier stages ran ``step`` steps);
    ``fraction`` is ``step / total``; ``sigma_fraction`` is the same switch on the noise scale,
    ``1 - t/T`` at the midpoint between the last timestep of the earlier stage and the first
    of the next: the value that reproduces the switch as SDXL's ``denoising_end`` or as a
    ComfyUI timestep-range percent. It differs from ``fraction`` because timesteps are not
    evenly spaced in noise.
    """

    step: int
    fraction: float
    sigma_fraction: float | None = None


def sigma_fraction(scheduler: Any, step: int) -> float | None:
    """The noise-scale position of a switch before ``step`` (see :class:`Boundary`)."""
    timesteps = getattr(scheduler, "timesteps", None)
    train = getattr(getattr(scheduler, "config", None), "num_train_timesteps", None)
    if timesteps is None or not train or not 0 < step < len(timesteps):
        return None
    mid = (float(timesteps[step - 1]) + float(timesteps[step])) / 2.0
    return round(1.0 - mid / float(train), 6)


@dataclass(frozen=True)
class StageEmbeddings:
    """The positive conditioning of one stage, batch 1 (or one row per prompt)."""

    prompt: str
    prompt_embeds: torch.Tensor
    pooled: torch.Tensor | None = None


def encode_stage(
    pipe: Any, prompt: str, *, max_sequence_length: int | None = None
) -> StageEmbeddings:
    """Encode one stage prompt with the pipeline's own text encoders (positive half only)."""
    family = pipeline_family(pipe)
    device = pipe._execution_device
    extra: dict[str, Any] = {}
    if max_sequence_length is not None:
        extra["max_sequence_length"] = max_sequence_length
    with torch.no_grad():
        if family == "sd":
            pe, _ = pipe.encode_prompt(prompt, device, 1, False)
            return StageEmbeddings(prompt, pe)
        if family == "sdxl":
            pe, _, pooled, _ = pipe.encode_prompt(
                prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
            return StageEmbeddings(prompt, pe, pooled)
        if family == "sd3":
            pe, _, pooled, _ = pipe.encode_prompt(
                prompt, None, None, device=device, do_classifier_free_guidance=False, **extra
            )
            return StageEmbeddings(prompt, pe, pooled)
        pe, pooled, _ = pipe.encode_prompt(prompt, None, device=device, **extra)
        return StageEmbeddings(prompt, pe, pooled)


def _match_batch(t: torch.Tensor, batch: int) -> torch.Tensor:
    if t.shape[0] == batch:
        return t
    if batch % t.shape[0]:
        raise UnsupportedError(
            f"stage embeddings have batch {t.shape[0]}, which does not divide the pipeline's "
            f"batch {batch}",
            adapter="diffusers",
        )
    # diffusers repeats each prompt's rows consecutively (prompt-major order).
    return t.repeat_interleave(batch // t.shape[0], dim=0)


def _replace_positive(current: torch.Tensor, new: torch.Tensor, cfg: bool) -> torch.Tensor:
    half = current.shape[0] // 2 if cfg else current.shape[0]
    new = _match_batch(new, half).to(device=current.device, dtype=current.dtype)
    if new.shape[1:] != current.shape[1:]:
        raise UnsupportedError(
            f"stage embeddings have shape {tuple(new.shape[1:])} but the pipeline holds "
            f"{tuple(current.shape[1:])}; encode every stage with the same settings",
            adapter="diffusers",
        )
    return torch.cat([current[:half], new]) if cfg else new


class StagingCallback(PipelineCallback):
    """Switch the text conditioning between stages inside one sampling pass.

    Build it with :meth:`from_prompts` or :meth:`from_plan`, call the pipeline with
    ``**cb.pipeline_inputs()`` (needed for Flux; optional elsewhere, where ``prompt=`` the
    first stage's text also works) and ``callback_on_step_end=cb``. ``ends`` are fractions of
    the loop's steps (the last is 1.0); ``total_steps`` overrides the loop length they refer to
    (by default ``pipeline.num_timesteps`` at run time). After a run, ``boundaries`` says
    where each switch happened and ``warnings`` lists clamped boundaries.
    """

    def __init__(
        self,
        stages: Sequence[StageEmbeddings],
        ends: Sequence[float],
        *,
        family: Family,
        total_steps: int | None = None,
        switch_steps: Sequence[int] | None = None,
        negative: StageEmbeddings | None = None,
        pipe: Any = None,
        max_sequence_length: int | None = None,
    ) -> None:
        super().__init__(cutoff_step_ratio=None, cutoff_step_index=0)
        if len(stages) != len(ends) or not stages:
            raise ConfigError(f"give one end fraction per stage: {len(stages)} stages, ends {ends}")
        if any(b <= a for a, b in itertools.pairwise(ends)) or ends[-1] != 1.0:
            raise ConfigError(f"stage ends must strictly increase and end at 1.0, got {list(ends)}")
        self.stages = list(stages)
        self.ends = [float(e) for e in ends]
        self.family: Family = family
        self.total_steps = total_steps
        self.switch_steps = list(switch_steps) if switch_steps is not None else None
        self.negative = negative
        self.max_sequence_length = max_sequence_length
        self._pipe = pipe
        self.boundaries: list[Boundary] = []
        self.warnings: list[str] = []
        self.schedule: StageSchedule | None = None
        self._pooled_buffer: torch.Tensor | None = None
        self._inputs_stage = 0
        self._current = 0
        self._last_index = -1
        self._warned_flux = False

    @classmethod
    def from_prompts(
        cls,
        pipe: Any,
        prompts: Sequence[str],
        ends: Sequence[float],
        *,
        total_steps: int | None = None,
        max_sequence_length: int | None = None,
    ) -> StagingCallback:
        """Encode each stage prompt with ``pipe``'s text encoders."""
        family = pipeline_family(pipe)
        stages = [encode_stage(pipe, p, max_sequence_length=max_sequence_length) for p in prompts]
        return cls(
            stages,
            ends,
            family=family,
            total_steps=total_steps,
            pipe=pipe,
            max_sequence_length=max_sequence_length,
        )

    @classmethod
    def from_plan(cls, pipe: Any, plan: Any, **kwargs: Any) -> StagingCallback:
        """Stage an ``lcfix.Plan``: its stage prompts at its stage ends."""
        return cls.from_prompts(
            pipe, [s.prompt for s in plan.stages], [s.end for s in plan.stages], **kwargs
        )

    @property
    def tensor_inputs(self) -> list[str]:
        return list(_SWAPPED[self.family])

    def resolve(self, total: int, scheduler: Any = None) -> StageSchedule:
        """Fix the stage boundaries for a loop of ``total`` steps."""
        if self.switch_steps is not None:
            sched = StageSchedule(
                total=total, stages=tuple(range(len(self.stages))), steps=tuple(self.switch_steps)
            )
        else:
            sched = schedule_steps(self.ends, total)
        self.schedule = sched
        self.warnings = list(sched.warnings)
        self.boundaries = [
            Boundary(k, round(k / total, 6), sigma_fraction(scheduler, k) if scheduler else None)
            for k in sched.steps
        ]
        return sched

    def pipeline_inputs(
        self, num_images: int = 1, *, negative_prompt: str | None = None, device: Any = None
    ) -> dict[str, Any]:
        """The first stage's conditioning, and the callback's tensor inputs, as pipeline
        keyword arguments.

        For Flux this includes the pooled tensor the callback overwrites at each switch, so
        call it again for every pipeline call. SD3 and Flux use given embeddings as they are,
        so the negative prompt is encoded here too (pass it here, not to the pipeline).
        """
        self._inputs_stage = self.schedule.stages[0] if self.schedule is not None else 0
        first = self.stages[self._inputs_stage]
        dev = device if device is not None else first.prompt_embeds.device
        out: dict[str, Any] = {"callback_on_step_end_tensor_inputs": self.tensor_inputs}
        if self.family in ("sd", "sdxl"):
            # These pipelines repeat given embeddings per image themselves.
            out["prompt_embeds"] = first.prompt_embeds.to(dev)
            out["num_images_per_prompt"] = num_images
            if first.pooled is not None:
                out["pooled_prompt_embeds"] = first.pooled.to(dev)
            if negative_prompt is not None:
                out["negative_prompt"] = negative_prompt
            return out
        # Encoded once and repeated per image, as the pipeline does for prompt strings.
        assert first.pooled is not None
        pooled = _match_batch(first.pooled, num_images).to(dev).clone()
        if self.family == "flux":
            self._pooled_buffer = pooled
        out["prompt_embeds"] = _match_batch(first.prompt_embeds, num_images).to(dev)
        out["pooled_prompt_embeds"] = pooled
        out["num_images_per_prompt"] = 1
        if self.family == "sd3" or negative_prompt is not None:
            neg = (
                self.negative
                if self.negative is not None
                else self._encode_negative(negative_prompt)
            )
            out["negative_prompt_embeds"] = _match_batch(neg.prompt_embeds, num_images).to(dev)
            assert neg.pooled is not None
            out["negative_pooled_prompt_embeds"] = _match_batch(neg.pooled, num_images).to(dev)
        return out

    def _encode_negative(self, negative_prompt: str | None) -> StageEmbeddings:
        if self._pipe is None:
            raise ConfigError(
                "this callback was built without a pipeline: pass negative=StageEmbeddings(...)"
            )
        return encode_stage(
            self._pipe, negative_prompt or "", max_sequence_length=self.max_sequence_length
        )

    def callback_fn(
        self, pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        if step_index <= self._last_index or self._last_index < 0:
            # A new pipeline run: fix the boundaries for this loop and its scheduler.
            total = self.total_steps or int(pipeline.num_timesteps)
            self.resolve(total, getattr(pipeline, "scheduler", None))
            self._current = self._inputs_stage
        self._last_index = step_index
        assert self.schedule is not None
        want = self.schedule.stages[self.schedule.stage_at(step_index + 1)]
        if want != self._current:
            self.apply(pipeline, callback_kwargs, want)
            self._current = want
        return callback_kwargs

    def apply(self, pipeline: Any, kw: dict[str, Any], stage: int) -> None:
        """Put stage ``stage``'s conditioning into the loop's tensors (``kw``)."""
        emb = self.stages[stage]
        if "prompt_embeds" not in kw:
            raise UnsupportedError(
                "the pipeline did not hand prompt_embeds to the callback: pass "
                "callback_on_step_end_tensor_inputs=callback.tensor_inputs (Flux pipelines do "
                "not read it from the callback)",
                adapter="diffusers",
            )
        cfg = self.family != "flux" and bool(
            getattr(pipeline, "do_classifier_free_guidance", False)
        )
        kw["prompt_embeds"] = _replace_positive(kw["prompt_embeds"], emb.prompt_embeds, cfg)
        if self.family in ("sdxl", "sd3"):
            key = "add_text_embeds" if self.family == "sdxl" else "pooled_prompt_embeds"
            assert emb.pooled is not None
            kw[key] = _replace_positive(kw[key], emb.pooled, cfg)
        elif self.family == "flux":
            assert emb.pooled is not None
            buf = self._pooled_buffer
            if buf is None:
                if not self._warned_flux:
                    warnings.warn(
                        "Flux: the pooled embedding was not swapped; call the pipeline with "
                        "**callback.pipeline_inputs() so the callback owns it",
                        stacklevel=2,
                    )
                    self._warned_flux = True
                return
            # The loop holds `buf` itself: an in-place copy is the only way to reach it.
            buf.copy_(_match_batch(emb.pooled, buf.shape[0]).to(buf.device, buf.dtype))
