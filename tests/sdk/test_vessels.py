"""Container rules: odd vessels, clothing used as one, storage places and jewelry."""

from __future__ import annotations

import pytest

from lcfix.detect import Finding, detect
from lcfix.kb import load_kb
from lcfix.phrases import chunk
from lcfix.vessels import content_of

KB = load_kb()


def _find(prompt: str) -> list[Finding]:
    return detect(KB, prompt, chunk(KB, prompt))


@pytest.mark.parametrize(
    ("prompt", "fragile", "pattern"),
    [
        ("Noodles served in a cowboy hat", "cowboy hat", "food-tableware"),
        ("Lemonade poured into a rain boot", "rain boot", "beverage-container"),
        ("A sneaker full of popcorn", "sneaker", "food-tableware"),
        ("Chili served inside a helmet", "helmet", "food-tableware"),
    ],
)
def test_clothing_holding_food_is_the_fragile_vessel(
    prompt: str, fragile: str, pattern: str
) -> None:
    f = _find(prompt)[0]
    assert (f.fragile, f.pattern) == (fragile, pattern)


@pytest.mark.parametrize(
    "prompt",
    [
        "A girl in a sun hat eating ice cream",
        "Ketchup on a white shirt",
        "A chef in a tall hat stirring a pot of soup",
        "Curry with naan served in a bowl",
    ],
)
def test_clothing_near_food_and_side_dishes_are_fine(prompt: str) -> None:
    assert _find(prompt) == []


def test_an_everyday_dish_swap_yields_to_a_stronger_clash() -> None:
    found = _find("A bowl of lasagna at a Mexican cantina")
    assert found[0].pattern == "cuisine-location" and found[0].fragile == "Mexican cantina"


def test_jewelry_in_a_container_of_food_and_food_shaped_like_jewelry() -> None:
    (f,) = _find("A silver ring hidden in a bag of rice")
    assert (f.fragile, f.dominant, f.latent) == ("silver ring", "bag of rice", "rice")
    assert [f.pattern for f in _find("Chocolate coins in a cookie jar")] == []


@pytest.mark.parametrize(
    ("prompt", "fragile", "pattern"),
    [
        ("In a crystal champagne flute, hot coffee steams", "crystal champagne flute",
         "beverage-container"),
        ("Red wine filling a sippy cup", "sippy cup", "beverage-container"),
        ("Creamy tomato soup poured onto a dinner plate", "dinner plate", "food-tableware"),
        ("Spaghetti in a bathtub", "bathtub", "food-tableware"),
    ],
)  # fmt: skip
def test_more_ways_of_holding(prompt: str, fragile: str, pattern: str) -> None:
    (f,) = _find(prompt)
    assert (f.fragile, f.pattern) == (fragile, pattern)


@pytest.mark.parametrize(
    "prompt",
    [
        "A carton of eggs on the counter",
        "A pot of tea",
        "A souffle on a white porcelain dish",
        "A dog drinking water from a metal bowl",
        "Pizza pulled out of a brick oven",
    ],
)
def test_containers_named_for_or_made_for_their_content_are_fine(prompt: str) -> None:
    assert _find(prompt) == []


def test_content_of_prefers_food_senses() -> None:
    (c,) = chunk(KB, "cake")
    entry = content_of(c)
    assert entry is not None and entry.category == "food"
    assert content_of(chunk(KB, "a hammer")[0]) is None


def test_a_container_named_for_a_food_holds_only_that_food() -> None:
    f = _find("A silver ring inside an anchovy tin")[0]
    assert (f.fragile, f.dominant, f.latent) == ("silver ring", "anchovy tin", "sardines")
    assert _find("Sugar cookies in a tin") == []
    assert _find("A brooch in a tin") == []
    # A colour that is also a fruit names no content: "an orange tin" holds anything.
    assert _find("A locket in an orange tin") == []


def test_a_napkin_takes_solid_food_but_not_soup() -> None:
    assert _find("A cookie on a paper napkin") == []
    f = _find("Tomato soup poured onto a napkin")[0]
    assert (f.fragile, f.pattern) == ("napkin", "food-tableware")


def test_a_tank_takes_water_animals_and_a_cage_birds() -> None:
    assert _find("A sea turtle in an aquarium") == []
    assert _find("A cockatoo in a birdcage") == []
    f = _find("A hamster inside a fish tank")[0]
    assert (f.fragile, f.pattern) == ("hamster", "object-storage")


def test_a_material_variant_of_a_plain_vessel_takes_what_the_plain_one_takes() -> None:
    assert _find("Espresso in a copper cup") == []
    f = _find("Red wine in a paper coffee cup")[0]
    assert f.fragile == "paper coffee cup"


def test_a_frisbee_is_an_odd_vessel_for_food() -> None:
    f = _find("Stew served on a frisbee")[0]
    assert (f.fragile, f.pattern) == ("frisbee", "food-tableware")
