"""The embedded offline planner: no network, no key, deterministic and fast.

    >>> from lcfix.offline import OfflinePlanner
    >>> plan = OfflinePlanner(embeddings=False).plan("A tea cup of iced coke")
    >>> plan.pairs[0].fragile, plan.pairs[0].latent
    ('tea cup', 'glass')

It extracts concept phrases (:mod:`lcfix.phrases`), classifies them with the shipped
knowledge base (:mod:`lcfix.kb`), detects clashes pattern by pattern (:mod:`lcfix.detect`)
and builds the plan with :func:`lcfix.compose.compose_plan`. With the embeddings extra
installed and switched on (``embeddings=True`` or ``LCFIX_EMBEDDINGS=1``), phrases the
knowledge base lacks are mapped onto its nearest entry by MiniLM (:mod:`lcfix.embeddings`),
batched across ``plan_many``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from lcfix.compose import compose_plan
from lcfix.detect import Finding, detect
from lcfix.errors import ConfigError, InputError, LcfixError
from lcfix.kb import Entry, KnowledgeBase, fold, load_kb
from lcfix.phrases import Chunk, chunk
from lcfix.planner import BasePlanner, check_prompt
from lcfix.plans import ConceptPair, Plan, PlannerInfo
from lcfix.text import content_words, phrase_in

DEFAULT_THRESHOLD = 0.8
"""Cosine similarity above which an unknown phrase takes the category of its nearest entry."""
_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})
_LOCATIVE = frozenset(
    {"in", "at", "near", "front", "outside", "through", "across", "visiting", "past", "around",
     "inside", "before", "over", "beside", "by"}
)  # fmt: skip
# A described setting ("a Japanese train platform", "a tropical lagoon") is a place after
# these too; a bare capitalised name after "on" is not ("sushi on Ikea furniture").
_LOCATIVE_DESCRIBED = _LOCATIVE | {
    "on", "along", "aboard", "into", "within", "under", "among", "amid", "amidst", "between",
}  # fmt: skip
_PLAN_CACHE_SIZE = 4096


def embeddings_enabled(requested: bool | None) -> bool:
    """Resolve the ``embeddings`` switch: the argument, else ``LCFIX_EMBEDDINGS``; off by default.

    Off by default because MiniLM did not improve any blind labelled set (it only repairs
    misspellings) while costing a 5-10 s model load; see docs/planner-offline.md. ``True``
    (or ``LCFIX_EMBEDDINGS=1``) without the extra raises ``ExtraNotInstalledError``.
    """
    from lcfix import embeddings

    if requested is None:
        env = os.environ.get("LCFIX_EMBEDDINGS", "").strip().lower()
        if env in _OFF:
            return False
        if env not in _ON:
            raise ConfigError(f"LCFIX_EMBEDDINGS must be 1/true or 0/false, got {env!r}")
        requested = True
    if requested and not embeddings.available():
        raise embeddings.missing_extra()
    return requested


class OfflinePlanner(BasePlanner):
    """Plans prompts with the shipped knowledge base, optionally generalised by MiniLM."""

    name = "offline"

    def __init__(
        self,
        *,
        embeddings: bool | None = None,
        kb_path: str | Path | None = None,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.kb: KnowledgeBase = load_kb(kb_path)
        self.embeddings = embeddings_enabled(embeddings)
        self.threshold = threshold
        self.info = PlannerInfo(
            name="offline", model="minilm" if self.embeddings else None, version=self.kb.version
        )
        self._index: _EntryIndex | None = None
        self._plans: OrderedDict[str, Plan] = OrderedDict()

    def plan(self, prompt: str) -> Plan:
        result = self.plan_many([prompt])[0]
        if isinstance(result, LcfixError):
            raise result
        return result

    def plan_many(self, prompts: Sequence[str]) -> list[Plan | LcfixError]:
        """Plan every prompt; unknown phrases of the whole batch are embedded in one call."""
        out: list[Plan | LcfixError | None] = [None] * len(prompts)
        todo: list[tuple[int, str, list[Chunk]]] = []
        for i, prompt in enumerate(prompts):
            try:
                check_prompt(prompt)
            except InputError as exc:
                out[i] = exc
                continue
            cached = self._plans.get(prompt)
            if cached is not None:
                out[i] = cached
                continue
            todo.append((i, prompt, chunk(self.kb, prompt)))
        if self.embeddings and todo:
            self._classify_unknown([c for _, _, chunks in todo for c in _embeddable(chunks)])
        for i, prompt, chunks in todo:
            _guess_places(self.kb, chunks)
            plan = self._compose(prompt, detect(self.kb, prompt, chunks))
            self._remember(prompt, plan)
            out[i] = plan
        return [r for r in out if r is not None]

    def _classify_unknown(self, chunks: list[Chunk]) -> None:
        if not chunks:
            return
        if self._index is None:
            self._index = _EntryIndex(self.kb)
        texts = sorted({c.unknown for c in chunks if c.unknown})
        found = self._index.classify(texts, self.threshold)
        for c in chunks:
            if c.unknown and found.get(c.unknown):
                c.senses = list(found[c.unknown])

    def _compose(self, prompt: str, findings: list[Finding]) -> Plan:
        pairs: list[ConceptPair] = []
        descriptions: dict[str, str] = {}
        ends: list[float] = []
        for f in findings:
            if not _from_prompt(prompt, f.fragile) or not _from_prompt(prompt, f.dominant):
                continue
            pairs.append(
                ConceptPair(
                    fragile=f.fragile,
                    dominant=f.dominant,
                    latent=f.latent,
                    pattern=f.pattern,
                    severity=f.severity,
                    rationale=f.rationale,
                )
            )
            ends.append(self.kb.patterns[f.pattern].stage1_end)
            for name, desc in ((f.fragile, f.fragile_desc), (f.dominant, f.dominant_desc)):
                if desc and name not in descriptions:
                    descriptions[name] = desc
        try:
            return compose_plan(
                prompt,
                pairs,
                planner=self.info,
                descriptions=descriptions,
                stage1_end=max(ends) if ends else None,
            )
        except ValidationError:
            # Never fail a prompt because of an odd phrase: plan it as not at risk.
            return compose_plan(prompt, [], planner=self.info)

    def _remember(self, prompt: str, plan: Plan) -> None:
        self._plans[prompt] = plan
        if len(self._plans) > _PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)


def _from_prompt(prompt: str, phrase: str) -> bool:
    return bool(content_words(phrase)) and phrase_in(prompt, phrase)


def _embeddable(chunks: list[Chunk]) -> list[Chunk]:
    """Unknown chunks worth embedding: a clash needs two concepts in the prompt."""
    concepts = sum(1 for c in chunks if c.senses or c.unknown)
    return [c for c in chunks if c.unknown and not c.senses] if concepts >= 2 else []


def _guess_places(kb: KnowledgeBase, chunks: list[Chunk]) -> None:
    """Give a place sense to an unknown phrase after 'in', 'at', 'on', 'in front of'...

    A phrase with a region word ("a Japanese train platform") is a setting of that region,
    one with a habitat word ("a rainforest clearing") that habitat, one with a climate word
    ("a tropical lagoon") a habitat of that climate, and an unknown capitalised name a named
    place, except in Title Case prompts, where capitals say nothing.
    """
    heads = [c.head for c in chunks if c.head is not None and c.head.kind in ("term", "word")]
    title_case = bool(heads) and sum(h.cap for h in heads) * 2 > len(heads)
    for c in chunks:
        if c.index == 0 or c.neutral:
            continue
        connector = _lead_in(chunks, c)
        if not _LOCATIVE_DESCRIBED & connector:
            continue
        regions = frozenset(r for m in c.mods for e in m.senses for r in e.regions)
        thing = next((e for e in c.senses if e.kind in ("vehicle", "building")), None)
        if thing is not None and c.sense("place") is None and regions | thing.regions:
            # "on a Dutch canal boat", "aboard a London bus": a setting of that region
            regions |= thing.regions
            c.senses.append(Entry("place", thing.name, "", kind="setting", regions=regions))
            continue
        if c.senses or not c.unknown:
            continue
        climate = _climate_of(kb, c)
        habitat = next((e for m in reversed(c.mods) for e in m.senses if e.kind == "habitat"), None)
        if regions:  # "a Texas rodeo", "a Moroccan riad": a setting of that region
            c.senses = [
                Entry("place", c.unknown, "", kind="setting", regions=regions, climate=climate)
            ]
        elif habitat is not None:  # "a rainforest clearing", "a jungle trail"
            c.senses = [habitat]
        elif climate:  # "a tropical lagoon", "an icy plateau"
            c.senses = [Entry("place", c.unknown, "", kind="habitat", climate=climate)]
        elif c.proper and not title_case and _LOCATIVE & connector:
            c.senses = [Entry("place", c.unknown, "", kind="landmark")]


def _lead_in(chunks: list[Chunk], c: Chunk) -> set[str]:
    """The words before a phrase, through part words and places it is 'of': "on the *deck*
    of a boat" -> on, of; "between the *market stalls* of a medina" -> between, of."""
    words = set(c.connector)
    joined = c.connector[:1] == ("of",)
    for j in range(c.index - 1, -1, -1):
        o = chunks[j]
        if not (o.neutral or (joined and o.sense("place") is not None)):
            break
        words |= set(o.connector)
        joined = o.connector[:1] == ("of",)
    return words


def _climate_of(kb: KnowledgeBase, c: Chunk) -> str:
    """The climate that the words of a phrase name, if exactly one ("tropical" -> hot)."""
    found = {
        kb.climate_words[w]
        for item in c.items
        for w in map(fold, item.text.split())
        if w in kb.climate_words
    }
    return found.pop() if len(found) == 1 else ""


class _EntryIndex:
    """Knowledge-base labels (names and aliases) searchable by embedding similarity."""

    def __init__(self, kb: KnowledgeBase) -> None:
        from lcfix.embeddings import Embedder, NearestLabel

        by_label: dict[str, list[Entry]] = {}
        # Generic scene words are labels too, with no entry: a phrase nearest to "road" or
        # "festival" stays unclassified instead of snapping onto an unrelated entity.
        for word in kb.words["neutral"] | kb.words["parts"]:
            by_label.setdefault(word, [])
        for entry in kb.entries:
            for label in (entry.name, *entry.aliases):
                bucket = by_label.setdefault(label.lower(), [])
                if entry not in bucket:
                    bucket.append(entry)
        self.labels = sorted(by_label)
        self.entries = [tuple(by_label[label]) for label in self.labels]
        self.search = NearestLabel(Embedder(), kb.version, self.labels)
        self.cache: dict[str, tuple[Entry, ...]] = {}

    def classify(self, texts: Sequence[str], threshold: float) -> dict[str, tuple[Entry, ...]]:
        new = [t for t in texts if t not in self.cache]
        for text, (idx, sim) in zip(new, self.search.nearest(new), strict=True):
            self.cache[text] = self.entries[idx] if sim >= threshold else ()
        return {t: self.cache[t] for t in texts}
