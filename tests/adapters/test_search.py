"""The switch-point search: the pure rule, the paper's procedure replayed, exact branching
from a shared trunk, and the whole search through the adapter on a tiny pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lcfix.adapters.search import (
    Probe,
    RatioCache,
    SearchParams,
    find_switch_step,
    prior_step,
    reference_search,
    search_range,
)
from lcfix.errors import CacheError, ConfigError

# -- the rule, without a model ------------------------------------------------------------


def linear(zero: float, slope: float = 0.02, level: float = 0.7) -> Any:
    def probe(k: int) -> Probe:
        shift = slope * (k - zero) / 2
        return Probe(k, level + shift, level - shift)

    return probe


@settings(max_examples=300, deadline=None)
@given(
    st.integers(2, 60).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.floats(-1, 1), min_size=n, max_size=n),
            st.integers(0, n),
        )
    )
)
def test_no_step_is_probed_twice_and_probes_stay_in_range(
    case: tuple[int, list[float], int],
) -> None:
    total, balances, prior = case
    lo, hi = search_range(total, SearchParams())
    calls: list[int] = []

    def probe(k: int) -> Probe:
        calls.append(k)
        return Probe(k, 0.5 + balances[k] / 2, 0.5 - balances[k] / 2)

    out = find_switch_step(probe, lo, hi, prior)
    assert len(calls) == len(set(calls))
    assert all(lo <= k <= hi for k in calls)
    assert out.step in calls and [p.step for p in out.probes] == calls
    if not out.accepted:  # otherwise the best minimum score wins
        assert out.best.worst == max(p.worst for p in out.probes)


def test_bisection_lands_next_to_the_balance_point() -> None:
    out = find_switch_step(linear(zero=13.4), 1, 19, prior=10)
    assert out.step in (13, 14) and len(out.probes) <= 5


def test_accepts_early_when_both_scores_reach_the_threshold() -> None:
    out = find_switch_step(linear(zero=10.2, level=0.8), 1, 19, prior=10)
    assert out.accepted and out.step == 10 and len(out.probes) == 1


def test_budget_ends_the_search_and_is_respected() -> None:
    costs = {k: float(40 - k) for k in range(1, 20)}
    out = find_switch_step(linear(zero=3.0), 1, 19, prior=10, cost=lambda k: costs[k], budget=60.0)
    assert out.reason == "budget" and out.cost <= 60.0
    assert len(out.probes) == 1  # 30 spent; the next probe (k=5) would cost 35


def test_any_step_count_gives_a_valid_range_and_prior() -> None:
    assert search_range(40, SearchParams()) == (1, 19)
    assert search_range(30, SearchParams()) == (1, 14)
    assert search_range(10, SearchParams(), after=2) == (3, 4)
    assert prior_step(0.25, 1, 14, 30) == 8
    with pytest.raises(ConfigError, match="no switch step"):
        search_range(1, SearchParams())
    for total in (7, 13, 30, 50):
        lo, hi = search_range(total, SearchParams())
        out = find_switch_step(linear(zero=total * 0.3), lo, hi, prior_step(0.25, lo, hi, total))
        assert lo <= out.step <= hi


def test_reference_procedure_repeats_a_step_through_its_momentum() -> None:
    # Fragile dominates at 8 steps and more; the released code then goes 10, 6, 7, 10.
    def probe(k: int) -> Probe:
        return Probe(k, 0.6, 0.5) if k >= 8 else Probe(k, 0.5, 0.6)

    ref = reference_search(probe, 40)
    assert ref.evaluated[:4] == (10, 6, 7, 10) and ref.duplicates >= 1
    assert ref.trunk_steps == 20
    assert ref.cost_steps == 20 + sum(40 - k for k in ref.evaluated)
    ours = find_switch_step(probe, 1, 19, prior=10)
    assert len({p.step for p in ours.probes}) == len(ours.probes)


def test_ratio_cache_round_trip_and_errors(tmp_path: Path) -> None:
    cache = RatioCache(tmp_path / "r.sqlite")
    assert cache.get("k") is None
    cache.put("k", 7, 30, accepted=True)
    assert cache.get("k") == {"step": 7, "total": 30, "accepted": True}
    cache.put("k", 8, 30)
    assert cache.get("k") == {"step": 8, "total": 30}
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(CacheError, match=r"dir\.sqlite"):
        RatioCache(tmp_path / "dir.sqlite").get("k")


# -- branching from a shared trunk ---------------------------------------------------------

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from lcfix.adapters import _tiny  # noqa: E402
from lcfix.adapters._runner import Counter, make_generators, run_pipeline  # noqa: E402
from lcfix.adapters.base import GenerationRequest  # noqa: E402
from lcfix.adapters.local import DiffusersAdapter  # noqa: E402
from lcfix.adapters.scorer import SyntheticScorer  # noqa: E402
from lcfix.adapters.staging import StagingCallback  # noqa: E402
from lcfix.compose import compose_plan  # noqa: E402
from lcfix.plans import ConceptPair, PlannerInfo  # noqa: E402

STEPS = 8
PROMPTS = ["tea cup", "a tea cup of iced coke"]
PLAN = compose_plan(
    "a tea cup of iced coke",
    [ConceptPair(fragile="tea cup", dominant="iced coke", latent="glass")],
    planner=PlannerInfo(name="test", version="1"),
    descriptions={"tea cup": "small ceramic cup", "iced coke": "dark liquid with ice"},
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(pipe: Any, prompts: list[str], k: int | None, counter: Counter, **kw: Any) -> Any:
    ends = [k / STEPS, 1.0] if k else [1.0]
    cb = StagingCallback.from_prompts(pipe, prompts, ends)
    args = {
        "num_inference_steps": STEPS, "height": 32, "width": 32, "output_type": "latent",
        **cb.pipeline_inputs(2),
    }  # fmt: skip
    gens = make_generators([3, 4], "cpu")
    return run_pipeline(pipe, args, staging=cb, generators=gens, n_images=2, counter=counter, **kw)


@pytest.mark.parametrize(
    ("family", "scheduler"),
    [("sd", "ddim"), ("sd", "euler"), ("sd", "dpmpp_2m"), ("sd", "euler_a"), ("flux", None)],
)
def test_a_branch_from_the_trunk_equals_one_uninterrupted_pass(family: str, scheduler: Any) -> None:
    # dpmpp_2m keeps earlier model outputs; euler_a draws fresh noise every step: both need
    # the scheduler and generator state restored, not only the latents.
    pipe = _tiny.tiny_pipeline(family, scheduler)
    whole = _run(pipe, PROMPTS, 3, Counter()).output.images
    counter = Counter()
    trunk = _run(pipe, PROMPTS[:1], None, counter, capture=range(1, 5), stop_at=4)
    assert sorted(trunk.snapshots) == [1, 2, 3, 4] and counter.image_steps == 2 * 4
    branch = _run(pipe, PROMPTS, 3, counter, resume=trunk.snapshots[3]).output.images
    assert torch.equal(branch, whole)
    assert counter.image_steps == 2 * 4 + 2 * (STEPS - 3)
    assert counter.calls == 4 + (STEPS - 3)  # skipped steps never reach the denoiser


# -- the whole search through the adapter --------------------------------------------------


@pytest.fixture(scope="module")
def sd() -> Any:
    return _tiny.tiny_pipeline("sd")


def searcher(pipe: Any, steps: int = STEPS, **options: Any) -> DiffusersAdapter:
    opts = {"num_inference_steps": steps, "guidance_scale": 5.0, "search": "prompt", **options}
    return DiffusersAdapter(
        pipeline=pipe, options=opts, scorer=SyntheticScorer.for_plan(PLAN, target=0.45)
    )


def req(**kw: Any) -> GenerationRequest:
    return GenerationRequest(**{"plan": PLAN, "width": 32, "height": 32, "seed": 3, **kw})


def test_search_costs_at_most_twice_plain_sampling_and_probes_once(sd: Any) -> None:
    result = searcher(sd, output_type="latent", search_images=2).generate(req(num_images=3))
    extra = result.extra
    group = extra["search"]["groups"][0]
    steps = [p["step"] for p in group["probes"]]
    assert len(steps) == len(set(steps)) >= 2
    assert all(group["range"][0] <= k <= group["range"][1] for k in steps)
    assert group["prior"] == steps[0] == 2  # the plan's 0.25 of 8 steps
    # Counted, not estimated: every image-step the denoiser actually ran.
    assert extra["denoiser_image_steps"] == group["cost_image_steps"] + 1 * STEPS
    assert extra["denoiser_image_steps"] <= 2.0 * extra["plain_image_steps"]
    k = extra["switch_steps"][-1]
    assert k == group["step"]
    # The images returned are exactly what plain staging at the chosen step gives (same
    # batch shapes: batched kernels may differ from single ones in the last bits).
    plain = DiffusersAdapter(
        pipeline=sd, options={"num_inference_steps": STEPS, "guidance_scale": 5.0,
                              "output_type": "latent"},
    )  # fmt: skip
    staged_plan = _with_stage1_end(k / STEPS)
    probed = plain.generate(req(num_images=2, plan=staged_plan))
    rest = plain.generate(req(seed=5, plan=staged_plan))
    assert probed.extra["switch_steps"] == [k]
    assert torch.equal(extra["latents"][:2], probed.extra["latents"])
    assert torch.equal(extra["latents"][2:], rest.extra["latents"])


def _with_stage1_end(fraction: float) -> Any:
    return compose_plan(
        PLAN.prompt, PLAN.pairs, planner=PLAN.planner, stage1_end=fraction,
        descriptions={c.name: c.description for c in PLAN.concepts},
    )  # fmt: skip


def test_a_repeated_search_costs_nothing_extra(sd: Any) -> None:
    first = searcher(sd).generate(req())
    second = searcher(sd).generate(req())
    assert second.extra["search"]["groups"][0]["cached"] is True
    assert second.extra["denoiser_image_steps"] == second.extra["plain_image_steps"]
    assert second.extra["switch_steps"] == first.extra["switch_steps"]
    assert second.images[0].data == first.images[0].data


def test_search_is_seeded_and_reproducible(sd: Any) -> None:
    a = searcher(sd, search_cache=False).generate(req())
    b = searcher(sd, search_cache=False).generate(req())
    assert a.extra["search"]["groups"][0]["probes"] == b.extra["search"]["groups"][0]["probes"]
    assert [i.data for i in a.images] == [i.data for i in b.images]


def test_per_image_search_picks_a_step_per_seed(sd: Any) -> None:
    result = searcher(sd, search="image").generate(req(num_images=2, seed=20))
    groups = result.extra["search"]["groups"]
    assert [g["seeds"] for g in groups] == [[20], [21]]
    per_image = result.extra["images"]
    assert [row["switch_steps"][-1] for row in per_image] == [g["step"] for g in groups]
    assert result.extra["denoiser_image_steps"] <= 2.0 * result.extra["plain_image_steps"]


def test_thirty_steps(sd: Any) -> None:
    result = searcher(sd, steps=30).generate(req())
    group = result.extra["search"]["groups"][0]
    assert group["range"] == [1, 14] and group["prior"] == 8
    assert result.extra["denoiser_image_steps"] <= 2 * 30


def test_refiner_mode_search_branches_into_the_refiner() -> None:
    base = _tiny.tiny_pipeline("sdxl")
    ad = DiffusersAdapter(
        pipeline=base,
        refiner=_tiny.tiny_sdxl_refiner(base),
        options={"num_inference_steps": STEPS, "mode": "refiner", "search": "prompt",
                 "output_type": "latent"},
        scorer=SyntheticScorer.for_plan(PLAN, target=0.45),
    )  # fmt: skip
    result = ad.generate(req())
    k = result.extra["switch_steps"][-1]
    staged = DiffusersAdapter(
        pipeline=base, refiner=ad.refiner,
        options={"num_inference_steps": STEPS, "mode": "refiner", "output_type": "latent"},
    ).generate(req(plan=_with_stage1_end(k / STEPS)))  # fmt: skip
    assert torch.equal(result.extra["latents"], staged.extra["latents"])
    assert result.extra["denoiser_image_steps"] <= 2 * STEPS
