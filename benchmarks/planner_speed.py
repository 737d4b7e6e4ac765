"""Offline planner speed; prints JSON.

    python benchmarks/planner_speed.py [--prompts 5000] [--no-embeddings] [--seed 0]

Figures (goals from the issue in brackets):

- ``offline_prompts_per_s``: plans per second without embeddings, pinned to one CPU core,
  fresh planner, every prompt distinct (>= 2,000/s); ``plan()`` one by one and ``plan_many``;
- ``embeddings``: plans per second with MiniLM, batched through ``plan_many`` (>= 300/s),
  after the one-time costs, which are reported apart: the model load and embedding the
  knowledge base (cold: computed; warm: read from the disk cache);
- ``import_lcfix_ms``: ``import lcfix`` in a fresh interpreter, median of 5 (<= 150 ms), both
  as measured by ``python -X importtime`` (the import alone) and as the wall time of
  ``python -c "import lcfix"`` minus ``python -c "pass"``.

The prompts are synthetic and varied: knowledge-base entities in several sentence shapes,
typical and clashing pairs, style suffixes, and made-up words that the embeddings must
classify. They are generated here; none comes from the labelled sets.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

from lcfix.kb import load_kb

SHAPES = [
    "{a} in a {b}",
    "A {b} of {a}",
    "{a} served in a {b} on a wooden table",
    "A {adj} {a} next to a {b}",
    "{a} poured into a {b}, {style}",
    "A photo of {a} at {b}",
    "A {adj} {a} in front of {b} at sunset",
    "{a} with {b}",
    "{a} growing on a {b}",
    "A {colour} {a} on a {b}",
    "A {a} made of {b}",
    "A {adj} {x} with a {a} and a {b}, {style}",
    "{x} {y} near a {a}",
    "A {x} holding a {a} in the {b}",
]
ADJECTIVES = ["small", "old", "shiny", "giant", "cute", "rustic", "modern", "tiny", "elegant"]
COLOURS = ["red", "blue", "green", "yellow", "purple", "pink", "black", "white", "orange"]
STYLES = [
    "oil painting", "highly detailed, 4k", "studio lighting", "watercolor", "cinematic",
    "digital art, trending on artstation", "35mm photo", "soft morning light",
]  # fmt: skip
SYLLABLES = ["zor", "bla", "qui", "mek", "tra", "vin", "lo", "shu", "pex", "dra", "no", "gri"]


def _pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))


def make_prompts(n: int, seed: int) -> list[str]:
    """``n`` distinct synthetic prompts built from knowledge-base entities and made-up words."""
    kb = load_kb()
    names: dict[str, list[str]] = {}
    for e in kb.entries:
        names.setdefault(e.category, []).append(e.name)
    pools = [names[c] for c in ("beverage", "food", "fruit", "animal", "object", "jewelry")]
    partners = [names[c] for c in ("vessel", "place", "storage", "plant", "material", "outfit")]
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        prompt = rng.choice(SHAPES).format(
            a=rng.choice(rng.choice(pools)),
            b=rng.choice(rng.choice(partners)),
            adj=rng.choice(ADJECTIVES),
            colour=rng.choice(COLOURS),
            style=rng.choice(STYLES),
            x=_pseudo_word(rng),
            y=_pseudo_word(rng),
        )
        out[prompt[0].upper() + prompt[1:]] = None
    return list(out)


def _pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to cpu {cpu}"
    return "not pinned (no sched_setaffinity)"


def bench_offline(prompts: list[str]) -> dict[str, Any]:
    from lcfix.offline import OfflinePlanner

    OfflinePlanner(embeddings=False).plan("warm up the knowledge base")
    planner = OfflinePlanner(embeddings=False)
    t0 = time.perf_counter()
    plans = [planner.plan(p) for p in prompts]
    one_by_one = time.perf_counter() - t0
    planner = OfflinePlanner(embeddings=False)
    t0 = time.perf_counter()
    planner.plan_many(prompts)
    batched = time.perf_counter() - t0
    return {
        "prompts": len(prompts),
        "at_risk_share": round(sum(p.at_risk for p in plans) / len(plans), 3),
        "plan_prompts_per_s": round(len(prompts) / one_by_one),
        "plan_many_prompts_per_s": round(len(prompts) / batched),
        "us_per_prompt": round(one_by_one / len(prompts) * 1e6, 1),
    }


def bench_embeddings(prompts: list[str]) -> dict[str, Any]:
    from lcfix import embeddings
    from lcfix.offline import OfflinePlanner, _EntryIndex

    if not embeddings.available():
        return {"skipped": "the embeddings extra is not installed"}
    import torch

    t0 = time.perf_counter()
    embeddings.load_model()
    model_load = time.perf_counter() - t0
    planner = OfflinePlanner(embeddings=True)
    index = _EntryIndex(planner.kb)
    files = set((embeddings.cache_dir() / "embeddings").glob("*.npy"))
    t0 = time.perf_counter()
    index.search.matrix()
    kb_seconds = time.perf_counter() - t0
    warm = bool(files & set((embeddings.cache_dir() / "embeddings").glob("*.npy")))
    planner._index = index
    t0 = time.perf_counter()
    planner.plan_many(prompts)
    seconds = time.perf_counter() - t0
    return {
        "prompts": len(prompts),
        "unknown_phrases_embedded": len(index.cache),
        "prompts_per_s": round(len(prompts) / seconds),
        "one_time_model_load_s": round(model_load, 2),
        "one_time_kb_embedding_s": round(kb_seconds, 2),
        "kb_embedding_cache": "warm (read from disk)" if warm else "cold (computed, now cached)",
        "kb_labels": len(index.labels),
        "torch_threads": torch.get_num_threads(),
    }


def _run(args: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, done.stderr


def bench_import(repeat: int = 5) -> dict[str, Any]:
    importtime, wall, base = [], [], []
    for _ in range(repeat):
        _, err = _run([sys.executable, "-X", "importtime", "-c", "import lcfix"])
        for line in err.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[2] == "lcfix":
                importtime.append(int(parts[1]) / 1000)
        wall.append(_run([sys.executable, "-c", "import lcfix"])[0] * 1000)
        base.append(_run([sys.executable, "-c", "pass"])[0] * 1000)
    return {
        "importtime_ms_median": round(statistics.median(importtime), 1),
        "wall_minus_bare_python_ms_median": round(
            statistics.median(wall) - statistics.median(base), 1
        ),
        "runs": repeat,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=5000)
    ap.add_argument("--embedding-prompts", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--embeddings", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument(
        "--cold-kb",
        action="store_true",
        help="embed the knowledge base into a fresh cache dir, to time a first run",
    )
    args = ap.parse_args(argv)
    if args.cold_kb:
        import tempfile

        os.environ["LCFIX_CACHE_DIR"] = tempfile.mkdtemp(prefix="lcfix-speed-")
    report: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    report["import_lcfix_ms"] = bench_import()
    prompts = make_prompts(args.prompts, args.seed)
    report["offline_pinning"] = _pin_one_core()
    report["offline"] = bench_offline(prompts)
    if args.embeddings:
        fresh = make_prompts(args.embedding_prompts, args.seed + 1)
        report["embeddings"] = bench_embeddings(fresh)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
