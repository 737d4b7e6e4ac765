from __future__ import annotations

from lcfix.compose import (
    a1111_escape,
    a1111_rewrite,
    build_stages,
    clamp_ratio,
    compose_plan,
    excludable_latents,
    format_when,
    natural_rewrite,
    weighted_rewrite,
)
from lcfix.plans import ConceptPair, PlannerInfo, Stage

INFO = PlannerInfo(name="test", version="1")
TEA = ConceptPair(
    fragile="tea cup",
    dominant="iced coke",
    latent="glass",
    pattern="beverage-container",
    severity=5,
)


def test_one_fragile_concept_gives_the_papers_two_stages() -> None:
    stages = build_stages("A tea cup of iced coke", [TEA], 0.25)
    assert stages == [
        Stage(prompt="tea cup", end=0.25),
        Stage(prompt="A tea cup of iced coke", end=1.0),
    ]


def test_stage1_end_is_clamped_to_the_search_range() -> None:
    assert clamp_ratio(0.9) == 0.475
    assert clamp_ratio(0.0) == 0.025
    assert build_stages("A tea cup of iced coke", [TEA], 0.9)[0].end == 0.475


def test_two_fragile_concepts_give_three_cumulative_stages() -> None:
    prompt = "A penguin with peacock feathers at the Taj Mahal"
    pairs = [
        ConceptPair(fragile="peacock feathers", dominant="penguin", severity=4),
        ConceptPair(fragile="Taj Mahal", dominant="penguin", severity=5),
    ]
    plan = compose_plan(prompt, pairs, planner=INFO, stage1_end=0.3)
    assert [s.prompt for s in plan.stages] == ["Taj Mahal", "Taj Mahal, peacock feathers", prompt]
    assert [s.end for s in plan.stages] == [0.15, 0.3, 1.0]


def test_no_pairs_gives_one_stage_and_plain_rewrites() -> None:
    plan = compose_plan("A red fox in a forest", [], planner=INFO)
    assert not plan.at_risk
    assert [s.end for s in plan.stages] == [1.0]
    assert plan.rewrites.natural == "A red fox in a forest"
    assert plan.rewrites.a1111 == "A red fox in a forest"


def test_natural_rewrite_names_fragile_early_and_excludes_latent() -> None:
    text = natural_rewrite(
        "a tea cup of iced coke", [TEA], {"tea cup": "Small ceramic cup with a handle."}
    )
    assert text.startswith("A tea cup (small ceramic cup with a handle, not a glass) of iced coke.")
    assert "tea cup must be clearly visible" in text


def test_natural_rewrite_never_excludes_what_the_user_asked_for() -> None:
    pair = ConceptPair(fragile="wine glass", dominant="spaghetti", latent="plate")
    text = natural_rewrite("Spaghetti in a wine glass on a plate", [pair], {})
    assert "not a plate" not in text


def test_weighted_rewrite() -> None:
    assert weighted_rewrite("A tea cup of iced coke.", [TEA]) == (
        "tea cup::2 A tea cup of iced coke::1 --no glass"
    )
    eggs = ConceptPair(fragile="ruby earrings", dominant="bird nest", latent="eggs")
    assert "--no" not in weighted_rewrite("ruby earrings and eggs in a bird nest", [eggs])


def test_a1111_rewrite_nests_and_escapes() -> None:
    stages = [
        Stage(prompt="a", end=0.1),
        Stage(prompt="a, b", end=0.3),
        Stage(prompt="a b: c", end=1.0),
    ]
    assert a1111_rewrite(stages) == r"[[a:a, b:0.1]:a b\: c:0.3]"
    assert a1111_escape("[x](y)|z") == r"\[x\]\(y\)\|z"


def test_compose_plan_collects_concepts_with_descriptions() -> None:
    plan = compose_plan(
        "A tea cup of iced coke",
        [TEA],
        planner=INFO,
        descriptions={"tea cup": "ceramic cup", "iced coke": "dark fizzy drink"},
    )
    assert [(c.name, c.description) for c in plan.concepts] == [
        ("tea cup", "ceramic cup"),
        ("iced coke", "dark fizzy drink"),
    ]
    assert plan.rewrites.weighted.endswith("--no glass")


def test_a1111_when_stays_a_fraction_near_the_edges() -> None:
    assert format_when(0.25) == "0.25"
    assert format_when(0.99999) == "0.99999"
    assert format_when(0.00001) == "0.00001"


def test_latents_sharing_a_word_with_the_prompt_are_never_excluded() -> None:
    stripes = ConceptPair(
        fragile="leopard spots", dominant="zebra", latent="black and white stripes"
    )
    glass = ConceptPair(fragile="tea cup", dominant="iced coke", latent="glass")
    assert excludable_latents("A zebra with leopard spots and a hat", [stripes, glass]) == [
        "black and white stripes",
        "glass",
    ]
    assert excludable_latents("A white zebra with leopard spots", [stripes]) == []
    assert "--no" not in weighted_rewrite("A white zebra with leopard spots", [stripes])
    assert "not black" not in natural_rewrite("A white zebra with leopard spots", [stripes], {})
