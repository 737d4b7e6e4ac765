from __future__ import annotations

import pytest

from lcfix.text import content_words, missing_words, normalize_prompt, phrase_in, singular


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("watermelons", "watermelon"),
        ("cherries", "cherry"),
        ("glasses", "glass"),
        ("glass", "glass"),
        ("leaves", "leaf"),
        ("boxes", "box"),
        ("bus", "bus"),
        ("peaches", "peach"),
    ],
)
def test_singular(word: str, expected: str) -> None:
    assert singular(word) == expected


def test_content_words_drop_function_words() -> None:
    assert content_words("A tea cup of iced coke.") == ["tea", "cup", "iced", "coke"]


def test_phrase_in() -> None:
    assert phrase_in("A tea cup of iced coke", "Tea Cup")
    assert phrase_in("A steak in a teacup", "tea cup")
    assert phrase_in("Bananas growing on an apple tree", "banana")
    assert not phrase_in("A tea cup of iced coke", "glass")
    assert not phrase_in("A tea cup of iced coke", "the")


def test_missing_words() -> None:
    assert missing_words("a tea cup of iced coke", "tea cup") == ["iced", "coke"]
    assert missing_words("a tea cup of iced coke", "A teacup of iced coke") == []


def test_normalize_prompt() -> None:
    assert normalize_prompt("  A  Tea\tcup ") == "a tea cup"
