"""One pipeline call with staging, resumable from a snapshot: the engine behind the search.

A run can stop early (the trunk), capture snapshots of the loop state after chosen steps, and
resume from a snapshot. Resuming keeps the pipeline's own loop: for the steps before the
snapshot the denoiser is not run (it returns zeros, which the scheduler steps cheaply), and
after the last skipped step the latents, the scheduler's state and every generator's state are
restored from the snapshot. The rest of the run is then exactly what a single uninterrupted
pass would compute, for deterministic and ancestral samplers alike.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.callbacks import PipelineCallback

from lcfix.adapters.staging import StagingCallback, denoiser


@dataclass
class Snapshot:
    """The loop state entering step ``step``."""

    step: int
    latents: torch.Tensor
    scheduler_state: dict[str, Any]
    generator_states: list[torch.Tensor]


@dataclass
class Counter:
    """Denoiser work actually done: forward calls, and images times steps."""

    calls: int = 0
    image_steps: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"calls": self.calls, "image_steps": self.image_steps}


@dataclass
class RunResult:
    output: Any
    final_latents: torch.Tensor | None
    snapshots: dict[int, Snapshot] = field(default_factory=dict)
    boundaries: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _RunCallback(PipelineCallback):
    def __init__(
        self,
        staging: StagingCallback | None,
        *,
        generators: Sequence[torch.Generator],
        n_images: int,
        counter: Counter,
        resume: Snapshot | None = None,
        capture: Collection[int] = (),
        stop_at: int | None = None,
        total: int | None = None,
    ) -> None:
        super().__init__(cutoff_step_ratio=None, cutoff_step_index=0)
        self.staging = staging
        self.generators = list(generators)
        self.n_images = n_images
        self.counter = counter
        self.resume = resume
        self.capture = set(capture)
        self.stop_at = stop_at
        self.total = total
        self.step = 0  # the loop index about to run
        self.snapshots: dict[int, Snapshot] = {}
        self.final_latents: torch.Tensor | None = None

    @property
    def tensor_inputs(self) -> list[str]:
        names = ["latents"]
        if self.staging is not None:
            names += [n for n in self.staging.tensor_inputs if n not in names]
        return names

    @property
    def skipping(self) -> bool:
        return self.resume is not None and self.step < self.resume.step

    def callback_fn(
        self, pipeline: Any, step_index: int, timestep: Any, kw: dict[str, Any]
    ) -> dict[str, Any]:
        if not self.skipping:
            self.counter.image_steps += self.n_images
        if self.resume is not None and step_index == self.resume.step - 1:
            snap = self.resume
            kw["latents"] = snap.latents.clone()
            pipeline.scheduler.__dict__.update(copy.deepcopy(snap.scheduler_state))
            for gen, state in zip(self.generators, snap.generator_states, strict=True):
                gen.set_state(state)
        self.step = step_index + 1
        if self.staging is not None:
            kw = self.staging(pipeline, step_index, timestep, kw)
        if self.step in self.capture:
            self.snapshots[self.step] = Snapshot(
                self.step,
                kw["latents"].clone(),
                copy.deepcopy(pipeline.scheduler.__dict__),
                [g.get_state() for g in self.generators],
            )
        if self.stop_at is not None and self.step >= self.stop_at:
            pipeline._interrupt = True  # diffusers' documented way to end the loop early
        total = self.total or int(pipeline.num_timesteps)
        if self.step == total:
            self.final_latents = kw["latents"]
        return kw


@contextmanager
def counting_denoiser(
    pipe: Any, counter: Counter, run: _RunCallback | None = None
) -> Iterator[None]:
    """Count the denoiser's forward calls; while ``run`` skips, return zeros instead.

    Sets an instance ``forward`` for the duration of the call and puts back whatever was there
    (accelerate's offload hooks also live on the instance).
    """
    module = denoiser(pipe)
    had_own = "forward" in module.__dict__
    previous = module.__dict__.get("forward")
    inner = module.forward
    out_channels = getattr(getattr(module, "config", None), "out_channels", None)

    def forward(*args: Any, **kwargs: Any) -> Any:
        if run is not None and run.skipping:
            sample = kwargs.get("hidden_states", kwargs.get("sample"))
            if sample is None:
                sample = args[0]
            shape = list(sample.shape)
            if sample.dim() == 4 and out_channels:
                shape[1] = int(out_channels)
            return (torch.zeros(shape, dtype=sample.dtype, device=sample.device),)
        counter.calls += 1
        return inner(*args, **kwargs)

    module.forward = forward
    try:
        yield
    finally:
        if had_own:
            module.forward = previous
        else:
            del module.forward


def run_pipeline(
    pipe: Any,
    kwargs: dict[str, Any],
    *,
    staging: StagingCallback | None,
    generators: Sequence[torch.Generator],
    n_images: int,
    counter: Counter,
    resume: Snapshot | None = None,
    capture: Collection[int] = (),
    stop_at: int | None = None,
    total: int | None = None,
) -> RunResult:
    """Call ``pipe(**kwargs)`` with staging, snapshots, an early stop or a resume point."""
    run = _RunCallback(
        staging,
        generators=generators,
        n_images=n_images,
        counter=counter,
        resume=resume,
        capture=capture,
        stop_at=stop_at,
        total=total,
    )
    with counting_denoiser(pipe, counter, run), torch.no_grad():
        kwargs = {**kwargs, "callback_on_step_end_tensor_inputs": run.tensor_inputs}
        out = pipe(**kwargs, generator=list(generators), callback_on_step_end=run)
    return RunResult(
        output=out,
        final_latents=run.final_latents,
        snapshots=run.snapshots,
        boundaries=list(staging.boundaries) if staging is not None else [],
        warnings=list(staging.warnings) if staging is not None else [],
    )


def make_generators(seeds: Sequence[int], device: Any) -> list[torch.Generator]:
    """One generator per image, so image ``i`` can be regenerated alone from its seed."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type not in ("cpu", "cuda"):
        dev = torch.device("cpu")  # MPS generators are not supported everywhere: draw on CPU
    return [torch.Generator(device=dev).manual_seed(int(s)) for s in seeds]
