from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lcfix.a1111 import (
    has_prompt_editing,
    parse_a1111,
    parse_schedule,
    schedule_steps,
    to_a1111,
)
from lcfix.compose import compose_plan
from lcfix.errors import InputError
from lcfix.plans import ConceptPair, PlannerInfo, Stage, plan_problems
from lcfix.text import content_words


def _stages(text: str, steps: int | None = None) -> list[tuple[str, float]]:
    return [(s.prompt, s.end) for s in parse_schedule(text, steps=steps)]


def test_from_to_when_fraction() -> None:
    assert _stages("a [tea cup:glass:0.3] of iced coke") == [
        ("a tea cup of iced coke", 0.3),
        ("a glass of iced coke", 1.0),
    ]


def test_to_when_adds_and_from_when_removes() -> None:
    assert _stages("a cat [wearing a hat:0.4]") == [("a cat", 0.4), ("a cat wearing a hat", 1.0)]
    assert _stages("a cat [in the rain::0.5] at night") == [
        ("a cat in the rain at night", 0.5),
        ("a cat at night", 1.0),
    ]


def test_nested_matches_the_webui_doctest() -> None:
    # modules/prompt_parser.py: a[b:[c:d:2]:1]e -> [[1,'abe'],[2,'ace'],[10,'ade']]
    assert _stages("a[b:[c:d:2]:1]e", steps=10) == [("abe", 0.1), ("ace", 0.2), ("ade", 1.0)]


def test_absolute_steps_need_steps() -> None:
    assert _stages("[dog:cat:5]", steps=20) == [("dog", 0.25), ("cat", 1.0)]
    with pytest.raises(InputError, match="absolute step"):
        parse_schedule("[dog:cat:5]")


def test_when_zero_and_past_the_end() -> None:
    assert _stages("[dog:cat:0]") == [("cat", 1.0)]
    assert _stages("[dog:cat:30]", steps=20) == [("dog", 1.0)]


def test_escapes_are_literal() -> None:
    assert _stages(r"a \[note\] \(x\) \: y\\z") == [(r"a [note] (x) : y\z", 1.0)]


def test_emphasis_keeps_text_and_drops_weight() -> None:
    assert _stages("a (red:1.2) car, [blurry], ((sharp))") == [("a red car, blurry, sharp", 1.0)]
    assert _stages("(style: anime) cat") == [("style: anime cat", 1.0)]


def test_identical_consecutive_segments_merge() -> None:
    assert _stages("[a cat:a cat:0.3] [hat:0.6]") == [("a cat", 0.6), ("a cat hat", 1.0)]


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("a [b", 3, "unclosed '\\['"),
        ("a ] b", 3, "unmatched"),
        ("x (y", 3, "unclosed '\\('"),
        ("[cat:dog]", 6, "expected a number"),
        ("[a:b:c:0.2]", 7, "too many ':'"),
        ("[parrot|owl]", 8, "alternation"),
        ("a cat AND a dog", 7, "AND"),
    ],
)
def test_malformed_syntax_names_the_column(text: str, column: int, reason: str) -> None:
    with pytest.raises(InputError) as info:
        parse_schedule(text)
    msg = str(info.value)
    assert re.search(reason, msg)
    assert f"column {column}:" in msg
    caret_line = msg.splitlines()[-1]
    assert caret_line.index("^") - 2 == column - 1  # the caret sits under the column


def test_empty_stage_is_an_error() -> None:
    with pytest.raises(InputError, match=r"empty up to 0\.3"):
        parse_schedule("[cat:0.3]")


def test_plan_from_moce_style_prompt() -> None:
    plan = parse_a1111("[tea cup:a tea cup of iced coke:0.25]")
    assert plan.prompt == "a tea cup of iced coke"
    assert plan.at_risk
    assert plan.planner.name == "a1111"
    assert [(p.fragile, p.dominant) for p in plan.pairs] == [("tea cup", "iced coke")]
    assert plan.switch_points == [0.25]
    assert plan.rewrites.a1111 == "[tea cup:a tea cup of iced coke:0.25]"
    assert "tea cup" in plan.rewrites.natural
    assert plan_problems(plan) == []


def test_plain_prompt_is_a_one_stage_plan() -> None:
    plan = parse_a1111("a red fox in an autumn forest")
    assert not plan.at_risk
    assert plan.pairs == ()
    assert [s.end for s in plan.stages] == [1.0]


def test_pure_replacement_still_gives_a_valid_plan() -> None:
    plan = parse_a1111("[dog:cat:0.5]")
    assert plan.prompt == "cat"
    assert [s.prompt for s in plan.stages] == ["dog", "cat"]
    assert plan_problems(plan) == []


def test_has_prompt_editing() -> None:
    assert has_prompt_editing("a [cup:glass:0.3]")
    assert not has_prompt_editing(r"a \[cup:glass\] photo")
    assert not has_prompt_editing("a photo: a cat")


def test_schedule_steps_counts_like_webui() -> None:
    plan = parse_a1111("[tea cup:a tea cup of iced coke:0.25]")
    assert schedule_steps(plan, 20) == [("tea cup", 1, 5), ("a tea cup of iced coke", 6, 20)]


def test_compose_plan_round_trips() -> None:
    pairs = [
        ConceptPair(fragile="tea cup", dominant="iced coke", latent="glass", severity=5),
        ConceptPair(fragile="lemon", dominant="iced coke", severity=3),
    ]
    plan = compose_plan(
        "a tea cup of iced coke with a lemon", pairs, planner=PlannerInfo(name="x", version="1")
    )
    back = parse_a1111(to_a1111(plan))
    assert back.stages == plan.stages
    assert back.prompt == plan.prompt
    assert back.fragile == ["tea cup", "lemon"]


# --- property tests: parse(emit(stages)) == stages ---------------------------------------

_WORDS = ["cat", "tea", "cup", "coke", "Glass", "red", "of", "a", "the", "fox", "AND", "and"]
_PUNCT = ["[", "]", "(", ")", ":", "|", "\\", ",", "-", "'"]


@st.composite
def _stage_text(draw: st.DrawFn) -> str:
    tokens = draw(
        st.lists(st.sampled_from(_WORDS) | st.sampled_from(_PUNCT), min_size=1, max_size=8)
    )
    joiners = draw(st.lists(st.sampled_from([" ", ""]), min_size=len(tokens), max_size=len(tokens)))
    text = "".join(t + j for t, j in zip(tokens, joiners, strict=True))
    text = " ".join(text.split())
    assume(text)
    assume(not re.search(r"\bAND\b", text))  # A1111 has no escape for AND
    return text


@st.composite
def _stage_lists(draw: st.DrawFn) -> list[Stage]:
    n = draw(st.integers(min_value=1, max_value=4))
    texts = draw(st.lists(_stage_text(), min_size=n, max_size=n))
    assume(all(a != b for a, b in itertools.pairwise(texts)))
    ends = sorted(
        draw(st.sets(st.integers(min_value=1, max_value=9999), min_size=n - 1, max_size=n - 1))
    )
    return [
        Stage(prompt=t, end=e / 10000 if i < n - 1 else 1.0)
        for i, (t, e) in enumerate(zip(texts, [*ends, 10000], strict=True))
    ]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(_stage_lists())
def test_schedule_round_trip(stages: list[Stage]) -> None:
    from lcfix.compose import a1111_rewrite

    assert parse_schedule(a1111_rewrite(stages)) == stages


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(_stage_lists())
def test_plan_round_trip(stages: list[Stage]) -> None:
    from lcfix.a1111 import plan_from_stages

    assume(content_words(stages[-1].prompt))
    plan = plan_from_stages(stages)
    assert plan_problems(plan) == []
    again = parse_a1111(to_a1111(plan))
    assert again == plan
    assert to_a1111(again) == to_a1111(plan)
