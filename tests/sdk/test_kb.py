"""The knowledge base: the shipped file is broad and consistent; bad files fail clearly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lcfix.errors import ConfigError
from lcfix.kb import CATEGORIES, DEFAULT_KB_PATH, fold, load_kb, word_forms

DEV = Path(__file__).parents[2].parent / "shared/data/lcmis_dev.jsonl"


@pytest.fixture(scope="module")
def kb():  # type: ignore[no-untyped-def]
    return load_kb()


def _raw() -> dict[str, Any]:
    return json.loads(DEFAULT_KB_PATH.read_text(encoding="utf-8"))


def test_shipped_kb_is_broad(kb) -> None:  # type: ignore[no-untyped-def]
    counts = {c: sum(1 for e in kb.entries if e.category == c) for c in CATEGORIES}
    assert len(kb.entries) >= 1000
    for category in ("beverage", "food", "vessel", "animal", "place", "object"):
        assert counts[category] >= 60, (category, counts[category])
    for category in CATEGORIES:
        assert counts[category] >= 15, (category, counts[category])
    assert kb.version == _raw()["version"]


def test_every_entity_has_a_visual_description(kb) -> None:  # type: ignore[no-untyped-def]
    assert all(e.desc.strip() for e in kb.entries)
    assert kb.find("tea cup", "vessel").desc == "small ceramic cup with a handle"


def test_patterns_carry_fragile_role_prior_and_severity(kb) -> None:  # type: ignore[no-untyped-def]
    expected = {
        "beverage-container", "food-tableware", "cuisine-location", "species-site",
        "animal-covering", "jewelry-storage", "fruit-plant", "object-attribute",
        "object-material", "role-outfit",
    }  # fmt: skip
    assert expected <= set(kb.patterns)
    for p in kb.patterns.values():
        assert 0.025 <= p.stage1_end <= 0.475
        assert 1 <= p.severity <= 5
        assert "{dominant}" in p.rationale and "{fragile}" in p.rationale
    assert kb.patterns["jewelry-storage"].fragile == "jewelry"
    assert kb.patterns["beverage-container"].fragile == "vessel"


def test_relations_resolve_to_entities_of_the_right_kind(kb) -> None:  # type: ignore[no-untyped-def]
    raw = _raw()["entities"]
    for e in raw["beverage"]:
        for v in e["vessels"]:
            assert kb.find(v, "vessel") is not None, (e["name"], v)
    for e in raw["fruit"]:
        if e.get("plant"):
            assert kb.find(e["plant"], "plant") is not None, (e["name"], e["plant"])
    for e in raw["animal"]:
        for c in e.get("coverings", []):
            assert kb.find(c, "covering") is not None, (e["name"], c)
    for e in raw["food"]:
        for v in e.get("vessels", []):
            hits = {x.category for x in kb.lookup(v)}
            assert hits & {"vessel", "storage", "object"}, (e["name"], v)


def test_typical_partners_are_indexed_by_canonical_name(kb) -> None:  # type: ignore[no-untyped-def]
    coke = kb.find("iced coke", "beverage")
    assert "glass" in coke.partner_names and "tea cup" not in coke.partner_names
    assert coke.latent == "glass"
    assert kb.find("lemon", "fruit").plant == "lemon tree"
    assert "lemon" in kb.find("lemon tree", "plant").partner_names
    assert kb.find("banana", "fruit").colours == {"yellow", "green", "brown"}
    assert "wood" in kb.find("chair", "object").material_families
    assert "eggs" in kb.find("bird nest", "storage").holds
    assert kb.find("zebra", "animal").coverings >= {"stripes"}


def test_no_dev_prompt_is_stored_in_the_kb() -> None:
    if not DEV.exists():
        pytest.skip(f"dev set not found at {DEV}")
    text = DEFAULT_KB_PATH.read_text(encoding="utf-8").lower()
    for line in DEV.read_text(encoding="utf-8").splitlines():
        prompt = json.loads(line)["prompt"].lower()
        assert prompt not in text, prompt


@pytest.mark.parametrize(
    ("text", "category", "name"),
    [
        ("tacos", "food", "tacos"),
        ("taco", "food", "tacos"),
        ("cookies", "food", "cookies"),
        ("Teacup", "vessel", "tea cup"),
        ("tomatoes", "fruit", "tomato"),
        ("ice floes", "place", "ice floe"),
        ("Café", "place", "cafe"),
        ("wine glasses", "vessel", "wine glass"),
        ("Great Wall of China", "place", "Great Wall of China"),
        ("leaves", "material", "leaves"),
    ],
)
def test_lookup_tolerates_plurals_case_and_accents(kb, text, category, name) -> None:  # type: ignore[no-untyped-def]
    entry = kb.find(text, category)
    assert entry is not None and entry.name == name


def test_lookup_of_unknown_text_is_empty(kb) -> None:  # type: ignore[no-untyped-def]
    assert kb.lookup("zorblax") == []
    assert kb.lookup("") == []


def test_regions_expand_to_what_contains_them(kb) -> None:  # type: ignore[no-untyped-def]
    assert kb.expand_regions(["scotland"]) == {"scotland", "uk", "europe"}
    assert "asia" in kb.expand_regions(["japan"])


def test_fold_and_word_forms() -> None:
    assert fold("Café") == "cafe"
    assert fold("chef's") == "chef"
    assert "cookie" in word_forms("cookies")
    assert "taco" in word_forms("tacos")


def test_load_is_cached_per_file(kb) -> None:  # type: ignore[no-untyped-def]
    assert load_kb() is kb
    assert load_kb(DEFAULT_KB_PATH) is kb


def _minimal() -> dict[str, Any]:
    return {
        "version": "test-1",
        "patterns": {
            "beverage-container": {
                "fragile": "vessel",
                "dominant": "beverage",
                "stage1_end": 0.25,
                "severity": 4,
                "rationale": "{dominant} goes in {latent}, not the {fragile}",
            },
        },
        "regions": {"japan": {"words": ["japanese"], "setting": "Japanese restaurant"}},
        "colours": {"red": ["red"]},
        "entities": {
            "beverage": [{"name": "sake", "vessels": ["sake cup"], "regions": ["japan"]}],
            "vessel": [{"name": "sake cup", "desc": "tiny cup"}, {"name": "boot"}],
        },
    }


def _write(tmp_path: Path, data: object, name: str = "kb.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_minimal_kb_loads_and_fills_missing_descriptions(tmp_path: Path) -> None:
    kb = load_kb(_write(tmp_path, _minimal()))
    assert kb.version == "test-1"
    assert kb.find("sake", "beverage").partner_names == {"sake cup"}
    assert kb.find("boot", "vessel").desc == "boot"  # no template given: the name


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("version"), "version"),
        (lambda d: d["entities"].update({"spaceship": []}), "unknown category 'spaceship'"),
        (lambda d: d["patterns"]["beverage-container"].update(stage1_end=0.9), "stage1_end"),
        (lambda d: d["entities"]["beverage"][0].update(regions=["atlantis"]), "'atlantis'"),
        (lambda d: d["entities"]["vessel"].append({"desc": "no name"}), "entities.vessel[2]"),
        (lambda d: d["entities"]["beverage"][0].update(alias="sak"), "'alias'"),
        (lambda d: d["regions"]["japan"].update(within=["mars"]), "'mars'"),
        (lambda d: d.update(climates={"lukewarm": ["tepid"]}), "unknown climate 'lukewarm'"),
        (
            lambda d: d["entities"].update(
                place=[{"name": "x", "kind": "habitat", "climate": "wet"}]
            ),
            "climate 'wet'",
        ),
        (lambda d: d["entities"].update(object=[{"name": "x", "kind": "planet"}]), "kind 'planet'"),
    ],
)
def test_bad_kb_raises_config_error_naming_file_and_entry(
    tmp_path: Path, mutate: Any, message: str
) -> None:
    data = _minimal()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_kb(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "version": "1",\n  oops\n}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.json:3"):
        load_kb(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_kb(tmp_path / "nope.json")


def test_climates_wearables_and_vehicles(kb) -> None:  # type: ignore[no-untyped-def]
    assert kb.find("walrus", "animal").climate == "cold"  # from its biomes
    assert kb.find("camel", "animal").climate == "hot"
    assert kb.find("fox", "animal").climate == ""  # a forest animal: any climate
    assert kb.find("Alps", "place").climate == "cold"
    assert kb.climate_words["tropical"] == "hot" and kb.climate_words["icy"] == "cold"
    assert kb.find("sombrero", "outfit").wearable and kb.find("hat", "object").wearable
    assert not kb.find("teapot", "vessel").wearable
    assert kb.find("boat", "object").kind == "vehicle"


def test_plural_names_answer_to_their_singular_unless_it_means_something_else(kb) -> None:  # type: ignore[no-untyped-def]
    assert kb.find("sand dune", "place") is kb.find("sand dunes", "place")
    assert kb.find("glass", "object") is None  # "glasses" is eyewear; "glass" is not


def test_a_colour_word_with_colored_is_that_colour(kb) -> None:  # type: ignore[no-untyped-def]
    for text in ("crimson-colored", "Crimson Coloured", "navy colored"):
        senses = [e for e in kb.lookup(text) if e.category == "colour"]
        assert senses, text
    assert kb.find("crimson-colored", "colour").name == kb.find("crimson", "colour").name
