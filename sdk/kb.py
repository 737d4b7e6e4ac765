"""The offline planner's knowledge base: loading, validation and lookup indexes.

The knowledge itself is data (``lcfix/data/knowledge.json``); this module only indexes it.
Every name and alias becomes a tuple of normalised words, so a prompt is matched with dict
lookups, never with one regex per entry. See docs/planner-offline.md for the file format.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from lcfix.errors import ConfigError
from lcfix.text import singular, words

DEFAULT_KB_PATH = Path(__file__).parent / "data" / "knowledge.json"

CATEGORIES = (
    "beverage", "food", "fruit", "plant", "vessel", "storage", "jewelry", "animal", "covering",
    "place", "cultural", "object", "material", "role", "outfit", "instrument",
)  # fmt: skip
"""Entity categories a knowledge file may hold (colours and regions have their own sections)."""

_PLACE_KINDS = frozenset({"landmark", "city", "country", "site", "setting", "habitat", "neutral"})
_ANIMAL_TYPES = frozenset({"wild", "domestic", "urban"})
_CLIMATES = frozenset({"cold", "hot"})
_THING_KINDS = frozenset({"", "vehicle", "building"})
"""Objects one can be inside or on, like a place: a boat, a bus, a house."""
_WORD_SECTIONS = (
    "neutral", "parts", "descriptive", "verbs", "material_links", "colour_links", "separating",
    "binding", "fillers", "nouns", "frames",
)  # fmt: skip
# Biomes that fix an animal's climate when its entry gives none: a walrus (arctic, ocean) is
# a cold-climate animal, a camel (desert) a hot-climate one; a fox (forest) is neither.
_COLD_BIOMES = frozenset({"arctic"})
_HOT_BIOMES = frozenset({"desert", "savanna", "rainforest"})
_TEMPERATE_BIOMES = frozenset({"forest", "mountain", "farm", "city"})

Key = tuple[str, ...]


def fold(word: str) -> str:
    """Lower-case, strip accents and a possessive 's: 'Café' -> 'cafe', "chef's" -> 'chef'."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if not w.isascii():
        w = "".join(c for c in unicodedata.normalize("NFKD", w) if not unicodedata.combining(c))
    return w


@lru_cache(maxsize=65536)
def _fold_cached(word: str) -> str:
    return fold(word)


def word_forms(word: str) -> tuple[str, ...]:
    """Candidate dictionary forms of a folded word, most literal first.

    ``lcfix.text.singular`` alone maps 'cookies' to 'cooky' and keeps 'tacos'; the extra
    forms let a lookup find 'cookie' and 'taco' while staying cheap.
    """
    out = [word, singular(word)]
    if len(word) > 3 and word.endswith("s"):
        out.append(word[:-1])
        if word.endswith("es"):
            out.append(word[:-2])
        if word.endswith("ies"):
            out.append(word[:-3] + "y")
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True, eq=False)
class Entry:
    """One entity of the knowledge base, with its relations resolved to canonical names."""

    category: str
    name: str
    desc: str
    aliases: tuple[str, ...] = ()
    partners: tuple[str, ...] = ()
    """Typical partners, display form, first = latent (vessels, habitats, outfits, ...)."""
    partner_names: frozenset[str] = frozenset()
    partner_heads: frozenset[str] = frozenset()
    holds: frozenset[str] = frozenset()
    """Vessel and storage contents; role tools; jewelry storage (canonical names)."""
    holds_display: tuple[str, ...] = ()
    regions: frozenset[str] = frozenset()
    setting: str = ""
    colours: frozenset[str] = frozenset()
    colour_display: tuple[str, ...] = ()
    materials: frozenset[str] = frozenset()
    material_families: frozenset[str] = frozenset()
    material_display: tuple[str, ...] = ()
    family: str = ""
    kind: str = ""
    biomes: frozenset[str] = frozenset()
    coverings: frozenset[str] = frozenset()
    coat: str = ""
    home: frozenset[str] = frozenset()
    plant: str = ""
    generic: bool = False
    topping: bool = False
    climate: str = ""
    """Places: the climate they show ('cold', 'hot'); animals: the climate they live in."""
    wearable: bool = False
    """Clothing, footwear, headwear: never a vessel for food or drink."""

    @property
    def latent(self) -> str | None:
        return self.partners[0] if self.partners else None

    def __repr__(self) -> str:
        return f"Entry({self.category}:{self.name})"


@dataclass(frozen=True)
class Pattern:
    """Metadata of one LC-Mis pattern: which role is fragile, the stage-1 prior, severity."""

    name: str
    fragile: str
    dominant: str
    stage1_end: float
    severity: int
    rationale: str


@dataclass
class KnowledgeBase:
    """An indexed knowledge base. Build it with :func:`load_kb`."""

    version: str
    path: Path
    patterns: dict[str, Pattern]
    templates: dict[str, str]
    terms: dict[Key, list[Entry]] = field(default_factory=dict)
    max_term_len: dict[str, int] = field(default_factory=dict)
    vocab: frozenset[str] = frozenset()
    region_parents: dict[str, frozenset[str]] = field(default_factory=dict)
    region_settings: dict[str, str] = field(default_factory=dict)
    colour_family: dict[str, str] = field(default_factory=dict)
    climate_words: dict[str, str] = field(default_factory=dict)
    """Folded word -> climate it signals ('tropical' -> hot, 'icy' -> cold)."""
    words: dict[str, frozenset[str]] = field(default_factory=dict)
    links: dict[str, tuple[Key, ...]] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)

    def norm(self, word: str) -> tuple[str, ...]:
        """Dictionary forms of one raw word that the knowledge base knows (else its singular)."""
        return _forms(self.vocab, _fold_cached(word))

    def lookup(self, text: str) -> list[Entry]:
        """Entries whose name or an alias is exactly ``text`` (any category)."""
        toks = [self.norm(w) for w in words(text)]
        if not toks:
            return []
        for key in _products(toks):
            hit = self.terms.get(key)
            if hit:
                return hit
        return []

    def find(self, text: str, category: str) -> Entry | None:
        """The entry of ``category`` named ``text`` (or aliased so), if any."""
        for e in self.lookup(text):
            if e.category == category:
                return e
        return None

    def expand_regions(self, regions: Iterable[str]) -> frozenset[str]:
        """Regions plus everything they lie within ('scotland' -> scotland, uk, europe)."""
        out: set[str] = set()
        for r in regions:
            out.add(r)
            out |= self.region_parents.get(r, frozenset())
        return frozenset(out)

    def template(self, category: str, name: str) -> str:
        return self.templates.get(category, "{name}").format(name=name)


@lru_cache(maxsize=131072)
def _forms_cached(vocab_id: int, word: str) -> tuple[str, ...]:
    vocab = _VOCABS[vocab_id]
    found = tuple(f for f in word_forms(word) if f in vocab)
    return found or (singular(word),)


_VOCABS: dict[int, frozenset[str]] = {}


def _forms(vocab: frozenset[str], word: str) -> tuple[str, ...]:
    vid = id(vocab)
    if vid not in _VOCABS:
        _VOCABS[vid] = vocab
    return _forms_cached(vid, word)


def _products(toks: Sequence[tuple[str, ...]]) -> Iterable[Key]:
    if all(len(t) == 1 for t in toks):
        yield tuple(t[0] for t in toks)
        return
    import itertools

    yield from itertools.product(*toks)


def term_key(text: str) -> Key:
    """The lookup key of a knowledge-base name: folded words, as written."""
    return tuple(fold(w) for w in words(text))


class _BadEntry(Exception):
    """A problem in the file; ``load_kb`` adds the file name and raises ConfigError."""


def _strs(raw: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _BadEntry(f"{where}: field {key!r} must be a list of strings")
    return value


def _str(raw: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise _BadEntry(f"{where}: field {key!r} must be a non-empty string")
    return value


def load_kb(path: str | Path | None = None) -> KnowledgeBase:
    """Load, validate and index a knowledge file (default: the shipped one).

    Raises ``ConfigError`` naming the file and the bad entry when the file is malformed.
    """
    p = Path(path) if path is not None else DEFAULT_KB_PATH
    return _load_cached(str(p.resolve()), p.stat().st_mtime_ns if p.exists() else 0)


@lru_cache(maxsize=8)
def _load_cached(path: str, _mtime: int) -> KnowledgeBase:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the knowledge base {p}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{p}:{exc.lineno}: the knowledge base is not valid JSON: {exc.msg}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the knowledge base must be a JSON object")
    try:
        return _Builder(data).build(p)
    except _BadEntry as exc:
        raise ConfigError(f"{p}: {exc}") from None


class _Builder:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.terms: dict[Key, list[Entry]] = {}

    def fail(self, msg: str) -> _BadEntry:
        return _BadEntry(msg)

    def build(self, path: Path) -> KnowledgeBase:
        d = self.data
        version = d.get("version")
        if not isinstance(version, str) or not version:
            raise self.fail("field 'version' must be a non-empty string")
        kb = KnowledgeBase(
            version=version,
            path=path,
            patterns=self._patterns(),
            templates={k: str(v) for k, v in dict(d.get("templates", {})).items()},
        )
        kb.words = self._words()
        kb.links = {
            name: tuple(term_key(x) for x in d.get("words", {}).get(name, []))
            for name in ("material_links", "colour_links", "separating", "binding")
        }
        self._regions(kb)
        self._colours(kb)
        self._climates(kb)
        raws = self._raw_entities()
        # Pass 1: names only, so relations can be resolved whatever the order.
        names: dict[Key, list[tuple[str, str]]] = {}
        for cat, raw, _ in raws:
            for text in [raw["name"], *raw.get("alias", [])]:
                names.setdefault(term_key(text), []).append((cat, raw["name"]))
        vocab = {w for key in names for w in key} | {w for key in self.terms for w in key}
        kb.vocab = frozenset(vocab)
        families = {
            raw["name"]: str(raw.get("family", "")) for cat, raw, _ in raws if cat == "material"
        }
        resolver = _Resolver(kb, names, families)
        plurals: list[tuple[Key, Entry]] = []
        for cat, raw, where in raws:
            entry = self._entry(kb, resolver, cat, raw, where)
            kb.entries.append(entry)
            for text in [entry.name, *entry.aliases]:
                self._add_term(term_key(text), entry)
                # Common nouns only: "Alps", "Athens" and "jeans" have no singular.
                if text[:1].islower() and cat not in ("object", "outfit"):
                    plurals.append((term_key(text), entry))
        self._singulars(kb, plurals)
        kb.terms = self.terms
        for key in self.terms:
            kb.max_term_len[key[0]] = max(kb.max_term_len.get(key[0], 0), len(key))
        return kb

    def _add_term(self, key: Key, entry: Entry) -> None:
        if not key:
            return
        bucket = self.terms.setdefault(key, [])
        if not any(e.category == entry.category for e in bucket):
            bucket.append(entry)

    def _patterns(self) -> dict[str, Pattern]:
        raw = self.data.get("patterns")
        if not isinstance(raw, dict) or not raw:
            raise self.fail("field 'patterns' must be a non-empty object")
        out = {}
        for name, p in raw.items():
            where = f"patterns.{name}"
            try:
                end = float(p["stage1_end"])
                sev = int(p["severity"])
                pat = Pattern(
                    name, str(p["fragile"]), str(p["dominant"]), end, sev, str(p["rationale"])
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise self.fail(
                    f"{where}: needs fragile, dominant, stage1_end, severity, rationale ({exc})"
                ) from exc
            if not 0.025 <= end <= 0.475:
                raise self.fail(f"{where}: stage1_end {end} is outside [0.025, 0.475]")
            if not 1 <= sev <= 5:
                raise self.fail(f"{where}: severity {sev} is outside 1-5")
            out[name] = pat
        return out

    def _words(self) -> dict[str, frozenset[str]]:
        raw = self.data.get("words", {})
        out = {}
        for sec in _WORD_SECTIONS:
            vals = raw.get(sec, [])
            if not isinstance(vals, list):
                raise self.fail(f"words.{sec} must be a list of strings")
            out[sec] = frozenset(fold(v) for v in vals)
        return out

    def _regions(self, kb: KnowledgeBase) -> None:
        raw = self.data.get("regions", {})
        parents: dict[str, set[str]] = {}
        for key, r in raw.items():
            where = f"regions.{key}"
            for w in _strs(r, "words", where):
                self._add_term(term_key(w), Entry("region", key, w, regions=frozenset({key})))
            kb.region_settings[key] = _str(r, "setting", where)
            parents[key] = set(_strs(r, "within", where))
        for key, ps in parents.items():
            for p in ps:
                if p not in parents:
                    raise self.fail(f"regions.{key}: 'within' names unknown region {p!r}")
        for key in parents:  # transitive closure; the region graph is tiny
            seen: set[str] = set()
            todo = list(parents[key])
            while todo:
                r = todo.pop()
                if r not in seen:
                    seen.add(r)
                    todo.extend(parents.get(r, ()))
            kb.region_parents[key] = frozenset(seen)

    def _colours(self, kb: KnowledgeBase) -> None:
        for fam, surfaces in dict(self.data.get("colours", {})).items():
            for s in [fam, *surfaces]:
                kb.colour_family[" ".join(term_key(s))] = fam
                self._add_term(term_key(s), Entry("colour", fam, s))
                for suffix in ("colored", "coloured"):  # "gold-colored", "rust coloured"
                    key = (*term_key(s), suffix)
                    kb.colour_family[" ".join(key)] = fam
                    self._add_term(key, Entry("colour", fam, s))

    def _singulars(self, kb: KnowledgeBase, names: list[tuple[Key, Entry]]) -> None:
        """Index a plural name under its singular too ("sand dunes": "a sand dune"), unless
        that singular means something else ("glasses": "glass", "sweets": "sweet")."""
        other = ("neutral", "parts", "descriptive", "verbs", "fillers")
        taken = set(self.terms) | {(w,) for sec in other for w in kb.words[sec]}
        added = set()
        for key, entry in names:
            one = (*key[:-1], _singular_of_plural(key[-1]))
            if one[-1] != key[-1] and one not in taken:
                self._add_term(one, entry)
                added.add(one[-1])
        kb.vocab = kb.vocab | added

    def _climates(self, kb: KnowledgeBase) -> None:
        for climate, surfaces in dict(self.data.get("climates", {})).items():
            if climate not in _CLIMATES:
                raise self.fail(f"climates: unknown climate {climate!r} (known: cold, hot)")
            if not isinstance(surfaces, list):
                raise self.fail(f"climates.{climate} must be a list of strings")
            for w in surfaces:
                kb.climate_words[fold(str(w))] = climate

    def _raw_entities(self) -> list[tuple[str, dict[str, Any], str]]:
        ents = self.data.get("entities")
        if not isinstance(ents, dict):
            raise self.fail("field 'entities' must be an object of category lists")
        out = []
        for cat, items in ents.items():
            if cat not in CATEGORIES:
                raise self.fail(f"entities: unknown category {cat!r} (known: {CATEGORIES})")
            if not isinstance(items, list):
                raise self.fail(f"entities.{cat} must be a list")
            for i, raw in enumerate(items):
                where = f"entities.{cat}[{i}]"
                if not isinstance(raw, dict):
                    raise self.fail(f"{where} must be an object")
                name = _str(raw, "name", where, required=True)
                where = f"{where} ({name!r})"
                _strs(raw, "alias", where)
                out.append((cat, raw, where))
        return out

    def _entry(
        self, kb: KnowledgeBase, res: _Resolver, cat: str, raw: dict[str, Any], where: str
    ) -> Entry:
        def strs(key: str) -> list[str]:
            return _strs(raw, key, where)

        name = raw["name"]
        desc = _str(raw, "desc", where) or kb.template(cat, name)
        kw: dict[str, Any] = {}
        partner_field = {
            "beverage": "vessels", "food": "vessels", "plant": "bears", "animal": "habitats",
            "role": "outfits",
        }.get(cat)  # fmt: skip
        if partner_field:
            partners = strs(partner_field)
            target = {"vessels": ("vessel",), "bears": ("fruit",), "outfits": ("outfit",)}
            cats = target.get(partner_field, ())
            resolved = [res.canonical(p, cats) for p in partners]
            kw["partners"] = tuple(partners)
            kw["partner_names"] = frozenset(resolved)
            kw["partner_heads"] = frozenset(r.split()[-1] for r in resolved if r)
        if cat in ("vessel", "storage"):
            kw["holds_display"] = tuple(strs("holds"))
            kw["holds"] = frozenset(n for h in strs("holds") for n in res.all_names(h))
        if cat == "jewelry":
            kw["holds"] = frozenset(res.canonical(h, ("storage",)) for h in strs("storage"))
        if cat == "role":
            kw["holds"] = frozenset(res.canonical(h, ()) for h in strs("tools"))
        if "regions" in raw:
            regions = strs("regions")
            for r in regions:
                if r not in kb.region_parents:
                    raise self.fail(f"{where}: unknown region {r!r}")
            kw["regions"] = frozenset(regions)
        if "colours" in raw:
            fams = []
            for c in strs("colours"):
                fam = kb.colour_family.get(" ".join(term_key(c)))
                if fam is None:
                    raise self.fail(f"{where}: unknown colour {c!r}")
                fams.append(fam)
            kw["colours"] = frozenset(fams)
            kw["colour_display"] = tuple(strs("colours"))
        if "materials" in raw:
            mats = strs("materials")
            kw["material_display"] = tuple(mats)
            kw["materials"] = frozenset(res.canonical(m, ("material",)) for m in mats)
            kw["material_families"] = frozenset(res.family(m) for m in mats) - {""}
        if cat == "material":
            kw["family"] = _str(raw, "family", where, required=True)
        if cat == "place":
            kind = _str(raw, "kind", where, required=True)
            if kind not in _PLACE_KINDS:
                raise self.fail(f"{where}: kind {kind!r} is not one of {sorted(_PLACE_KINDS)}")
            kw["kind"] = kind
            kw["biomes"] = frozenset({raw["biome"]}) if raw.get("biome") else frozenset()
            kw["climate"] = self._climate(raw, where)
        if cat == "covering":
            kind = _str(raw, "kind", where) or "covering"
            if kind not in ("covering", "part"):
                raise self.fail(f"{where}: kind must be 'covering' or 'part'")
            kw["kind"] = kind
        if cat == "animal":
            kind = _str(raw, "type", where) or "wild"
            if kind not in _ANIMAL_TYPES:
                raise self.fail(f"{where}: type {kind!r} is not one of {sorted(_ANIMAL_TYPES)}")
            kw["kind"] = kind
            kw["biomes"] = frozenset(strs("biomes"))
            kw["coverings"] = frozenset(res.canonical(c, ("covering",)) for c in strs("coverings"))
            kw["coat"] = _str(raw, "coat", where)
            kw["climate"] = self._climate(raw, where) or _animal_climate(kw["biomes"])
            kw["home"] = frozenset(
                h if h in kb.region_parents else res.canonical(h, ("place",)) for h in strs("home")
            )
        if cat in ("food", "cultural"):
            kw["setting"] = _str(raw, "setting", where)
        if cat in ("object", "cultural"):
            kind = _str(raw, "kind", where)
            if kind not in _THING_KINDS:
                raise self.fail(f"{where}: kind {kind!r} is not one of vehicle, building")
            kw["kind"] = kind
        if cat == "fruit" and raw.get("plant"):
            kw["plant"] = res.canonical(_str(raw, "plant", where), ("plant",))
        kw["wearable"] = cat == "outfit" or bool(raw.get("wearable", False))
        kw["generic"] = bool(raw.get("generic", False))
        kw["topping"] = bool(raw.get("topping", False))
        return Entry(cat, name, desc, aliases=tuple(strs("alias")), **kw)

    def _climate(self, raw: dict[str, Any], where: str) -> str:
        climate = _str(raw, "climate", where)
        if climate and climate not in _CLIMATES:
            raise self.fail(f"{where}: climate {climate!r} is not one of cold, hot")
        return climate


def _singular_of_plural(word: str) -> str:
    if len(word) < 5 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    return word[:-1]


def _animal_climate(biomes: frozenset[str]) -> str:
    if biomes & _COLD_BIOMES and not biomes & _HOT_BIOMES:
        return "cold"
    if biomes & _HOT_BIOMES and not biomes & (_COLD_BIOMES | _TEMPERATE_BIOMES):
        return "hot"
    return ""


class _Resolver:
    """Maps a related name ('beer mug', 'lemons') to the canonical name of its entry."""

    def __init__(
        self,
        kb: KnowledgeBase,
        names: dict[Key, list[tuple[str, str]]],
        families: dict[str, str],
    ) -> None:
        self.kb = kb
        self.names = names
        self.families = families

    def canonical(self, text: str, cats: Sequence[str]) -> str:
        toks = [_forms(self.kb.vocab, fold(w)) for w in words(text)]
        for key in _products(toks):
            hits = self.names.get(key)
            if hits:
                for cat, name in hits:
                    if not cats or cat in cats:
                        return name
                return hits[0][1]
        return " ".join(singular(fold(w)) for w in words(text))

    def all_names(self, text: str) -> set[str]:
        """Every canonical name ``text`` may refer to ('rose': the flower and the wine)."""
        toks = [_forms(self.kb.vocab, fold(w)) for w in words(text)]
        out = {name for key in _products(toks) for _, name in self.names.get(key, ())}
        return out or {self.canonical(text, ())}

    def family(self, text: str) -> str:
        return self.families.get(self.canonical(text, ("material",)), "")
