"""Word-level helpers shared by the plan contract and the planners. No I/O, no dependencies."""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)

# Function words only: anything else in a prompt counts as a content concept.
STOPWORDS = frozenset(
    """
    a an the this that these those some any each every no of in on at to into onto from by with
    without for as and or but nor so yet than then there here is are was were be been being am
    it its it's his her hers their theirs our ours my mine your yours its them they he she we
    you i me us him which who whom whose what where when while very just also too up down out
    over under near next beside inside outside within upon about around across through along
    against among between behind below beneath above has have had do does did will would can
    could should shall may might must made full filled served sitting standing placed put set
    being having
    """.split()  # noqa: SIM905
)

_IRREGULAR = {
    "leaves": "leaf",
    "knives": "knife",
    "wolves": "wolf",
    "loaves": "loaf",
    "shelves": "shelf",
    "geese": "goose",
    "mice": "mouse",
    "teeth": "tooth",
    "feet": "foot",
    "children": "child",
    "men": "man",
    "women": "woman",
    "people": "person",
    "oxen": "ox",
    "dice": "die",
    "cacti": "cactus",
    "fungi": "fungus",
    "octopi": "octopus",
    "calves": "calf",
    "halves": "half",
    "scarves": "scarf",
    "wives": "wife",
    "lives": "life",
    "thieves": "thief",
    "sheaves": "sheaf",
}
_KEEP_S = ("ss", "us", "is", "ous", "as", "ys", "os")


@lru_cache(maxsize=65536)
def singular(word: str) -> str:
    """Crude English singular, good enough to match 'watermelons' with 'watermelon'."""
    w = word.lower()
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if len(w) <= 3 or not w.endswith("s") or w.endswith(_KEEP_S):
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("ches", "shes", "xes", "zes", "sses", "oes")):
        return w[:-2]
    return w[:-1]


def words(text: str) -> list[str]:
    """Lower-cased word tokens; hyphens and punctuation split words."""
    return [m.group(0).lower() for m in _WORD.finditer(text)]


def norm_words(text: str) -> list[str]:
    """Lower-cased, singular word tokens."""
    return [singular(w) for w in words(text)]


def content_words(text: str) -> list[str]:
    """The normalised content words of ``text``, in order, without function words."""
    return [singular(w) for w in words(text) if w not in STOPWORDS]


def normalize_prompt(text: str) -> str:
    """Collapse whitespace and case: the form used for cache keys and duplicate checks."""
    return " ".join(text.split()).strip().lower()


def phrase_in(text: str, phrase: str) -> bool:
    """Whether ``phrase`` comes from ``text``.

    True when every content word of the phrase is a content word of the text, or when the
    phrase matches with spaces removed ('tea cup' in 'a teacup').
    """
    want = content_words(phrase) or norm_words(phrase)
    if not want:
        return False
    have = set(norm_words(text))
    if all(w in have for w in want):
        return True
    squashed = "".join(norm_words(phrase))
    return bool(squashed) and squashed in "".join(norm_words(text))


def missing_words(required: str, candidate: str) -> list[str]:
    """Content words of ``required`` that ``candidate`` lacks (order kept, no repeats)."""
    have = set(norm_words(candidate))
    squashed = "".join(norm_words(candidate))
    out: list[str] = []
    for w in content_words(required):
        if w not in have and w not in squashed and w not in out:
            out.append(w)
    return out
