"""Turn detected concept pairs into a full Plan: stages and every rewrite dialect.

Shared by every planner, so a plan reads the same whichever planner found the pairs. No I/O.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

from lcfix.plans import (
    MAX_STAGE1_END,
    MIN_STAGE_END,
    Concept,
    ConceptPair,
    Plan,
    PlannerInfo,
    Rewrites,
    Stage,
)
from lcfix.text import content_words, norm_words, singular, words

DEFAULT_STAGE1_END = 0.25
"""The paper's search starts at 0.25 of the steps; its demo uses 0.2."""


def clamp_ratio(ratio: float) -> float:
    """Clamp a stage-1 end into the paper's search range [0.025, 0.475]."""
    return round(min(max(ratio, MIN_STAGE_END), MAX_STAGE1_END), 4)


def fragile_order(pairs: Sequence[ConceptPair]) -> list[str]:
    """Fragile concepts, most severe first, without repeats (stable for equal severity)."""
    seen: dict[str, None] = {}
    for pair in sorted(pairs, key=lambda p: -p.severity):
        if pair.fragile.lower() not in {k.lower() for k in seen}:
            seen[pair.fragile] = None
    return list(seen)


def build_stages(prompt: str, pairs: Sequence[ConceptPair], stage1_end: float) -> list[Stage]:
    """Stage each fragile concept in cumulatively, then the full prompt.

    One fragile concept gives the paper's two stages. With k fragile concepts the first k
    stages add one concept each and share the stage-1 budget evenly.
    """
    if not pairs:
        return [Stage(prompt=prompt, end=1.0)]
    fragile = fragile_order(pairs)
    total = clamp_ratio(stage1_end)
    k = len(fragile)
    step = total / k
    stages = []
    for i in range(k):
        end = round(max(step * (i + 1), MIN_STAGE_END * (i + 1)), 4)
        stages.append(Stage(prompt=", ".join(fragile[: i + 1]), end=end))
    stages.append(Stage(prompt=prompt, end=1.0))
    return stages


def _article(phrase: str) -> str:
    ws = words(phrase)
    if not ws:
        return ""
    last = ws[-1]
    if singular(last) != last:  # plural: "stripes", "eggs"
        return ""
    return "an " if ws[0][0] in "aeiou" else "a "


def _find_span(text: str, phrase: str) -> tuple[int, int] | None:
    """Character span of ``phrase`` in ``text``, tolerant of case and plural endings."""
    ws = [re.escape(w) for w in words(phrase)]
    if not ws:
        return None
    pattern = r"\b" + r"[\s\-]+".join([*ws[:-1], ws[-1] + r"(?:e?s)?"]) + r"\b"
    m = re.search(pattern, text, flags=re.IGNORECASE)
    return (m.start(), m.end()) if m else None


def natural_rewrite(
    prompt: str, pairs: Sequence[ConceptPair], descriptions: Mapping[str, str]
) -> str:
    """Explicit natural language: name each fragile concept early, describe it, and rule out
    the latent concept that usually replaces it.

    'a tea cup of iced coke' -> 'A tea cup (small ceramic cup with a handle, not a glass) of
    iced coke. The tea cup must be clearly visible.'
    """
    if not pairs:
        return prompt
    text = prompt.strip().rstrip(".")
    lead: list[str] = []
    tail: list[str] = []
    excludable = excludable_latents(prompt, pairs)
    for pair in _unique_fragile(pairs):
        desc = descriptions.get(pair.fragile, "").strip().rstrip(".")
        desc = desc[:1].lower() + desc[1:]
        latent = pair.latent if pair.latent in excludable else None
        inner = ", ".join(
            x for x in (desc, f"not {_article(latent)}{latent}" if latent else "") if x
        )
        span = _find_span(text, pair.fragile)
        if inner and span is not None:
            text = f"{text[: span[1]]} ({inner}){text[span[1] :]}"
        elif inner:
            lead.append(f"{pair.fragile} ({inner})")
        tail.append(f"The {pair.fragile} must be clearly visible")
    out = ": ".join([*lead, text])
    return ". ".join([out[:1].upper() + out[1:], *tail]) + "."


def excludable_latents(prompt: str, pairs: Sequence[ConceptPair]) -> list[str]:
    """The pairs' latent concepts that are safe to rule out: none shares a content word with
    the prompt, so excluding it never excludes something the user asked for."""
    asked = set(norm_words(prompt))
    out: list[str] = []
    for pair in pairs:
        latent = pair.latent
        if latent and latent not in out and not any(w in asked for w in content_words(latent)):
            out.append(latent)
    return out


def weighted_rewrite(prompt: str, pairs: Sequence[ConceptPair]) -> str:
    """Midjourney-style multi-prompt: stress each fragile concept, exclude latent concepts."""
    body = prompt.strip().rstrip(".")
    if not pairs:
        return body
    parts = [f"{f}::2" for f in fragile_order(pairs)] + [f"{body}::1"]
    nos = excludable_latents(prompt, pairs)
    out = " ".join(parts)
    if nos:
        out += " --no " + ", ".join(nos)
    return out


_A1111_SPECIAL = re.compile(r"([\[\]():|\\])")


def a1111_escape(text: str) -> str:
    """Escape the characters A1111's prompt parser treats as syntax."""
    return _A1111_SPECIAL.sub(r"\\\1", text)


def format_when(end: float) -> str:
    """A stage end as A1111's ``when``: always a fraction below 1 (A1111 reads 1 as step 1)."""
    text = f"{end:.4f}".rstrip("0").rstrip(".")
    if text in ("0", "1"):
        text = f"{end:.12f}".rstrip("0")
    return text


def a1111_rewrite(stages: Sequence[Stage]) -> str:
    """Nested ``[from:to:when]`` prompt editing that reproduces the stages."""
    out = a1111_escape(stages[0].prompt)
    for stage, nxt in itertools.pairwise(stages):
        out = f"[{out}:{a1111_escape(nxt.prompt)}:{format_when(stage.end)}]"
    return out


def _unique_fragile(pairs: Sequence[ConceptPair]) -> list[ConceptPair]:
    seen: set[str] = set()
    out = []
    for pair in pairs:
        key = pair.fragile.lower()
        if key not in seen:
            seen.add(key)
            out.append(pair)
    return out


def compose_plan(
    prompt: str,
    pairs: Sequence[ConceptPair],
    *,
    planner: PlannerInfo,
    descriptions: Mapping[str, str] | None = None,
    stage1_end: float | None = None,
    rewrites: Rewrites | None = None,
) -> Plan:
    """Build a valid Plan from detected pairs.

    ``descriptions`` maps concept names to short visual descriptions; ``stage1_end`` is the
    prior for the end of stage 1 (clamped into [0.025, 0.475]); ``rewrites`` overrides the
    generated dialects (an LLM may write better ones).
    """
    descriptions = dict(descriptions or {})
    pairs = list(pairs)
    stages = build_stages(prompt, pairs, DEFAULT_STAGE1_END if stage1_end is None else stage1_end)
    names: list[str] = []
    for pair in pairs:
        for name in (pair.fragile, pair.dominant):
            if name.lower() not in {n.lower() for n in names}:
                names.append(name)
    for name in descriptions:
        if name.lower() not in {n.lower() for n in names}:
            names.append(name)
    concepts = tuple(Concept(name=n, description=descriptions.get(n, "")) for n in names)
    if rewrites is None:
        rewrites = Rewrites(
            natural=natural_rewrite(prompt, pairs, descriptions),
            weighted=weighted_rewrite(prompt, pairs),
            a1111=a1111_rewrite(stages),
        )
    return Plan(
        prompt=prompt,
        at_risk=bool(pairs),
        pairs=tuple(pairs),
        concepts=concepts,
        stages=tuple(stages),
        rewrites=rewrites,
        planner=planner,
    )
