"""The switch-point search (the paper's automated alignment), minus its waste.

Pure logic, no torch: the caller supplies ``probe(step) -> Probe`` (sample with the switch at
``step`` and score the result) and the cost of each probe. The rule is the paper's: the balance
``D = S(fragile) - S(dominant)`` is assumed to grow with the number of stage-1 steps, so bisect
on it; accept a step where both scores reach the threshold or ``|D| < epsilon``; otherwise keep
the probe with the best minimum score. What changes:

- no step is ever probed twice (each probe shrinks the bracket past itself);
- the first probe is the plan's prior, and once the zero of ``D`` is bracketed the next probe
  is interpolated instead of halved;
- a budget (in denoiser image-steps, relative to plain sampling) ends the search early;
- the result is cached per model, scheduler, steps and concept pair (``RatioCache``).

``reference_search`` replays the paper's released procedure (with its momentum quirk and its
cost model) on the same probe function, for comparison.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lcfix.config import cache_dir
from lcfix.errors import CacheError, ConfigError

THRESHOLD = 0.72
EPSILON = 0.01
RANGE = (0.025, 0.475)


@dataclass(frozen=True)
class Probe:
    """The scores of one switch step."""

    step: int
    fragile: float
    dominant: float

    @property
    def balance(self) -> float:
        """``D = S(fragile) - S(dominant)``: positive means the fragile concept dominates."""
        return self.fragile - self.dominant

    @property
    def worst(self) -> float:
        return min(self.fragile, self.dominant)


@dataclass(frozen=True)
class SearchParams:
    """The search's knobs; defaults are the paper's (``run.sh``)."""

    threshold: float = THRESHOLD
    epsilon: float = EPSILON
    start: float = RANGE[0]
    end: float = RANGE[1]


@dataclass(frozen=True)
class SearchOutcome:
    """Where the search settled and why."""

    step: int
    accepted: bool
    reason: str
    """accepted | bracket-exhausted | budget | single-candidate"""
    probes: tuple[Probe, ...]
    cost: float = 0.0

    @property
    def best(self) -> Probe:
        return next(p for p in self.probes if p.step == self.step)

    def trace(self, total: int) -> list[dict[str, Any]]:
        """The probes in order, as JSON-ready dicts."""
        return [
            {
                "step": p.step,
                "fraction": round(p.step / total, 6),
                "fragile": round(p.fragile, 6),
                "dominant": round(p.dominant, 6),
                "balance": round(p.balance, 6),
            }
            for p in self.probes
        ]


def search_range(total: int, params: SearchParams, *, after: int = 0) -> tuple[int, int]:
    """The switch steps the search may probe: ``[start, end]`` of ``total`` steps, at least
    one step after ``after`` (an earlier fixed boundary) and one before the end."""
    lo = max(1, math.ceil(params.start * total - 1e-9), after + 1)
    hi = min(total - 1, math.floor(params.end * total + 1e-9))
    if total < 2 or lo > total - 1:
        raise ConfigError(f"no switch step fits in {total} steps")
    return lo, max(lo, hi)


def prior_step(fraction: float, lo: int, hi: int, total: int) -> int:
    """The plan's stage-1 end as a step inside ``[lo, hi]``."""
    return min(max(math.floor(fraction * total + 0.5 + 1e-9), lo), hi)


def _accepts(p: Probe, params: SearchParams) -> bool:
    both = p.fragile >= params.threshold and p.dominant >= params.threshold
    return both or abs(p.balance) < params.epsilon


def _best(probes: Sequence[Probe]) -> Probe:
    return max(probes, key=lambda p: (p.worst, -abs(p.balance), -p.step))


def _next_step(lo: int, hi: int, seen: Mapping[int, Probe]) -> int:
    below = [p for k, p in seen.items() if k < lo and p.balance < 0]
    above = [p for k, p in seen.items() if k > hi and p.balance > 0]
    if below and above:
        a = max(below, key=lambda p: p.step)
        b = min(above, key=lambda p: p.step)
        # False position: the zero of D on the line through the bracketing probes.
        guess = a.step + (0.0 - a.balance) * (b.step - a.step) / (b.balance - a.balance)
        return min(max(math.floor(guess + 0.5), lo), hi)
    return (lo + hi) // 2


def find_switch_step(
    probe: Callable[[int], Probe],
    lo: int,
    hi: int,
    prior: int,
    *,
    params: SearchParams | None = None,
    cost: Callable[[int], float] | None = None,
    budget: float | None = None,
) -> SearchOutcome:
    """Bisect on the balance between ``lo`` and ``hi`` (inclusive), starting at ``prior``.

    ``cost(step)`` is what probing ``step`` would cost now; the search stops before a probe
    that would take the total past ``budget``. The first probe always runs.
    """
    params = params or SearchParams()
    seen: dict[int, Probe] = {}
    spent = 0.0
    step = min(max(prior, lo), hi)
    reason = "bracket-exhausted"
    while True:
        price = cost(step) if cost is not None else 0.0
        if seen and budget is not None and spent + price > budget + 1e-9:
            reason = "budget"
            break
        spent += price
        result = probe(step)
        seen[step] = result
        if _accepts(result, params):
            return SearchOutcome(step, True, "accepted", tuple(seen.values()), spent)
        if result.balance > 0:
            hi = step - 1  # the fragile concept dominates: fewer stage-1 steps
        else:
            lo = step + 1
        if lo > hi:
            break
        step = _next_step(lo, hi, seen)
    best = _best(list(seen.values()))
    if len(seen) == 1 and reason == "bracket-exhausted":
        reason = "single-candidate"
    return SearchOutcome(best.step, False, reason, tuple(seen.values()), spent)


@dataclass(frozen=True)
class ReferenceOutcome:
    """The paper's procedure replayed: what it evaluated and what that cost."""

    step: int
    evaluated: tuple[int, ...]
    duplicates: int
    trunk_steps: int
    cost_steps: int
    """Per image: the stage-1 trunk plus one refiner pass per evaluation."""


def reference_search(
    probe: Callable[[int], Probe],
    total: int,
    *,
    params: SearchParams | None = None,
    momentum: int = 1,
    momentum_uses: int = 2,
    max_iterations: int = 100,
) -> ReferenceOutcome:
    """The released ``binary_search_loop`` (paper.md §4.2), on any step count.

    Start at ``ceil(0.25 N)`` inside ``[ceil(start N), ceil(end N)]``; move the bound toward the
    weaker concept; next point ``ceil((low+high)/2) + last_dir * momentum`` with the previous
    move's direction; stop on accept or when ``high - low <= 1``; best = max of the minimum
    score. The base pass caches stage-1 latents up to ``denoising_end=0.5``; every evaluation,
    repeated or not, pays for a refiner pass from its step.
    """
    params = params or SearchParams()
    low_bound = max(1, math.ceil(params.start * total))
    high_bound = min(total - 1, math.ceil(params.end * total))
    low, high = low_bound, high_bound
    cur = min(max(math.ceil((params.start + params.end) / 2 * total), low_bound), high_bound)
    last_dir, uses = 0, 0
    evaluated: list[int] = []
    scores: dict[int, Probe] = {}
    chosen: int | None = None
    for _ in range(max_iterations):
        evaluated.append(cur)
        p = scores.get(cur) or probe(cur)
        scores[cur] = p
        if (p.fragile > params.threshold and p.dominant > params.threshold) or abs(
            p.balance
        ) < params.epsilon:
            chosen = cur
            break
        if p.fragile > p.dominant:
            high = cur
        else:
            low = cur
        if high - low <= 1:
            break
        mid = math.ceil((low + high) / 2) + last_dir * momentum
        if last_dir != 0:
            uses += 1
            if uses >= momentum_uses:
                momentum, uses = max(momentum - 1, 0), 0
        cur = min(max(mid, low_bound), high_bound)
        last_dir = -1 if p.fragile > p.dominant else 1
    if chosen is None:
        chosen = _best(list(scores.values())).step
    trunk = math.ceil(total * 0.5)
    cost = trunk + sum(total - k for k in evaluated)
    return ReferenceOutcome(
        step=chosen,
        evaluated=tuple(evaluated),
        duplicates=len(evaluated) - len(set(evaluated)),
        trunk_steps=trunk,
        cost_steps=cost,
    )


def ratio_key(**parts: Any) -> str:
    """A stable key for one search setting (model, scheduler, steps, concept pairs, ...)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class RatioCache:
    """Switch steps found by the search, in sqlite under the cache directory."""

    path: Path = field(default_factory=lambda: cache_dir() / "switch_ratios.sqlite")
    """Default: ``$LCFIX_CACHE_DIR/switch_ratios.sqlite``, else the user cache directory."""

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=30)
            con.execute(
                "CREATE TABLE IF NOT EXISTS ratios (key TEXT PRIMARY KEY, step INTEGER NOT NULL,"
                " total INTEGER NOT NULL, payload TEXT NOT NULL, created REAL NOT NULL)"
            )
            return con
        except (OSError, sqlite3.Error) as exc:
            raise CacheError(f"cannot open the ratio cache {self.path}: {exc}") from exc

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or None."""
        con = self._connect()
        try:
            row = con.execute("SELECT payload FROM ratios WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise CacheError(f"cannot read the ratio cache {self.path}: {exc}") from exc
        finally:
            con.close()
        return dict(json.loads(row[0])) if row else None

    def put(self, key: str, step: int, total: int, **info: Any) -> None:
        """Store (or replace) the step found for ``key``."""
        payload = json.dumps({"step": step, "total": total, **info}, default=str)
        con = self._connect()
        try:
            with con:
                con.execute(
                    "INSERT OR REPLACE INTO ratios VALUES (?, ?, ?, ?, ?)",
                    (key, step, total, payload, time.time()),
                )
        except sqlite3.Error as exc:
            raise CacheError(f"cannot write the ratio cache {self.path}: {exc}") from exc
        finally:
            con.close()

    def count(self) -> int:
        """How many switch steps are stored (0, without creating anything, when none)."""
        return self._existing("SELECT COUNT(*) FROM ratios")

    def clear(self) -> int:
        """Forget every stored switch step; returns how many were removed."""
        return self._existing("DELETE FROM ratios")

    def _existing(self, sql: str) -> int:
        if not self.path.exists():
            return 0
        try:
            con = sqlite3.connect(self.path, timeout=30)
        except sqlite3.Error as exc:
            raise CacheError(f"cannot open the ratio cache {self.path}: {exc}") from exc
        try:
            with con:
                cur = con.execute(sql)
                return int(cur.fetchone()[0]) if sql.startswith("SELECT") else cur.rowcount
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise CacheError(f"cannot use the ratio cache {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise CacheError(f"cannot use the ratio cache {self.path}: {exc}") from exc
        finally:
            con.close()


def outcome_dict(outcome: SearchOutcome, total: int) -> dict[str, Any]:
    """A search outcome as JSON-ready data for ``GenerationResult.extra``."""
    return {
        "step": outcome.step,
        "fraction": round(outcome.step / total, 6),
        "accepted": outcome.accepted,
        "reason": outcome.reason,
        "probes": outcome.trace(total),
        "cost_image_steps": outcome.cost,
    }


__all__ = [
    "EPSILON",
    "RANGE",
    "THRESHOLD",
    "Probe",
    "RatioCache",
    "ReferenceOutcome",
    "SearchOutcome",
    "SearchParams",
    "find_switch_step",
    "outcome_dict",
    "prior_step",
    "ratio_key",
    "reference_search",
    "search_range",
]
