"""Concept-phrase extraction for the offline planner.

A prompt becomes a list of :class:`Chunk` objects: noun phrases split at function words,
verbs and punctuation, each with a head (the concept) and modifiers (colour, material,
region, owner). Multi-word knowledge-base terms are matched first, longest first, so
"iced coke", "red solo cup" and "Great Wall of China" stay whole. No I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lcfix.kb import Entry, Key, KnowledgeBase, _fold_cached, _products
from lcfix.text import STOPWORDS

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_ARTICLES = frozenset({"a", "an", "the", "this", "that", "one", "each", "every", "my", "your"})
_MODIFIER_ONLY = frozenset({"material", "colour", "region"})
_ABBREVIATIONS = frozenset({"st", "mt", "ft", "dr", "mr", "mrs", "ms", "jr", "sr", "no", "vs"})


@dataclass(slots=True)
class Item:
    """A word or a matched knowledge-base term."""

    kind: str
    """term, word (unknown content word), neutral, adj, stop or verb."""
    start: int
    end: int
    text: str
    key: Key
    senses: tuple[Entry, ...] = ()
    cap: bool = False

    def has(self, category: str) -> Entry | None:
        for e in self.senses:
            if e.category == category:
                return e
        return None


@dataclass(slots=True)
class Chunk:
    """A noun phrase: ``mods`` come before ``head``; ``connector`` is the text before it."""

    index: int
    items: list[Item]
    head: Item | None
    mods: list[Item]
    connector: tuple[str, ...]
    start: int
    end: int
    display_start: int
    senses: list[Entry] = field(default_factory=list)
    unknown: str | None = None
    """Text to classify with embeddings when the head is unknown."""
    proper: bool = False
    """An unknown run of capitalised words: probably a named place or thing."""

    @property
    def neutral(self) -> bool:
        return self.head is None or self.head.kind == "neutral"

    def sense(self, category: str) -> Entry | None:
        for e in self.senses:
            if e.category == category:
                return e
        return None

    def mod_senses(self, category: str) -> list[tuple[Item, Entry]]:
        out = []
        for m in self.mods:
            e = m.has(category)
            if e is not None:
                out.append((m, e))
        return out


def _boundary(gap: str) -> bool:
    """Whether the text between two words separates phrases (punctuation, a spaced dash)."""
    g = gap.strip()
    if not g:
        return False
    return g not in ("-", "'", "’") or " " in gap


def tokenize(prompt: str) -> tuple[list[tuple[int, int, str]], list[bool]]:
    """Word spans and, per word, whether punctuation comes before it."""
    toks: list[tuple[int, int, str]] = []
    breaks: list[bool] = []
    prev = 0
    for m in _WORD.finditer(prompt):
        gap = prompt[prev : m.start()]
        # "St. Basil's", "Mt. Fuji": the period of an abbreviation ends no phrase
        abbrev = bool(toks) and gap.strip() == "." and toks[-1][2].lower() in _ABBREVIATIONS
        breaks.append(bool(toks) and not abbrev and _boundary(gap))
        toks.append((m.start(), m.end(), m.group(0)))
        prev = m.end()
    return toks, breaks


def items_of(kb: KnowledgeBase, prompt: str) -> tuple[list[Item], list[bool]]:
    """Classify every word, matching multi-word terms greedily, longest first."""
    toks, breaks = tokenize(prompt)
    n = len(toks)
    low = [_fold_cached(t[2]) for t in toks]
    forms = [kb.norm(t[2]) for t in toks]
    words = kb.words
    items: list[Item] = []
    item_breaks: list[bool] = []
    i = 0
    while i < n:
        s, _, raw = toks[i]
        longest = max(kb.max_term_len.get(f, 0) for f in forms[i])
        matched: tuple[int, Key, list[Entry]] | None = None
        for length in range(min(longest, n - i), 1, -1):
            if any(breaks[i + 1 : i + length]):
                continue
            found = _lookup(kb, forms[i : i + length])
            if found and not _overlapped(kb, forms, breaks, i, length):
                matched = (length, *found)
                break
        cap = i > 0 and raw[:1].isupper()
        if not matched and i + 1 < n and prompt[toks[i][1] : toks[i + 1][0]] == "-":
            joined = f"{low[i]}-{low[i + 1]}"
            # "snow-covered", "sun-baked", "crystal-clear": one adjective, not two concepts
            if joined in kb.climate_words or joined in words["descriptive"]:
                e = toks[i + 1][1]
                items.append(Item("adj", s, e, prompt[s:e], (joined,), (), cap))
                item_breaks.append(breaks[i])
                i += 2
                continue
        if matched:
            length, key, hit = matched
            e = toks[i + length - 1][1]
            items.append(Item("term", s, e, prompt[s:e], key, tuple(hit), cap))
            item_breaks.append(breaks[i])
            i += length
            continue
        w = low[i]
        found1 = _lookup(kb, forms[i : i + 1])
        single = found1[1] if found1 else None
        key1: Key = found1[0] if found1 else (forms[i][0],)
        e = toks[i][1]
        if w in words["nouns"] and not single:
            kind = "word"
        elif w in kb.climate_words and not single:
            kind = "adj"  # "tropical", "icy", "frozen": read by the species-site rule
        elif w not in words["descriptive"] and _gerund_modifier(
            w, words["verbs"], items, low, i, breaks
        ):
            kind = "word"  # "a fishing village", "the waiting room"
        elif w in words["verbs"]:
            kind = "verb"
        elif w in words["fillers"]:
            kind = "stop"
        elif w in STOPWORDS:
            after_article = i > 0 and low[i - 1] in _ARTICLES and not breaks[i]
            kind = "term" if single and after_article and w not in _ARTICLES else "stop"
        elif single:
            kind = "term"
        elif w in words["neutral"] or forms[i][0] in words["neutral"] or w in words["parts"]:
            kind = "neutral"
        elif w in words["descriptive"] or w.isdigit():
            kind = "adj"
        elif _verb_form(w) or _present_tense(w, items, low, i, breaks):
            kind = "verb"
        else:
            kind = "word"
        senses = tuple(single) if kind == "term" and single else ()
        items.append(
            Item(kind if senses or kind != "term" else "stop", s, e, raw, key1, senses, cap)
        )
        item_breaks.append(breaks[i])
        i += 1
    return items, item_breaks


def _overlapped(
    kb: KnowledgeBase, forms: list[tuple[str, ...]], breaks: list[bool], i: int, length: int
) -> bool:
    """Whether a longer term starts inside the candidate and runs past its end.

    "Arctic ice shelf": "arctic ice" is a term, but so is "ice shelf", which names the
    thing; the shorter "Arctic" then stays a modifier.
    """
    n = len(forms)
    for k in range(1, length):
        j = i + k
        longest = max(kb.max_term_len.get(f, 0) for f in forms[j])
        for ln in range(min(longest, n - j), length - k, -1):
            if not any(breaks[j + 1 : j + ln]) and _lookup(kb, forms[j : j + ln]):
                return True
    return False


def _gerund_modifier(
    w: str, verbs: frozenset[str], items: list[Item], low: list[str], i: int, breaks: list[bool]
) -> bool:
    """An '-ing' word inside a noun phrase names a kind, not an action: "a *fishing* village".

    Only between an article, adjective or region word and a following noun; "a dog *fishing*
    in a lake" and "a man *holding* a cup" stay verbs.
    """
    if not w.endswith("ing") or len(w) < 6 or not items or breaks[i]:
        return False
    if w not in verbs and not _verb_form(w):
        return False
    prev = items[-1]
    regional = bool(prev.senses) and all(e.category == "region" for e in prev.senses)
    modifier = prev.kind == "adj" or (prev.kind == "term" and regional)
    if not modifier and not (prev.kind == "stop" and _fold_cached(prev.text) in _ARTICLES):
        return False
    if i + 1 >= len(low) or breaks[i + 1]:
        return False
    nxt = low[i + 1]
    return nxt not in STOPWORDS and nxt not in verbs and not _verb_form(nxt)


def _verb_form(w: str) -> bool:
    """An unknown '-ing' or '-ed' word: 'wading', 'perched' (known nouns matched earlier)."""
    return len(w) > 4 and (w.endswith("ing") or w.endswith("ed"))


def _present_tense(w: str, items: list[Item], low: list[str], i: int, breaks: list[bool]) -> bool:
    """An unknown '-s' word between a named concept and a function word is a verb.

    "a polar bear wanders across the sands": without this, "wanders" would become the head.
    """
    if len(w) < 4 or not w.endswith("s") or w.endswith("ss") or not items or breaks[i]:
        return False
    if items[-1].kind not in ("term", "neutral"):
        return False
    nxt = low[i + 1] if i + 1 < len(low) else ""
    return nxt in STOPWORDS and not breaks[i + 1] if nxt else False


def _lookup(kb: KnowledgeBase, forms: list[tuple[str, ...]]) -> tuple[Key, list[Entry]] | None:
    """Entries for a run of words, merged over their dictionary forms ('oranges', 'orange')."""
    first: Key | None = None
    merged: list[Entry] = []
    for key in _products(forms):
        hit = kb.terms.get(key)
        if hit:
            first = first or key
            merged.extend(e for e in hit if all(e.category != m.category for m in merged))
    return (first, merged) if first is not None else None


def chunk(kb: KnowledgeBase, prompt: str) -> list[Chunk]:
    """Split a prompt into noun-phrase chunks with heads, modifiers and connectors."""
    items, breaks = items_of(kb, prompt)
    chunks: list[Chunk] = []
    run: list[Item] = []
    connector: list[str] = []
    pending: list[str] = []

    def close() -> None:
        if run:
            chunks.append(_make_chunk(kb, len(chunks), run[:], tuple(connector)))
            run.clear()
            connector.clear()

    for k, (item, brk) in enumerate(zip(items, breaks, strict=True)):
        if brk:
            close()
            pending.append(",")
        if run and _colour_and(items, breaks, k):
            run.append(Item("adj", item.start, item.end, item.text, item.key))
            continue  # "black and white stripes": one colour pattern, not two phrases
        if item.kind in ("stop", "verb"):
            close()
            pending.append(_fold_cached(item.text))
            continue
        if not run:
            connector[:] = pending
            pending.clear()
        run.append(item)
    close()
    return chunks


def _colour_and(items: list[Item], breaks: list[bool], k: int) -> bool:
    """Whether item ``k`` is the 'and' between two colours, followed by more of the phrase."""
    if _fold_cached(items[k].text) not in ("and", "&") or k + 2 >= len(items):
        return False
    before, after, then = items[k - 1], items[k + 1], items[k + 2]
    return (
        not breaks[k]
        and not breaks[k + 1]
        and not breaks[k + 2]
        and before.has("colour") is not None
        and after.has("colour") is not None
        and then.kind in ("term", "word", "neutral")
        and then.has("colour") is None
    )


def _make_chunk(kb: KnowledgeBase, index: int, items: list[Item], conn: tuple[str, ...]) -> Chunk:
    parts = kb.words["parts"]
    body = list(items)
    while body and body[-1].kind == "adj":
        body.pop()
    # "the Kremlin walls", "a lemon tree branch": the part word names no new concept.
    while (
        len(body) > 1
        and body[-1].key[-1] in parts
        and any(e.category not in _MODIFIER_ONLY for e in body[-2].senses)
    ):
        body.pop()
    if not body:
        return Chunk(index, items, None, [], conn, items[0].start, items[-1].end, items[0].start)
    head = body[-1]
    mods = body[:-1]
    start = head.start
    for m in reversed(mods):
        if m.kind not in ("term", "word"):
            break
        start = m.start
    c = Chunk(index, items, head, mods, conn, items[0].start, head.end, start)
    if head.kind == "term":
        c.senses = list(head.senses)
    elif head.kind == "word":
        run = [head]
        for m in reversed(mods):
            if m.kind != "word":
                break
            run.insert(0, m)
        c.unknown = " ".join(m.text for m in run)
        c.proper = all(m.cap for m in run)
    return c


def chunk_words(c: Chunk) -> list[str]:
    """A chunk's own words, folded ("at the *bottom* of"): for connectors that skip it."""
    return [w for item in c.items for w in item.key]


def display(prompt: str, c: Chunk) -> str:
    """The chunk as written in the prompt, without leading descriptive adjectives."""
    return prompt[c.display_start : c.end]


def _connector_text(kb: KnowledgeBase, connector: tuple[str, ...]) -> str:
    """The connector as ' word word ', without commas and fillers ('made entirely of')."""
    fillers = kb.words["fillers"]
    return " " + " ".join(w for w in connector if w != "," and w not in fillers) + " "


def link_kind(kb: KnowledgeBase, connector: tuple[str, ...]) -> str:
    """Classify the words between two chunks: 'separate', 'bind' or 'none'."""
    if not connector:
        return "none"
    text = _connector_text(kb, connector)
    active = _connector_text(kb, _passive_by(connector))
    for phrase in kb.links["separating"]:
        # "surrounded by" separates as a whole; a bare passive "by" does not
        if " " + " ".join(phrase) + " " in (text if "by" in phrase[1:] else active):
            return "separate"
    for phrase in kb.links["binding"]:
        if " " + " ".join(phrase) + " " in text:
            return "bind"
    return "none"


def _passive_by(connector: tuple[str, ...]) -> tuple[str, ...]:
    """Drop the 'by' of a passive ("weighed down *by*", "covered *by*"): it binds, unlike
    the 'by' of place ("a dog by the river")."""
    if "by" not in connector:
        return connector
    i = connector.index("by")
    j = i - 1
    while j >= 0 and connector[j] in ("down", "up", "over", "out", "entirely", "completely"):
        j -= 1
    if j >= 0 and connector[j].endswith(("ed", "en")) and len(connector[j]) > 3:
        return connector[:i] + connector[i + 1 :]
    return connector


def has_link(kb: KnowledgeBase, connector: tuple[str, ...], name: str) -> bool:
    """Whether the connector contains one of the phrases of ``kb.links[name]``."""
    text = _connector_text(kb, connector)
    return any(" " + " ".join(p) + " " in text for p in kb.links[name])


__all__ = [
    "Chunk", "Item", "chunk", "chunk_words", "display", "has_link", "items_of", "link_kind",
    "tokenize",
]  # fmt: skip
