"""Denoiser work of staging and of the switch-point search, on tiny pipelines; prints JSON.

    python benchmarks/staging_cost.py --json                 # SD 1.x layout, 20 steps, 4 images
    python benchmarks/staging_cost.py --json --family sdxl --steps 40 --cases 8

Unit: denoiser image-steps (one image through one sampling step; a CFG pair counts once),
counted by the adapter at the denoiser, not estimated. For each case (a seed, and a balance
point for the synthetic scorer spread over the search range) it runs:

- ``plain``: the full prompt only;
- ``staged``: the plan's two stages at its prior switch (must equal plain);
- ``search``: ``search="prompt"``, cache off, scoring ``--search-images`` seeds per probe;
- ``reference``: the paper's released procedure (``lcfix.adapters.search.reference_search``)
  replayed on the same scorer and the same images (each step it evaluates is scored on the
  images staged at that step), costed as the paper runs it: a base pass to 0.5 of the steps,
  then a refiner pass from every evaluated step, repeats included.

Goal (issue 6): ``search_ratio`` (search / plain, final images included) <= 2.0; the paper's
procedure costs 1.25-5x. Two scorers: a deterministic synthetic one whose balance grows with
the switch step, and the real CLIP code path on a tiny random CLIP.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from io import BytesIO
from typing import Any

PAIRS = [("tea cup", "iced coke")]


def _plan(prompt: str, pairs: list[tuple[str, str]], stage1_end: float | None = None) -> Any:
    from lcfix.compose import compose_plan
    from lcfix.plans import ConceptPair, PlannerInfo

    return compose_plan(
        prompt,
        [ConceptPair(fragile=f, dominant=d) for f, d in pairs],
        planner=PlannerInfo(name="benchmark", version="1"),
        stage1_end=stage1_end,
        descriptions={"tea cup": "small ceramic cup with a handle",
                      "iced coke": "dark brown liquid with ice cubes"},
    )  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from PIL import Image

    from lcfix.adapters import _tiny
    from lcfix.adapters.base import GenerationRequest
    from lcfix.adapters.local import DiffusersAdapter
    from lcfix.adapters.scorer import (
        INFO_SEED,
        INFO_STEP,
        INFO_TOTAL,
        CLIPScorer,
        SyntheticScorer,
        concept_scores,
    )
    from lcfix.adapters.search import Probe, SearchParams, reference_search

    if args.threads:
        torch.set_num_threads(args.threads)
    prompt = "a tea cup of iced coke"
    plan = _plan(prompt, PAIRS)
    plain_plan = _plan(prompt, [])
    pipe = _tiny.tiny_pipeline(args.family)
    size = _tiny.SIZES[args.family]
    steps = args.steps
    base_opts = {"num_inference_steps": steps, "search_cache": False}

    def case(seed: int, scorer: Any, n: int, search_images: int) -> dict[str, Any]:
        def request(p: Any, seed: int) -> Any:
            return GenerationRequest(plan=p, seed=seed, num_images=n, width=size, height=size)

        out: dict[str, Any] = {"seed": seed}
        for name, p, opts in (
            ("plain", plain_plan, {}),
            ("staged", plan, {}),
            ("search", plan, {"search": "prompt", "search_images": search_images}),
        ):
            ad = DiffusersAdapter(pipeline=pipe, options={**base_opts, **opts}, scorer=scorer)
            t0 = time.perf_counter()
            res = ad.generate(request(p, seed))
            out[f"{name}_s"] = time.perf_counter() - t0
            out[f"{name}_calls"] = res.extra["denoiser_image_steps"]
            out[f"{name}_forward_calls"] = res.extra["denoiser_calls"]
            if name == "search":
                group = res.extra["search"]["groups"][0]
                probes = [q["step"] for q in group["probes"]]
                out.update(
                    probes=probes,
                    duplicate_probes=len(probes) - len(set(probes)),
                    accepted=group["accepted"],
                    switch_step=group["step"],
                    reason=group["reason"],
                )
        # The paper's procedure on the same scorer and images: score the images staged at k.
        memo: dict[int, Probe] = {}
        ad = DiffusersAdapter(pipeline=pipe, options=base_opts, scorer=scorer)

        def probe(k: int) -> Probe:
            if k not in memo:
                res = ad.generate(request(_plan(prompt, PAIRS, k / steps), seed))
                images = []
                for i, im in enumerate(res.images):
                    pil = Image.open(BytesIO(im.data))
                    pil.load()
                    pil.info.update({INFO_STEP: k, INFO_TOTAL: steps, INFO_SEED: seed + i})
                    images.append(pil)
                scores = concept_scores(scorer, images, plan.concepts)
                memo[k] = Probe(k, scores["tea cup"], scores["iced coke"])
            return memo[k]

        t0 = time.perf_counter()
        ref = reference_search(probe, steps, params=SearchParams())
        out["reference_probe_s"] = time.perf_counter() - t0
        out["reference_calls"] = ref.cost_steps * n
        out["reference_evaluated"] = list(ref.evaluated)
        out["reference_duplicate_probes"] = ref.duplicates
        out["reference_step"] = ref.step
        return out

    def summary(rows: list[dict[str, Any]], n: int, search_images: int) -> dict[str, Any]:
        total = {k: sum(r[k] for r in rows) for k in
                 ("plain_calls", "staged_calls", "search_calls", "reference_calls")}  # fmt: skip
        ratios = [r["search_calls"] / r["plain_calls"] for r in rows]
        ref_ratios = [r["reference_calls"] / r["plain_calls"] for r in rows]
        quality = {}
        if all("target_step" in r for r in rows):
            # How far each procedure's chosen step lands from the synthetic balance point.
            quality = {
                "search_step_error": round(
                    sum(abs(r["switch_step"] - r["target_step"]) for r in rows) / len(rows), 3
                ),
                "reference_step_error": round(
                    sum(abs(r["reference_step"] - r["target_step"]) for r in rows) / len(rows), 3
                ),
            }
        return {
            "images": n,
            "search_images": search_images,
            **total,
            **quality,
            "search_ratio": round(total["search_calls"] / total["plain_calls"], 4),
            "reference_ratio": round(total["reference_calls"] / total["plain_calls"], 4),
            "search_ratio_max": round(max(ratios), 4),
            "reference_ratio_range": [round(min(ref_ratios), 4), round(max(ref_ratios), 4)],
            "duplicate_probes": sum(r["duplicate_probes"] for r in rows),
            "reference_duplicate_probes": sum(r["reference_duplicate_probes"] for r in rows),
            "mean_probes": round(sum(len(r["probes"]) for r in rows) / len(rows), 3),
            "reference_mean_evaluations": round(
                sum(len(r["reference_evaluated"]) for r in rows) / len(rows), 3
            ),
            "accepted": sum(bool(r["accepted"]) for r in rows),
            "wall_s": {
                k: round(sum(r[f"{k}_s"] for r in rows), 3)
                for k in ("plain", "staged", "search", "reference_probe")
            },
            "cases": [
                {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                for r in rows
            ],
        }

    started = time.perf_counter()
    lo, hi = args.target_range

    def synthetic(n: int, search_images: int, seed0: int) -> dict[str, Any]:
        rows = []
        for c in range(args.cases):
            target = lo + (hi - lo) * (c / max(1, args.cases - 1))
            scorer = SyntheticScorer.for_plan(plan, target=target, jitter=0.0)
            row = case(seed0 + c, scorer, n, search_images)
            rows.append({**row, "target": round(target, 4), "target_step": target * steps})
        return summary(rows, n, search_images)

    default = synthetic(args.images, args.search_images, 100)
    subset = synthetic(args.subset[0], args.subset[1], 300) if args.subset[0] else None
    model, proc = _tiny.tiny_clip()
    clip = CLIPScorer(clip_model=model, processor=proc, device="cpu")
    clip_rows = [
        case(200 + c, clip, args.images, args.search_images) for c in range(args.clip_cases)
    ]
    keys = (
        "plain_calls", "staged_calls", "search_calls", "reference_calls", "search_ratio",
        "reference_ratio", "duplicate_probes", "reference_duplicate_probes", "wall_s",
    )  # fmt: skip
    return {
        "unit": "denoiser image-steps (one image through one step; a CFG pair counts once)",
        "family": args.family,
        "steps": steps,
        "images": args.images,
        "search_images": args.search_images,
        "search_budget": 2.0,
        **{k: default[k] for k in keys},
        "synthetic": default,
        "synthetic_subset": subset,
        "clip": summary(clip_rows, args.images, args.search_images),
        "total_s": round(time.perf_counter() - started, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (default)")
    parser.add_argument("--family", default="sd", choices=["sd", "sdxl", "sd3", "flux"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--search-images", type=int, default=4)
    parser.add_argument("--cases", type=int, default=6, help="synthetic cases")
    parser.add_argument(
        "--subset", type=int, nargs=2, default=(8, 2), metavar=("IMAGES", "SEARCH_IMAGES"),
        help="a second synthetic run scoring only some seeds per probe (0 0: skip)",
    )  # fmt: skip
    parser.add_argument("--clip-cases", type=int, default=2)
    parser.add_argument(
        "--target-range", type=float, nargs=2, default=(0.05, 0.45),
        help="balance points of the synthetic cases, as fractions of the steps",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LCFIX_CACHE_DIR", tempfile.mkdtemp(prefix="lcfix-bench-"))
    result = run(args)
    json.dump(result, sys.stdout, indent=None if args.json else 2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
