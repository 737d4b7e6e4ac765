"""LC-Mis clash detection over extracted chunks: one rule per pattern. No I/O.

Each rule pairs two chunks whose categories form a pattern (beverage + vessel, animal +
covering, ...) and reports a clash when the partner is not among the entity's typical
partners: a glass of iced coke is fine, a tea cup of iced coke is not. Which side is fragile
follows the pattern metadata of the knowledge base (the vessel, the place, the covering, the
jewelry, the fruit, the colour, the material, the outfit).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from lcfix.kb import Entry, KnowledgeBase
from lcfix.phrases import Chunk, display, has_link, link_kind

_CONTENT = ("beverage", "food", "fruit")
_HOLDER_FIRST = frozenset(
    {"of", "with", "containing", "holding", "holds", "filled", "full", "brimming",
     "overflowing", "stuffed", "loaded"}
)  # fmt: skip
_CONTENT_FIRST = frozenset(
    {"in", "into", "inside", "within", "on", "onto", "upon", "from", "out", "served", "poured",
     "bottom"}
)  # fmt: skip
_LOCATED = frozenset({"landmark", "city", "country", "site", "setting"})
# A wild animal in a habitat of biome B clashes when B conflicts with every biome it lives in.
_BIOME_CONFLICTS = {
    "arctic": frozenset({"desert", "savanna", "rainforest"}),
    "desert": frozenset({"arctic", "ocean", "rainforest", "wetland"}),
    "ocean": frozenset({"desert", "savanna", "rainforest", "forest", "mountain", "wetland"}),
    "rainforest": frozenset({"arctic", "desert"}),
    "savanna": frozenset({"arctic", "ocean"}),
    "wetland": frozenset({"arctic", "desert"}),
    "river": frozenset({"desert", "arctic"}),
    "mountain": frozenset({"ocean"}),
    "forest": frozenset({"ocean", "desert"}),
}


@dataclass(frozen=True)
class Finding:
    """One detected clash, with names as written in the prompt."""

    fragile: str
    dominant: str
    latent: str | None
    pattern: str
    severity: int
    rationale: str
    fragile_desc: str
    dominant_desc: str
    position: int


class _Ctx:
    def __init__(self, kb: KnowledgeBase, prompt: str, chunks: list[Chunk]) -> None:
        self.kb = kb
        self.prompt = prompt
        self.chunks = chunks
        self.material_of: dict[int, list[Chunk]] = {}
        self.material_role: set[int] = set()
        self.colour_of: dict[int, list[Chunk]] = {}
        self.findings: list[Finding] = []
        self.fragile_seen: set[int | str] = set()

    def text(self, c: Chunk) -> str:
        return display(self.prompt, c)

    def live(self, c: Chunk) -> bool:
        """A chunk that names a concept (not neutral, not a material or colour predicate)."""
        return not c.neutral and c.index not in self.material_role and not _colour_only(c)

    def neighbours(self, c: Chunk) -> Iterator[tuple[Chunk, tuple[str, ...], bool]]:
        """The live chunks right before and after ``c`` with the words between them.

        The flag says whether the neighbour comes first.
        """
        before: list[str] = list(c.connector)
        for j in range(c.index - 1, -1, -1):
            o = self.chunks[j]
            if self.live(o):
                yield o, tuple(before), True
                break
            before = [*o.connector, *_words_of(o), *before]
        after: list[str] = []
        for j in range(c.index + 1, len(self.chunks)):
            o = self.chunks[j]
            after = [*after, *o.connector]
            if self.live(o):
                yield o, tuple(after), False
                break
            after = [*after, *_words_of(o)]

    def add(
        self,
        fragile: Chunk | str,
        dominant: Chunk | str,
        pattern: str,
        latent: str | None,
        fragile_entry: Entry | None,
        dominant_entry: Entry | None,
        *,
        position: int,
        severity: int | None = None,
    ) -> None:
        pat = self.kb.patterns.get(pattern)
        if pat is None:  # a custom knowledge file may leave a pattern out
            return
        f = fragile if isinstance(fragile, str) else self.text(fragile)
        d = dominant if isinstance(dominant, str) else self.text(dominant)
        # One pair per fragile concept: the same phrase repeated needs staging once.
        if not f.strip() or not d.strip() or {position, f.lower()} & self.fragile_seen:
            return
        self.fragile_seen |= {position, f.lower()}
        sev = pat.severity if severity is None else severity
        self.findings.append(
            Finding(
                fragile=f,
                dominant=d,
                latent=latent,
                pattern=pattern,
                severity=max(1, min(5, sev)),
                rationale=pat.rationale.format(
                    dominant=d,
                    fragile=f,
                    latent=latent or "something else",
                    a_latent=_with_article(latent) if latent else "something else",
                ),
                fragile_desc=_desc(self.kb, fragile_entry, f),
                dominant_desc=_desc(self.kb, dominant_entry, d),
                position=position,
            )
        )


_MASS = frozenset({"ice", "water", "snow", "sand", "grass", "wool", "fur", "mud", "honey"})


def _with_article(phrase: str) -> str:
    """'glass' -> 'a glass', 'espresso cup' -> 'an espresso cup'; plurals and masses unchanged."""
    words = phrase.split()
    last = words[-1].lower() if words else ""
    if not last or last in _MASS or (last.endswith("s") and not last.endswith("ss")):
        return phrase
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


def _words_of(c: Chunk) -> list[str]:
    """A skipped chunk's own words ("at the *bottom* of"), lower-cased, for the connector."""
    return [w for item in c.items for w in item.key]


def _desc(kb: KnowledgeBase, entry: Entry | None, name: str) -> str:
    if entry is None:
        return ""
    if entry.category == "colour":
        return kb.template("colour", name)
    return entry.desc


def _colour_only(c: Chunk) -> bool:
    return bool(c.senses) and all(e.category == "colour" for e in c.senses) and not c.mods


def detect(kb: KnowledgeBase, prompt: str, chunks: list[Chunk]) -> list[Finding]:
    """Every clash in the chunked prompt, most severe first, one per fragile concept."""
    ctx = _Ctx(kb, prompt, chunks)
    _predicates(ctx)
    _vessels(ctx)
    _storage(ctx)
    _coverings(ctx)
    _fruit(ctx)
    _locations(ctx)
    _colours(ctx)
    _materials(ctx)
    _roles(ctx)
    return sorted(ctx.findings, key=lambda f: (-f.severity, f.position))


def _predicates(ctx: _Ctx) -> None:
    """Attach 'X made of Y' materials and 'X painted blue' colours to the chunk X."""
    last: Chunk | None = None
    for c in ctx.chunks:
        if last is not None and has_link(ctx.kb, c.connector, "material_links"):
            ctx.material_role.add(c.index)
            ctx.material_of.setdefault(last.index, []).append(c)
            continue
        if last is not None and _colour_only(c) and has_link(ctx.kb, c.connector, "colour_links"):
            ctx.colour_of.setdefault(last.index, []).append(c)
            continue
        if not c.neutral and not _colour_only(c):
            last = c


def _holds(connector: tuple[str, ...], holder_first: bool) -> bool:
    words = set(connector)
    return bool(words & (_HOLDER_FIRST if holder_first else _CONTENT_FIRST))


def _content(c: Chunk) -> Entry | None:
    for e in c.senses:
        if e.category in _CONTENT:
            return e
    return None


def _vessels(ctx: _Ctx) -> None:
    kb = ctx.kb
    links: list[tuple[Chunk, Entry, Chunk, Entry]] = []
    occupant: dict[int, int] = {}
    for c in ctx.chunks:
        content = _content(c) if ctx.live(c) else None
        if content is None:
            continue
        for o, conn, first in ctx.neighbours(c):
            vessel = o.sense("vessel")
            if vessel is None or _content(o) is not None or link_kind(kb, conn) == "separate":
                continue
            if _holds(conn, holder_first=first):
                links.append((c, content, o, vessel))
                if first and "of" in conn:  # "a glass of milk": the glass holds the milk
                    occupant.setdefault(o.index, c.index)
    by_content: dict[int, set[str]] = {}
    for c, _, _, vessel in links:
        by_content.setdefault(c.index, set()).add(vessel.name)
    for c, content, o, vessel in links:
        if occupant.get(o.index, c.index) != c.index:
            continue  # "pancakes with a glass of milk": the glass is taken
        # A saucer under a cup, a plate under a bowl: it holds the vessel, not the food.
        if any(n in vessel.holds for n in by_content[c.index] - {vessel.name}):
            continue
        if content.topping or _fits(content, vessel):
            continue
        pattern = "beverage-container" if content.category == "beverage" else "food-tableware"
        latent = content.latent or (vessel.holds_display[0] if vessel.holds_display else None)
        ctx.add(o, c, pattern, latent, vessel, content, position=o.index)


def _fits(content: Entry, vessel: Entry) -> bool:
    if vessel.name in content.partner_names or content.name in vessel.holds:
        return True
    if content.category == "fruit":
        return vessel.generic or "fruit" in vessel.holds or vessel.name in ("fruit bowl", "basket")
    return vessel.generic and vessel.name.split()[-1] in content.partner_heads


_ITEM_CATEGORIES = ("jewelry", "food", "fruit", "beverage", "object", "instrument", "cultural")


def _storage(ctx: _Ctx) -> None:
    kb = ctx.kb
    for c in ctx.chunks:
        if not ctx.live(c):
            continue
        store = c.sense("storage")
        # A vessel is storage for jewelry only: food in a vessel is the food-tableware rule.
        only_jewelry = store is None
        store = store or c.sense("vessel")
        if store is None:
            continue
        for o, conn, first in ctx.neighbours(c):
            if link_kind(kb, conn) == "separate" or not _holds(conn, holder_first=not first):
                continue
            item = next((e for e in o.senses if e.category in _ITEM_CATEGORIES), None)
            if only_jewelry and (item is None or item.category != "jewelry"):
                continue
            animal = o.sense("animal")
            if item is None and animal is not None and _holds_animals(kb, store):
                item = animal
            if item is None or o.sense("storage") is not None:
                continue
            if _stores(store, item):
                continue
            if item.category in _CONTENT and not only_jewelry:
                # Milk in a boot, soup in a toilet: the drink's own vessel replaces the odd
                # container, as in the beverage-container and food-tableware patterns.
                pattern = "beverage-container" if item.category == "beverage" else "food-tableware"
                ctx.add(c, o, pattern, item.latent, store, item, position=c.index)
                continue
            pattern = "jewelry-storage" if item.category == "jewelry" else "object-storage"
            latent = store.holds_display[0] if store.holds_display else None
            ctx.add(o, c, pattern, latent, item, store, position=o.index)


def _holds_animals(kb: KnowledgeBase, store: Entry) -> bool:
    return any(kb.find(h, "animal") is not None for h in store.holds)


def _stores(store: Entry, item: Entry) -> bool:
    if item.name in store.holds or item.category in store.holds:
        return True
    if item.category == "jewelry" and (store.name in item.holds or "jewelry" in store.holds):
        return True
    return item.category in _CONTENT and "food" in store.holds


def _coverings(ctx: _Ctx) -> None:
    for c in ctx.chunks:
        cov = c.sense("covering") if ctx.live(c) else None
        if cov is None:
            continue
        animal_chunk = None
        for o, conn, _first in ctx.neighbours(c):
            # Only the phrase right before ("a zebra with stripes") or, failing that, right
            # after ("leopard spots on a zebra"): "a knight in armor on a horse" is no horse's.
            if o.sense("animal") is not None and link_kind(ctx.kb, conn) != "separate":
                animal_chunk = o
            break
        if animal_chunk is None:
            continue
        animal = animal_chunk.sense("animal")
        assert animal is not None
        owners = [e for _, e in c.mod_senses("animal")]
        clash = False
        if owners and all(o.name != animal.name for o in owners):
            clash = True
        elif cov.kind == "covering" and animal.coverings and not owners:
            clash = cov.name not in animal.coverings
        if not clash and animal.colours:
            fams = {e.name for _, e in c.mod_senses("colour")}
            clash = bool(fams) and not fams <= animal.colours
        if clash:
            latent = animal.coat or None
            ctx.add(c, animal_chunk, "animal-covering", latent, cov, animal, position=c.index)


def _fruit(ctx: _Ctx) -> None:
    for c in ctx.chunks:
        fruit = c.sense("fruit") if ctx.live(c) else None
        if fruit is None:
            continue
        for o, conn, _first in ctx.neighbours(c):
            plant = o.sense("plant")
            if plant is None or link_kind(ctx.kb, conn) == "separate":
                continue
            if fruit.plant == plant.name or fruit.name in plant.partner_names:
                break
            ctx.add(c, o, "fruit-plant", plant.latent, fruit, plant, position=c.index)
            break


def _place(c: Chunk) -> Entry | None:
    e = c.sense("place")
    return e if e is not None and e.kind != "neutral" else None


def _chunk_regions(ctx: _Ctx, c: Chunk, place: Entry) -> frozenset[str]:
    regions = set(place.regions)
    for m in c.mods:
        for e in m.senses:
            if e.category in ("region", "place", "food", "cultural"):
                regions |= e.regions
    return ctx.kb.expand_regions(regions)


def _locations(ctx: _Ctx) -> None:
    places = [(c, p) for c in ctx.chunks if ctx.live(c) and (p := _place(c)) is not None]
    if not places:
        return
    for c in ctx.chunks:
        if not ctx.live(c) or _place(c) is not None:
            continue
        animal = c.sense("animal")
        local = _regional(ctx, c)
        for loc, place in places:
            regions = _chunk_regions(ctx, loc, place)
            located = place.kind in _LOCATED or bool(place.regions)
            if local is not None and located and regions and not (local.regions & regions):
                setting = local.setting or _region_setting(ctx.kb, local)
                ctx.add(loc, c, "cuisine-location", setting, place, local, position=loc.index)
            if animal is not None and animal.kind == "wild":
                _species_site(ctx, c, animal, loc, place, regions)


_REGIONAL = ("food", "beverage", "cultural", "role", "outfit", "object", "instrument")


def _regional(ctx: _Ctx, c: Chunk) -> Entry | None:
    """The regional sense of a chunk: a dish, drink or cultural item from one region, or any
    item said to be from one ("a *Mexican* mariachi band", "an *Italian* espresso")."""
    for e in c.senses:
        if e.category in ("food", "cultural", "beverage", "role") and e.regions and not e.topping:
            return e
    said = frozenset(
        r for m in c.mods for e in m.senses if e.category == "region" for r in e.regions
    )
    item = next((e for e in c.senses if e.category in _REGIONAL and not e.topping), None)
    if not said or item is None:
        return None
    setting = next(
        (ctx.kb.region_settings[r] for r in sorted(said) if r in ctx.kb.region_settings), ""
    )
    return Entry(item.category, item.name, item.desc, regions=said, setting=setting)


def _region_setting(kb: KnowledgeBase, e: Entry) -> str | None:
    for r in sorted(e.regions):
        if kb.region_settings.get(r):
            return kb.region_settings[r]
    return None


def _species_site(
    ctx: _Ctx, c: Chunk, animal: Entry, loc: Chunk, place: Entry, regions: frozenset[str]
) -> None:
    latent = animal.latent
    if place.kind == "habitat":
        biomes = place.biomes
        if not biomes or not animal.biomes or biomes & animal.biomes:
            return
        if all(b in _BIOME_CONFLICTS.get(a, frozenset()) for a in animal.biomes for b in biomes):
            ctx.add(loc, c, "species-site", latent, place, animal, position=loc.index, severity=3)
        return
    if place.kind not in _LOCATED or (place.kind == "setting" and not regions):
        return
    if place.name in animal.home or animal.home & regions:
        return
    ctx.add(loc, c, "species-site", latent, place, animal, position=loc.index)


def _colour_items(ctx: _Ctx, c: Chunk) -> list[tuple[str, str]]:
    """(colour family, text as written) for the colours said of chunk ``c``."""
    out = []
    for m in c.mods:
        e = m.has("colour")
        if e is not None:
            out.append((e.name, m.text))
    for p in ctx.colour_of.get(c.index, []):
        if p.head is not None and p.senses:
            out.append((p.senses[0].name, p.head.text))
    return out


def _colours(ctx: _Ctx) -> None:
    for c in ctx.chunks:
        if not ctx.live(c) or c.sense("covering") is not None:
            continue
        entity = next((e for e in c.senses if e.colours), None)
        if entity is None:
            continue
        for fam, text in _colour_items(ctx, c):
            if fam not in entity.colours:
                latent = entity.colour_display[0] if entity.colour_display else None
                dominant = ctx.prompt[_after_colours(c) : c.end]
                ctx.add(
                    text,
                    dominant,
                    "object-attribute",
                    latent,
                    next(iter(ctx.kb.lookup(text)), None),
                    entity,
                    position=c.index,
                )
                break


def _after_colours(c: Chunk) -> int:
    end = c.display_start
    for m in c.mods:
        if m.start >= c.display_start and m.has("colour") is not None:
            end = m.end
    return _after(c, end)


def _after(c: Chunk, end: int) -> int:
    """Where the chunk's name starts once the modifiers ending at ``end`` are left out."""
    assert c.head is not None
    start = c.display_start
    for m in [*c.mods, c.head]:
        if m.start >= end:
            return max(start, m.start)
    return c.head.start


def _materials(ctx: _Ctx) -> None:
    kb = ctx.kb
    for c in ctx.chunks:
        if not ctx.live(c):
            continue
        obj = next(
            (e for e in c.senses if e.materials and e.category in ("object", "vessel")), None
        )
        if obj is None:
            continue
        # Vessels come in every material ("a glass mug", "a metal bowl"): only an explicit
        # "made of" counts for them.
        adjectives = c.mod_senses("material") if obj.category == "object" else []
        for m, mat in adjectives:
            # "gold" may be a colour; "cheese platter", "ice cream truck" name a content.
            if any(e.category in ("colour", *_CONTENT) for e in m.senses):
                continue
            if _material_fits(obj, mat):
                continue
            dominant = ctx.prompt[_after(c, m.end) : c.end]
            ctx.add(
                m.text,
                dominant,
                "object-material",
                _first(obj.material_display),
                mat,
                obj,
                position=c.index,
            )
            break
        for mc in ctx.material_of.get(c.index, []):
            said = mc.sense("material")
            if said is not None and _material_fits(obj, said):
                continue
            if mc.head is None or mc.neutral or " ".join(mc.head.key) in obj.materials:
                continue
            entry = said or next(iter(mc.senses), None)
            # An unknown material ("made of licorice") is probably unusual, but less surely.
            severity = None if said is not None else _severity(kb, "object-material") - 1
            ctx.add(
                mc,
                c,
                "object-material",
                _first(obj.material_display),
                entry,
                obj,
                position=mc.index,
                severity=severity,
            )


def _severity(kb: KnowledgeBase, pattern: str) -> int:
    pat = kb.patterns.get(pattern)
    return pat.severity if pat is not None else 3


def _material_fits(obj: Entry, mat: Entry) -> bool:
    return mat.name in obj.materials or mat.family in obj.material_families


def _first(values: tuple[str, ...]) -> str | None:
    return values[0] if values else None


def _roles(ctx: _Ctx) -> None:
    for c in ctx.chunks:
        if not ctx.live(c):
            continue
        outfit = c.sense("outfit")
        tool = c.sense("instrument")
        if outfit is None and tool is None:
            continue
        for o, conn, _first in ctx.neighbours(c):
            role = o.sense("role")
            if role is None or link_kind(ctx.kb, conn) == "separate":
                continue
            if outfit is not None and outfit.name not in role.partner_names:
                ctx.add(c, o, "role-outfit", role.latent, outfit, role, position=c.index)
            elif outfit is None and tool is not None and tool.name not in role.holds:
                latent = next(iter(sorted(role.holds)), None)
                ctx.add(c, o, "role-instrument", latent, tool, role, position=c.index)
            break
