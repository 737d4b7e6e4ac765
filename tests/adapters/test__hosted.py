"""The pure choices hosted adapters share: rewrite, staging, latents, aspect ratios, audit."""

from __future__ import annotations

import pytest

from lcfix.adapters._hosted import (
    audit_revised,
    fragile_stage,
    latent_terms,
    nearest_ratio,
    negative_with_latents,
    prompt_for,
    wants_emulation,
)
from lcfix.compose import compose_plan
from lcfix.errors import UnsupportedError
from lcfix.plans import ConceptPair, PlannerInfo
from lcfix.testing import sample_plan

PLAN = sample_plan()
SAFE = sample_plan("a red bicycle")


def test_prompt_for_each_dialect() -> None:
    assert prompt_for(PLAN, "natural") == PLAN.rewrites.natural
    assert prompt_for(PLAN, "weighted") == PLAN.rewrites.weighted
    assert prompt_for(PLAN, "a1111") == PLAN.rewrites.a1111
    assert {prompt_for(SAFE, d) for d in ("natural", "weighted", "a1111")} == {"a red bicycle"}


def test_latents_never_exclude_what_the_user_asked_for() -> None:
    assert latent_terms(PLAN) == ["glass"]
    assert negative_with_latents("blurry", PLAN) == "blurry, glass"
    assert negative_with_latents("a glass", PLAN) == "a glass"
    assert negative_with_latents(None, SAFE) is None
    pair = ConceptPair(fragile="tea cup", dominant="iced coke", latent="glass")
    asked = compose_plan(
        "a tea cup of iced coke next to a glass", [pair], planner=PlannerInfo(name="t", version="0")
    )
    assert latent_terms(asked) == []


def test_audit_flags_each_dropped_concept() -> None:
    assert audit_revised(PLAN, None, adapter="x") == []
    assert audit_revised(PLAN, "A teacup full of iced coke", adapter="x") == []
    (warning,) = audit_revised(PLAN, "a glass of iced coke", adapter="x")
    assert "'tea cup'" in warning and "'iced coke'" not in warning


@pytest.mark.parametrize(
    ("mode", "auto", "plan", "expected"),
    [
        ("emulate", False, PLAN, True),
        ("auto", True, PLAN, True),
        ("auto", False, PLAN, False),
        ("off", True, PLAN, False),
        ("emulate", True, SAFE, False),
    ],
)
def test_wants_emulation(mode: str, auto: bool, plan: object, expected: bool) -> None:
    assert wants_emulation(mode, plan, adapter="x", auto=auto) is expected  # type: ignore[arg-type]


def test_native_staging_is_not_hosted() -> None:
    with pytest.raises(UnsupportedError, match="inside sampling"):
        wants_emulation("native", PLAN, adapter="x", auto=True)


def test_fragile_stage_of_a_multi_concept_plan() -> None:
    pairs = [
        ConceptPair(fragile="tea cup", dominant="iced coke", severity=5),
        ConceptPair(fragile="straw hat", dominant="snowman", severity=3),
    ]
    plan = compose_plan(
        "a tea cup of iced coke and a snowman in a straw hat",
        pairs,
        planner=PlannerInfo(name="t", version="0"),
    )
    stage = fragile_stage(plan)
    assert stage.prompt == "tea cup, straw hat" and stage.end == plan.stages[-2].end


@pytest.mark.parametrize(
    ("w", "h", "ratio", "exact"),
    [
        (1024, 1024, "1:1", True),
        (1920, 1080, "16:9", True),
        (1000, 700, "3:2", False),
        (512, 900, "9:16", False),
    ],
)
def test_nearest_ratio(w: int, h: int, ratio: str, exact: bool) -> None:
    choices = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
    assert nearest_ratio(w, h, choices) == (ratio, exact)
