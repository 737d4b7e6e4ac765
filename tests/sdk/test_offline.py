"""The offline planner end to end: plans, stages, rewrites, odd input, the dev-set floor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lcfix import embeddings
from lcfix.errors import ConfigError, ExtraNotInstalledError, InputError
from lcfix.kb import load_kb
from lcfix.offline import OfflinePlanner, embeddings_enabled
from lcfix.planner import MAX_PROMPT_CHARS, Planner, get_planner
from lcfix.plans import Plan
from lcfix.text import content_words, phrase_in

DEV = Path(__file__).parents[2].parent / "shared/data/lcmis_dev.jsonl"


@pytest.fixture(scope="module")
def planner() -> OfflinePlanner:
    return OfflinePlanner(embeddings=False)


def test_the_canonical_example(planner: OfflinePlanner) -> None:
    plan = planner.plan("A tea cup of iced coke")
    assert plan.at_risk
    (pair,) = plan.pairs
    assert (pair.fragile, pair.dominant, pair.latent) == ("tea cup", "iced coke", "glass")
    assert pair.pattern == "beverage-container" and pair.severity == 4
    assert [(s.prompt, s.end) for s in plan.stages] == [
        ("tea cup", 0.25),
        ("A tea cup of iced coke", 1.0),
    ]
    assert "small ceramic cup with a handle, not a glass" in plan.rewrites.natural
    assert plan.rewrites.weighted == "tea cup::2 A tea cup of iced coke::1 --no glass"
    assert plan.rewrites.a1111 == "[tea cup:A tea cup of iced coke:0.25]"
    assert {c.name: c.description for c in plan.concepts}["iced coke"]
    assert plan.planner.name == "offline" and plan.planner.model is None
    assert plan.planner.version == load_kb().version


def test_is_a_planner(planner: OfflinePlanner) -> None:
    assert isinstance(planner, Planner)
    assert planner.name == "offline"


def test_get_planner_builds_the_offline_planner_by_default() -> None:
    planner = get_planner("auto")
    assert isinstance(planner, OfflinePlanner)
    assert planner.plan("a tea cup of iced coke").pairs[0].fragile == "tea cup"


@pytest.mark.parametrize(
    ("prompt", "fragile", "end"),
    [
        ("Beer served in a porcelain teapot", "porcelain teapot", 0.25),
        ("A koala in front of the Eiffel Tower", "Eiffel Tower", 0.2),
        ("A wolf covered in fish scales", "fish scales", 0.3),
        ("A blue cherry on a cake", "blue", 0.2),
    ],
)
def test_fragile_is_written_as_in_the_prompt_and_staged_first(
    planner: OfflinePlanner, prompt: str, fragile: str, end: float
) -> None:
    plan = planner.plan(prompt)
    assert plan.fragile == [fragile]
    assert phrase_in(prompt, fragile) and fragile in prompt
    assert plan.stages[0].prompt == fragile and plan.stages[0].end == end


@pytest.mark.parametrize(
    "prompt",
    [
        "A glass of iced coke",
        "A portrait of an old woman, oil painting",
        "A dog playing fetch in a park",
        "Lemons growing on a lemon tree",
        "The Eiffel Tower at night",
    ],
)
def test_no_risk_means_one_stage_and_the_prompt_untouched(
    planner: OfflinePlanner, prompt: str
) -> None:
    plan = planner.plan(prompt)
    assert not plan.at_risk and plan.pairs == ()
    assert [(s.prompt, s.end) for s in plan.stages] == [(prompt, 1.0)]
    assert plan.rewrites.natural == prompt


def test_several_fragile_concepts_give_more_stages(planner: OfflinePlanner) -> None:
    plan = planner.plan("Tacos served in a teacup at the Eiffel Tower")
    assert set(plan.fragile) == {"teacup", "Eiffel Tower"}
    assert len(plan.stages) == 3
    ends = [s.end for s in plan.stages]
    assert ends == sorted(ends) and ends[-1] == 1.0 and ends[1] <= 0.475


def test_every_pair_names_concepts_from_the_prompt(planner: OfflinePlanner) -> None:
    prompts = [
        "A crocodile with butterfly wings at the Colosseum",
        "Sushi in a wine glass on a lemon tree",
        "A green stop sign made of cheese",
    ]
    for plan in planner.plan_many(prompts):
        assert isinstance(plan, Plan)
        for pair in plan.pairs:
            assert content_words(pair.fragile) and phrase_in(plan.prompt, pair.fragile)
            assert content_words(pair.dominant) and phrase_in(plan.prompt, pair.dominant)


@pytest.mark.parametrize(
    "prompt",
    [
        "🍕🍕🍕",
        "!!!???",
        "一杯冰可乐放在茶杯里",
        "une tasse de thé sur la table",
        "a " * 1500 + "tea cup",
        "x",
        "\x00\x01 weird \u200b bytes",
    ],
)
def test_odd_prompts_get_a_valid_plan(planner: OfflinePlanner, prompt: str) -> None:
    plan = planner.plan(prompt)
    assert plan.prompt == prompt
    assert plan.stages[-1].end == 1.0


def test_a_long_prompt_within_the_limit_is_planned(planner: OfflinePlanner) -> None:
    prompt = ", ".join(["a tea cup of iced coke on a wooden table in a sunny garden"] * 60)
    assert len(prompt) < MAX_PROMPT_CHARS
    assert planner.plan(prompt).fragile == ["tea cup"]


@pytest.mark.parametrize("prompt", ["", "   \n\t"])
def test_empty_prompt_is_an_input_error(planner: OfflinePlanner, prompt: str) -> None:
    with pytest.raises(InputError, match="empty") as info:
        planner.plan(prompt)
    assert info.value.field == "prompt"


def test_too_long_prompt_is_an_input_error(planner: OfflinePlanner) -> None:
    with pytest.raises(InputError, match=str(MAX_PROMPT_CHARS)):
        planner.plan("a" * (MAX_PROMPT_CHARS + 1))


def test_plan_many_keeps_order_and_returns_errors_in_place(planner: OfflinePlanner) -> None:
    prompts = ["A steak in a teacup", "", "A cat", "A steak in a teacup"]
    out = planner.plan_many(prompts)
    assert isinstance(out[1], InputError)
    assert [p.prompt for p in out if isinstance(p, Plan)] == [prompts[0], prompts[2], prompts[3]]
    assert out[0] == out[3] == planner.plan(prompts[0])


@pytest.mark.parametrize(
    ("prompt", "fragile", "pattern"),
    [
        # an unknown head with a region word: a setting of that region, after "on" too
        ("Ramen on a Swedish skybridge", "Swedish skybridge", "cuisine-location"),
        # an everyday setting with a region word
        ("Gnocchi at a Peruvian gas station", "Peruvian gas station", "cuisine-location"),
        # a vehicle with a region, reached through a part word
        (
            "Pad thai on the deck of a Norwegian fishing boat",
            "Norwegian fishing boat",
            "cuisine-location",
        ),
        # an unknown head with a climate word: a habitat of that climate
        ("A polar bear on a tropical sandbar", "sandbar", "species-site"),
        # an unknown head after a habitat word: that habitat
        ("An emperor penguin in a jungle hideaway", "jungle hideaway", "species-site"),
    ],
)
def test_described_settings_are_places(
    planner: OfflinePlanner, prompt: str, fragile: str, pattern: str
) -> None:
    pair = planner.plan(prompt).pairs[0]
    assert (pair.fragile, pair.pattern) == (fragile, pattern)


@pytest.mark.parametrize(
    "prompt",
    [
        "Ramen on a Japanese skybridge",
        "A penguin on a snowy sandbar",
        "Sushi On A Wooden Zorblax",  # Title Case: capitals name nothing
    ],
)
def test_described_settings_that_fit_are_fine(planner: OfflinePlanner, prompt: str) -> None:
    assert not planner.plan(prompt).at_risk


def test_deterministic_across_instances() -> None:
    prompts = ["A pearl necklace in a fish tank", "A pink crow sitting on a fence"]
    a = OfflinePlanner(embeddings=False).plan_many(prompts)
    b = OfflinePlanner(embeddings=False).plan_many(list(reversed(prompts)))
    assert a == list(reversed(b))


async def test_async_twins(planner: OfflinePlanner) -> None:
    plan = await planner.aplan("A steak in a teacup")
    assert plan.fragile == ["teacup"]
    many = await planner.aplan_many(["A steak in a teacup", ""])
    assert many[0] == plan and isinstance(many[1], InputError)


def test_custom_knowledge_base(tmp_path: Path) -> None:
    kb = {
        "version": "tiny-7",
        "patterns": {
            "beverage-container": {
                "fragile": "vessel",
                "dominant": "beverage",
                "stage1_end": 0.4,
                "severity": 5,
                "rationale": "{dominant} comes in {latent}, not the {fragile}",
            },
        },
        "entities": {
            "beverage": [{"name": "grog", "vessels": ["tankard"]}],
            "vessel": [{"name": "tankard"}, {"name": "boot", "desc": "a leather boot"}],
        },
    }
    path = tmp_path / "kb.json"
    path.write_text(json.dumps(kb), encoding="utf-8")
    plan = OfflinePlanner(embeddings=False, kb_path=path).plan("Grog in a boot")
    assert plan.planner.version == "tiny-7"
    assert plan.pairs[0].fragile == "boot" and plan.pairs[0].severity == 5
    assert plan.stages[0].end == 0.4
    assert "a leather boot, not a tankard" in plan.rewrites.natural


class TestEmbeddingsSwitch:
    def test_tests_run_with_embeddings_off(self) -> None:
        assert embeddings_enabled(None) is False
        assert OfflinePlanner().info.model is None

    def test_off_by_default_even_when_installed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("LCFIX_EMBEDDINGS", raising=False)
        monkeypatch.setattr(embeddings, "available", lambda: True)
        assert embeddings_enabled(None) is False

    @pytest.mark.parametrize("value", ["1", "true", "TRUE", "on"])
    def test_on_values_need_the_install(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        monkeypatch.setenv("LCFIX_EMBEDDINGS", value)
        monkeypatch.setattr(embeddings, "available", lambda: True)
        assert embeddings_enabled(None) is True
        monkeypatch.setattr(embeddings, "available", lambda: False)
        with pytest.raises(ExtraNotInstalledError, match=r"lcfix\[embeddings\]"):
            embeddings_enabled(None)

    @pytest.mark.parametrize("value", ["", "0", "false", "off", "No"])
    def test_off_values(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        monkeypatch.setenv("LCFIX_EMBEDDINGS", value)
        monkeypatch.setattr(embeddings, "available", lambda: True)
        assert embeddings_enabled(None) is False

    def test_bad_value_is_a_config_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LCFIX_EMBEDDINGS", "maybe")
        with pytest.raises(ConfigError, match="LCFIX_EMBEDDINGS"):
            embeddings_enabled(None)

    def test_explicit_request_without_the_extra_names_the_install(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(embeddings, "available", lambda: False)
        with pytest.raises(ExtraNotInstalledError, match=r"lcfix\[embeddings\]"):
            OfflinePlanner(embeddings=True)

    def test_explicit_false_wins_over_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("LCFIX_EMBEDDINGS", "1")
        assert OfflinePlanner(embeddings=False).embeddings is False


def test_dev_set_floor() -> None:
    """A floor, not a tuned number: at-risk F1 >= 0.8 and fragile accuracy >= 0.75."""
    if not DEV.exists():
        pytest.skip(f"the labelled dev set is not at {DEV} (it lives beside the repository)")
    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line]
    plans = OfflinePlanner(embeddings=False).plan_many([r["prompt"] for r in rows])
    tp = fp = fn = frag = 0
    for row, plan in zip(rows, plans, strict=True):
        assert isinstance(plan, Plan)
        if plan.at_risk and row["at_risk"]:
            tp += 1
            got, gold = plan.pairs[0].fragile, row["fragile"]
            frag += phrase_in(got, gold) or phrase_in(gold, got)
        fp += plan.at_risk and not row["at_risk"]
        fn += row["at_risk"] and not plan.at_risk
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall)
    assert f1 >= 0.8
    assert frag / (tp + fn) >= 0.75


def test_a_stand_named_for_a_dish_of_its_region_makes_the_city_fine(
    planner: OfflinePlanner,
) -> None:
    assert not planner.plan("Burritos at a taco truck in Chicago").at_risk
    assert planner.plan("Burritos in Chicago").at_risk
