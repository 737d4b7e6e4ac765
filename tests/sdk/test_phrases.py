"""Concept-phrase extraction: terms matched whole, heads and modifiers, connectors."""

from __future__ import annotations

import pytest

from lcfix.kb import load_kb
from lcfix.phrases import chunk, display, link_kind, tokenize

KB = load_kb()


def _chunks(prompt: str) -> list[tuple[str, list[str]]]:
    return [
        (display(prompt, c), [f"{e.category}:{e.name}" for e in c.senses])
        for c in chunk(KB, prompt)
        if not c.neutral
    ]


def test_multi_word_terms_stay_whole() -> None:
    assert _chunks("A tea cup of iced coke") == [
        ("tea cup", ["vessel:tea cup"]),
        ("iced coke", ["beverage:iced coke"]),
    ]
    assert _chunks("Tacos on the Great Wall of China")[1] == (
        "Great Wall of China", ["place:Great Wall of China"],
    )  # fmt: skip


def test_head_noun_carries_the_concept_and_modifiers_are_kept() -> None:
    ((text, senses),) = [c for c in _chunks("Red wine in a paper coffee cup") if "cup" in c[0]]
    assert text == "paper coffee cup" and senses == ["vessel:coffee cup"]
    c = chunk(KB, "A Texas barbecue shack")[0]
    assert [m.text for m in c.mods] == ["Texas"]
    assert c.head is not None and c.head.text == "barbecue shack"


def test_descriptive_adjectives_are_dropped_from_the_name() -> None:
    assert _chunks("A hedgehog with smooth dolphin skin")[1][0] == "dolphin skin"
    assert _chunks("A bowl of soup on a flat cutting board")[2][0] == "cutting board"


def test_part_words_fall_back_to_the_named_concept() -> None:
    assert _chunks("An orangutan climbing the Kremlin walls")[1] == ("Kremlin", ["place:Kremlin"])


def test_plurals_hyphens_and_accents() -> None:
    assert _chunks("Watermelons") == [("Watermelons", ["fruit:watermelon"])]
    senses = _chunks("a red double-decker bus")[0][1]
    assert "cultural:double-decker bus" in senses
    assert _chunks("un café")[0][1] == ["place:cafe"]


def test_unknown_heads_are_marked_for_embedding() -> None:
    c = chunk(KB, "A crocodile near Zorblax Tower")[1]
    assert not c.senses or c.unknown is None
    c = chunk(KB, "A quokka eating")[0]
    assert c.senses == [] or c.senses[0].name == "quokka"
    c = chunk(KB, "a flibbertigibbet")[0]
    assert c.unknown == "flibbertigibbet" and not c.proper
    c = chunk(KB, "a lion in Zorbatown")[1]
    assert c.unknown == "Zorbatown" and c.proper


def test_connectors_and_link_kinds() -> None:
    cs = chunk(KB, "Espresso poured into a champagne flute next to a plate")
    assert cs[1].connector == ("poured", "into", "a")
    assert link_kind(KB, cs[1].connector) == "bind"
    assert link_kind(KB, cs[2].connector) == "separate"
    assert link_kind(KB, ()) == "none"


def test_punctuation_splits_phrases_but_hyphens_do_not() -> None:
    toks, breaks = tokenize("ice-cream, cake")
    assert [t[2] for t in toks] == ["ice", "cream", "cake"]
    assert breaks == [False, False, True]


@pytest.mark.parametrize("prompt", ["", "   ", "🍕🍕🍕", "!!!", "一杯冰可乐"])
def test_odd_text_never_fails(prompt: str) -> None:
    for c in chunk(KB, prompt):
        assert not c.senses


def test_a_longer_term_starting_inside_a_match_wins() -> None:
    c = chunk(KB, "an Antarctic ice shelf")[0]
    assert c.head is not None and c.head.text == "ice shelf"
    assert [m.text for m in c.mods] == ["Antarctic"]


def test_ing_words_inside_a_noun_phrase_are_modifiers() -> None:
    assert _chunks("a quiet fishing village") == [("fishing village", ["place:fishing village"])]
    assert _chunks("a Swedish waiting room")[0][0] == "Swedish waiting room"
    assert [t for t, _ in _chunks("A dog fishing in a lake")] == ["dog", "lake"]
    assert [t for t, _ in _chunks("A man holding a cup")] == ["cup"]  # "man" is neutral
    assert _chunks("a sunny clearing")[0][1] == ["place:clearing"]


def test_climate_and_compound_adjectives_stay_in_the_phrase() -> None:
    c = chunk(KB, "an icy pond")[0]
    assert c.head is not None and c.head.text == "pond" and [m.kind for m in c.mods] == ["adj"]
    c = chunk(KB, "a snow-covered crystal-clear pond")[0]
    assert [m.text for m in c.mods] == ["snow-covered", "crystal-clear"]


def test_singular_of_a_plural_name() -> None:
    assert _chunks("a desert dune")[0][1] == ["place:desert"]
    assert _chunks("a dumpling")[0][1] == ["food:dim sum"]  # alias "dumplings"
