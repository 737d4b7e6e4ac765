"""Clash rules: a typical partner is fine, an unusual one is a clash, fragile per pattern."""

from __future__ import annotations

import pytest

from lcfix.detect import Finding, detect
from lcfix.kb import load_kb
from lcfix.phrases import chunk

KB = load_kb()


def _find(prompt: str) -> list[Finding]:
    return detect(KB, prompt, chunk(KB, prompt))


@pytest.mark.parametrize(
    ("prompt", "fragile", "dominant", "latent", "pattern"),
    [
        ("Apple juice in a champagne coupe", "champagne coupe", "Apple juice", "glass",
         "beverage-container"),
        ("Waffles served in a mug", "mug", "Waffles", "plate", "food-tableware"),
        ("Kimchi at the Leaning Tower of Pisa", "Leaning Tower of Pisa", "Kimchi",
         "Korean restaurant", "cuisine-location"),
        ("A bison at the Parthenon", "Parthenon", "bison", "prairie", "species-site"),
        ("A sheep with zebra stripes", "zebra stripes", "sheep", "thick white wool",
         "animal-covering"),
        ("A brooch inside a toolbox", "brooch", "toolbox", "tools", "jewelry-storage"),
        ("Pears growing on a grapevine", "Pears", "grapevine", "grapes", "fruit-plant"),
        ("A purple carrot", "purple", "carrot", "orange", "object-attribute"),
        ("A bench made of candy", "candy", "bench", "wood", "object-material"),
        ("A glass axe", "glass", "axe", "steel", "object-material"),
        ("A nurse in a suit of armor", "suit of armor", "nurse", "scrubs", "role-outfit"),
    ],
)  # fmt: skip
def test_each_pattern_flags_its_fragile_role(
    prompt: str, fragile: str, dominant: str, latent: str, pattern: str
) -> None:
    (f,) = _find(prompt)
    assert (f.fragile, f.dominant, f.latent, f.pattern) == (fragile, dominant, latent, pattern)
    assert 1 <= f.severity <= 5 and dominant in f.rationale


@pytest.mark.parametrize(
    "prompt",
    [
        "Apple juice in a glass",
        "A mug of hot cocoa on a saucer",
        "A bowl of soup on a plate",
        "Pancakes with a glass of milk",
        "Kimchi in Seoul",
        "A bison on the prairie",
        "A camel in front of the pyramids",
        "A sheep with thick wool",
        "A brooch in a jewelry box",
        "Pears on a pear tree",
        "An orange carrot",
        "A bench made of wood",
        "A nurse in scrubs",
        "A cup of coffee next to a plate of pancakes",
        "A knight in armor on a horse",
        "A glass bowl of fruit",
    ],
)
def test_typical_combinations_are_fine(prompt: str) -> None:
    assert _find(prompt) == []


def test_colour_of_a_covering_is_checked_against_the_animal() -> None:
    (f,) = _find("A flamingo with blue feathers")
    assert f.fragile == "blue feathers" and f.pattern == "animal-covering"
    assert _find("A flamingo with pink feathers") == []


def test_habitat_clash_only_between_incompatible_biomes() -> None:
    (f,) = _find("A polar bear in the desert")
    assert f.fragile == "desert" and f.pattern == "species-site" and f.severity == 3
    assert _find("A polar bear on an ice floe") == []
    assert _find("A penguin on a beach") == []


def test_domestic_animals_belong_anywhere() -> None:
    assert _find("A dog in front of the Eiffel Tower") == []
    assert _find("Pigeons in Times Square") == []


def test_several_clashes_are_sorted_by_severity_then_position() -> None:
    found = _find("A blue banana in a wine glass at the Eiffel Tower")
    patterns = [f.pattern for f in found]
    assert "object-attribute" in patterns and "food-tableware" in patterns
    assert found == sorted(found, key=lambda f: (-f.severity, f.position))


@pytest.mark.parametrize(
    ("prompt", "fragile"),
    [
        ("A walrus basking in a tropical lagoon", "lagoon"),
        ("An arctic fox in a steamy jungle", "jungle"),
        ("A camel on a frozen lake", "frozen lake"),
        ("A gorilla in a Siberian forest", "Siberian forest"),
        ("A koala in the Amazon", "Amazon"),
    ],
)
def test_a_habitat_of_the_wrong_climate_or_region_clashes(prompt: str, fragile: str) -> None:
    (f,) = _find(prompt)
    assert (f.fragile, f.pattern) == (fragile, "species-site")


@pytest.mark.parametrize(
    "prompt",
    [
        "A red fox in a snowy forest",
        "A walrus on an icy shore",
        "A moose in a Canadian forest",
        "A camel in a sunbaked desert",
        "A woman in a sun hat on a tropical beach",
    ],
)
def test_a_habitat_of_the_animals_own_climate_is_fine(prompt: str) -> None:
    assert _find(prompt) == []


def test_colour_of_a_fruit_skin_and_a_coat_of_another_covering() -> None:
    (f,) = _find("An apple with bright blue skin")
    assert (f.fragile, f.dominant, f.pattern) == ("blue", "apple", "object-attribute")
    (f,) = _find("A tiger with a thick coat of feathers")
    assert (f.fragile, f.pattern) == ("feathers", "animal-covering")
    (f,) = _find("A flamingo covered in black and white zebra stripes")
    assert "zebra stripes" in f.fragile and f.pattern == "animal-covering"
    assert _find("A zebra with black and white stripes") == []


@pytest.mark.parametrize(
    "prompt",
    [
        "Poutine at a roadside diner in Montreal",
        "Sushi at a Japanese restaurant in London",
        "Pierogi at a Polish bakery in Chicago",
    ],
)
def test_a_dish_in_a_place_of_its_own_region_is_at_home(prompt: str) -> None:
    assert _find(prompt) == []


def test_a_landmark_still_clashes_when_the_dish_is_at_home() -> None:
    f = _find("Tacos at a Mexican restaurant beside the Colosseum")[0]
    assert (f.fragile, f.pattern) == ("Colosseum", "cuisine-location")


def test_a_tropical_habitat_clashes_with_a_cold_animal() -> None:
    f = _find("A lemming in a mangrove swamp")[0]
    assert (f.fragile, f.pattern) == ("mangrove swamp", "species-site")


def test_a_bare_vine_bears_many_fruits_but_not_any() -> None:
    assert _find("Cherry tomatoes on a vine") == []
    f = _find("Mangoes hanging from a vine")[0]
    assert (f.fragile, f.pattern) == ("Mangoes", "fruit-plant")


def test_colour_suffix_and_objects_named_for_their_material() -> None:
    f = _find("A scarlet-colored lemon on a shelf")[0]
    assert (f.fragile, f.pattern) == ("scarlet-colored", "object-attribute")
    assert _find("Paper cranes hanging from the ceiling") == []
    f = _find("A boat made of paper")[0]
    assert (f.fragile, f.pattern) == ("paper", "object-material")


def test_a_zoo_keeps_wild_animals_anywhere() -> None:
    assert _find("A giraffe in a safari park in Denmark") == []
    assert _find("A snow leopard at the zoo in Cairo") == []
    assert _find("A snow leopard in Cairo")[0].pattern == "species-site"
