"""Planner quality on a labelled prompt set; prints JSON.

    python benchmarks/planner_quality.py DATA.jsonl [--embeddings | --no-embeddings] [--errors]

DATA rows: {"prompt", "at_risk", "fragile", "dominant", "latent", "pattern"} (extra fields
ignored). Figures:

- at-risk precision, recall and F1, with "at risk" as the positive class;
- fragile accuracy, over the rows labelled at risk: the row counts as correct when the planner
  says at risk AND its first fragile concept (the one staged first: ``plan.pairs[0]``, the most
  severe) matches the gold fragile concept. Two phrases match when either one's content words
  are all among the other's (``lcfix.text.phrase_in`` in either direction: "teapot" matches
  "porcelain teapot") or when their head nouns (last content word, singular) are equal;
- ``fragile_any_accuracy``: the same, but any predicted fragile concept may match;
- ``dominant_accuracy``: the same test on the dominant concept of the matching pair;
- counts, and a per-pattern breakdown (recall and fragile accuracy per gold pattern; false
  positives under "none").

``--errors`` also lists every wrong row on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from lcfix.errors import LcfixError
from lcfix.offline import OfflinePlanner
from lcfix.plans import Plan
from lcfix.text import content_words, phrase_in


def same_concept(predicted: str, gold: str) -> bool:
    """The matching rule documented above."""
    if phrase_in(predicted, gold) or phrase_in(gold, predicted):
        return True
    p, g = content_words(predicted), content_words(gold)
    return bool(p) and bool(g) and p[-1] == g[-1]


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def evaluate(rows: list[dict[str, Any]], plans: list[Plan | LcfixError]) -> dict[str, Any]:
    tp = fp = fn = tn = 0
    frag_ok = frag_any = dom_ok = errors = 0
    per: dict[str, dict[str, int]] = {}
    wrong: list[dict[str, Any]] = []
    for row, plan in zip(rows, plans, strict=True):
        gold = bool(row.get("at_risk"))
        pattern = str(row.get("pattern") or ("none" if not gold else "other"))
        stats = per.setdefault(pattern, {"n": 0, "flagged": 0, "fragile_ok": 0})
        stats["n"] += 1
        if isinstance(plan, LcfixError):
            errors += 1
            pred = False
            pairs = []
        else:
            pred = plan.at_risk
            pairs = list(plan.pairs)
        stats["flagged"] += int(pred)
        if gold and pred:
            tp += 1
        elif pred:
            fp += 1
        elif gold:
            fn += 1
        else:
            tn += 1
        first_ok = False
        if gold and pairs:
            gf = str(row.get("fragile") or "")
            first_ok = same_concept(pairs[0].fragile, gf)
            hit = next((p for p in pairs if same_concept(p.fragile, gf)), None)
            frag_ok += first_ok
            stats["fragile_ok"] += first_ok
            frag_any += hit is not None
            if hit is not None and row.get("dominant"):
                dom_ok += same_concept(hit.dominant, str(row["dominant"]))
        if gold != pred or (gold and not first_ok):
            wrong.append(
                {
                    "id": row.get("id"),
                    "prompt": row["prompt"],
                    "gold": [row.get("fragile"), row.get("pattern")] if gold else None,
                    "predicted": [[p.fragile, p.dominant, p.pattern] for p in pairs],
                }
            )
    positives = tp + fn
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, positives)
    f1 = round(2 * precision * recall / (precision + recall), 4) if precision and recall else 0.0
    return {
        "rows": len(rows),
        "at_risk_precision": precision,
        "at_risk_recall": recall,
        "at_risk_f1": f1,
        "fragile_accuracy": _ratio(frag_ok, positives),
        "fragile_any_accuracy": _ratio(frag_any, positives),
        "dominant_accuracy": _ratio(dom_ok, positives),
        "counts": {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "errors": errors},
        "per_pattern": {
            k: {
                "n": v["n"],
                "flagged": v["flagged"],
                "fragile_ok": v["fragile_ok"],
            }
            for k, v in sorted(per.items())
        },
        "_wrong": wrong,
    }


def load_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row, dict) or "prompt" not in row:
            raise SystemExit(f"{path}:{n}: each line must be an object with a 'prompt'")
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--embeddings", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--errors", action="store_true", help="list wrong rows on stderr")
    args = ap.parse_args(argv)
    rows = load_rows(args.data)
    t0 = time.perf_counter()
    planner = OfflinePlanner(embeddings=args.embeddings)
    plans = planner.plan_many([r["prompt"] for r in rows])
    seconds = time.perf_counter() - t0
    report = evaluate(rows, plans)
    wrong = report.pop("_wrong")
    report = {
        "data": str(args.data),
        "embeddings": planner.embeddings,
        "kb_version": planner.kb.version,
        **report,
        "seconds": round(seconds, 3),
    }
    print(json.dumps(report, indent=2))
    if args.errors:
        for w in wrong:
            print(json.dumps(w), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
