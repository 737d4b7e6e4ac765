"""Stage ends (fractions of denoising) as step indices: the one rule every backend follows.

    >>> schedule_steps([0.25, 1.0], 30).steps   # 7.5 rounds half up
    (8,)

The local diffusers backend swaps conditioning on these steps and the ComfyUI export switches
on them too, so a workflow exported for N steps switches where a local run of N steps would.
No torch here: the export must not need the ``diffusion`` extra.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lcfix.errors import ConfigError


@dataclass(frozen=True)
class StageSchedule:
    """Stage boundaries in steps for a given step count, after clamping."""

    total: int
    stages: tuple[int, ...]
    """Indices (into the plan's stages) of the stages that get steps, in order."""
    steps: tuple[int, ...]
    """For each kept stage but the last, the first step of the following stage."""
    warnings: tuple[str, ...] = ()

    def stage_at(self, step: int) -> int:
        """Position (into ``stages``) of the stage that conditions ``step``."""
        return sum(1 for b in self.steps if b <= step)


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5 + 1e-9)


def schedule_steps(ends: Sequence[float], total: int) -> StageSchedule:
    """Map stage-end fractions to step indices for ``total`` steps.

    A stage ending at fraction ``e`` runs until step ``round(e * total)`` (half up), and the
    callback swaps after step ``round(e * total) - 1``. Every stage keeps at least one step;
    boundaries that fall outside are clamped, and when there are more stages than steps the
    earliest stages are dropped. Each change is reported in ``warnings``.
    """
    if total < 1:
        raise ConfigError(f"total steps must be at least 1, got {total}")
    n_stages = len(ends)
    notes: list[str] = []
    keep = list(range(n_stages))
    if n_stages > total:
        keep = keep[n_stages - total :]
        notes.append(
            f"the plan has {n_stages} stages but only {total} steps: stages "
            f"{', '.join(str(i + 1) for i in range(n_stages - total))} were dropped"
        )
    bounds: list[int] = []
    inner = keep[:-1]
    for pos, idx in enumerate(inner):
        want = ends[idx] * total
        k = _round_half_up(want)
        lower = bounds[-1] + 1 if bounds else 1
        upper = total - (len(inner) - pos)
        clamped = min(max(k, lower), upper)
        if clamped != k:
            notes.append(
                f"stage {idx + 1} ends at {ends[idx]:g} of {total} steps ({want:g} steps): "
                f"clamped to step {clamped} ({clamped / total:g})"
            )
        bounds.append(clamped)
    return StageSchedule(
        total=total, stages=tuple(keep), steps=tuple(bounds), warnings=tuple(notes)
    )
