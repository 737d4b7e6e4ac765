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

from lcfix.kb import Entry, KnowledgeBase, fold
from lcfix.phrases import Chunk, chunk_words, display, has_link, link_kind
from lcfix.vessels import CONTENT, storage, vessels, worn_vessels

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
            before = [*o.connector, *chunk_words(o), *before]
        after: list[str] = []
        for j in range(c.index + 1, len(self.chunks)):
            o = self.chunks[j]
            after = [*after, *o.connector]
            if self.live(o):
                yield o, tuple(after), False
                break
            after = [*after, *chunk_words(o)]

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


def _desc(kb: KnowledgeBase, entry: Entry | None, name: str) -> str:
    if entry is None:
        return ""
    if entry.category == "colour":
        return kb.template("colour", name)
    return entry.desc


def _colour_only(c: Chunk) -> bool:
    """A chunk that is just a colour, maybe with intensity words ("bright blue")."""
    return (
        bool(c.senses)
        and all(e.category == "colour" for e in c.senses)
        and all(m.kind == "adj" for m in c.mods)
    )


def detect(kb: KnowledgeBase, prompt: str, chunks: list[Chunk]) -> list[Finding]:
    """Every clash in the chunked prompt, most severe first, one per fragile concept."""
    ctx = _Ctx(kb, prompt, chunks)
    _predicates(ctx)
    vessels(ctx)
    worn_vessels(ctx)
    storage(ctx)
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
    lead: list[str] = []
    for c in ctx.chunks:
        if c.neutral and last is not None:
            # "made from thick *slices* of cheese", "painted in a soft *shade* of blue": the
            # link reaches past the quantity or shade word to the phrase after it
            lead += [*c.connector, *chunk_words(c)]
            continue
        conn = (*lead, *c.connector)
        lead = []
        if last is not None and has_link(ctx.kb, conn, "material_links"):
            ctx.material_role.add(c.index)
            ctx.material_of.setdefault(last.index, []).append(c)
            continue
        if last is not None and _colour_only(c) and has_link(ctx.kb, conn, "colour_links"):
            ctx.colour_of.setdefault(last.index, []).append(c)
            continue
        if not c.neutral and not _colour_only(c):
            last = c


def _coverings(ctx: _Ctx) -> None:
    for c in ctx.chunks:
        cov = c.sense("covering") if ctx.live(c) else None
        if cov is None:
            continue
        animal_chunk = _wearer(ctx, c)
        if animal_chunk is None:
            continue
        animal = animal_chunk.sense("animal")
        assert animal is not None
        owners = [e for _, e in c.mod_senses("animal")]
        nxt = ctx.chunks[c.index + 1] if c.index + 1 < len(ctx.chunks) else None
        if nxt is not None and nxt.connector[:1] == ("of",) and nxt is not animal_chunk:
            # "the horns of a ram", "the scaly skin of a lizard": the owner comes after
            owners += [e for e in nxt.senses if e.category == "animal"]
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


def _wearer(ctx: _Ctx, c: Chunk) -> Chunk | None:
    """The animal said to have the covering ``c``: the phrase right before ("a zebra with
    stripes"), past the animal's other coverings ("a swan whose feathers are replaced by
    scales"), or, with nothing before, right after ("leopard spots on a zebra"). Never
    across a separating word: "a knight in armor on a horse" is no horse's armor."""
    start = _behind_frame(ctx, c)
    skipped = False
    for j in range(start.index - 1, -1, -1):
        o = ctx.chunks[j]
        if not ctx.live(o):
            continue
        if o.sense("covering") is not None and o.sense("animal") is None:
            skipped = True
            continue
        if o.sense("animal") is None:
            return None
        conn = next(conn for n, conn, first in ctx.neighbours(start) if first)
        return o if skipped or link_kind(ctx.kb, conn) != "separate" else None
    for o, conn, _first in ctx.neighbours(start):
        if o.sense("animal") is not None and link_kind(ctx.kb, conn) != "separate":
            return o
        break
    return None


def _behind_frame(ctx: _Ctx, c: Chunk) -> Chunk:
    """The frame before a covering ("a *coat* of wool", "a *layer* of scales"), if any."""
    if c.index > 0 and c.connector[-1:] == ("of",):
        o = ctx.chunks[c.index - 1]
        if o.head is not None and o.head.key[-1] in ctx.kb.words["frames"]:
            return o
    return c


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
    # A zoo, wildlife park or sanctuary keeps its animals anywhere: "at a zoo in Berlin".
    captive = any((e := c.sense("place")) is not None and e.name == _ZOO for c in ctx.chunks)
    for c in ctx.chunks:
        if not ctx.live(c) or _place(c) is not None:
            continue
        animal = c.sense("animal")
        local = _regional(ctx, c)
        # Poutine at a diner *in Quebec*: a place of the dish's own region makes it at home.
        at_home = local is not None and any(
            local.regions & _chunk_regions(ctx, loc, place) for loc, place in places
        )
        for loc, place in places:
            regions = _chunk_regions(ctx, loc, place)
            # A habitat said to be of a region is located too: "a Norwegian fjord"
            located = place.kind in _LOCATED or bool(place.regions) or bool(regions)
            # ... and so does sushi at a Japanese restaurant in Paris: only a landmark clashes.
            if at_home and place.kind in ("setting", "city", "country"):
                located = False
            if local is not None and located and regions and not (local.regions & regions):
                setting = local.setting or _region_setting(ctx.kb, local)
                ctx.add(loc, c, "cuisine-location", setting, place, local, position=loc.index)
            if animal is not None and animal.kind == "wild" and not captive:
                _species_site(ctx, c, animal, loc, place, regions)


_ZOO = "zoo"  # the knowledge-base place whose aliases are the places that keep animals

_REGIONAL = ("food", "beverage", "cultural", "role", "outfit", "object", "instrument")


def _regional(ctx: _Ctx, c: Chunk) -> Entry | None:
    """The regional sense of a chunk: a dish, drink or cultural item from one region, or any
    item said to be from one ("a *Mexican* mariachi band", "an *Italian* espresso")."""
    for e in c.senses:
        if e.category in ("food", "cultural", "beverage", "role") and e.regions and not e.topping:
            return e
    if c.sense("vessel") is not None or c.sense("storage") is not None:
        # "kimchi jars", "sake bottles": the container names a regional food or drink
        for _, e in [*c.mod_senses("food"), *c.mod_senses("beverage")]:
            if e.regions and not e.topping:
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
    # A polar animal in a "tropical lagoon", a camel on a "frozen" lake: the climate the
    # place shows clashes with the only one the animal lives in, whatever the place is.
    climates = _place_climates(ctx, loc, place)
    if animal.climate and climates and animal.climate not in climates:
        ctx.add(loc, c, "species-site", latent, place, animal, position=loc.index, severity=3)
        return
    if place.kind == "habitat":
        biomes = place.biomes | _mod_biomes(loc)
        if not biomes or not animal.biomes or biomes & animal.biomes:
            return
        home = place.name in animal.home or bool(animal.home & regions)
        # A chimpanzee in a "Siberian forest", a koala in the Amazon: a biome it does not
        # live in, in a region it does not live in.
        foreign = bool(regions) and bool(animal.home) and not home
        conflict = any(
            all(b in _BIOME_CONFLICTS.get(a, frozenset()) for a in animal.biomes) for b in biomes
        )
        if conflict or foreign:
            ctx.add(loc, c, "species-site", latent, place, animal, position=loc.index, severity=3)
        return
    if place.kind not in _LOCATED or (place.kind == "setting" and not regions):
        return
    if place.name in animal.home or animal.home & regions:
        return
    ctx.add(loc, c, "species-site", latent, place, animal, position=loc.index)


_BIOME_CLIMATE = {"arctic": "cold", "desert": "hot", "rainforest": "hot", "savanna": "hot"}


def _mod_biomes(c: Chunk) -> frozenset[str]:
    """Biomes of habitat modifiers: the "desert" of "a desert dune"."""
    return frozenset(b for m in c.mods for e in m.senses if e.category == "place" for b in e.biomes)


def _place_climates(ctx: _Ctx, c: Chunk, place: Entry) -> set[str]:
    """The climates a place phrase shows: its entries' and its climate words ('icy')."""
    out: set[str] = set()
    entries = [place, *(e for m in c.mods for e in m.senses if e.category == "place")]
    for e in entries:
        if e.climate:
            out.add(e.climate)
        elif e.kind == "habitat":
            out |= {_BIOME_CLIMATE[b] for b in e.biomes if b in _BIOME_CLIMATE}
    words = ctx.kb.climate_words
    for item in c.items:
        if all(e.category in ("place", "region") for e in item.senses):
            out |= {words[w] for w in map(fold, item.text.split()) if w in words}
    return out


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
        if not ctx.live(c):
            continue
        entity = next((e for e in c.senses if e.colours), None)
        owner = c
        if c.sense("covering") is not None:
            owner, entity = _skin_owner(ctx, c)
        if entity is None:
            continue
        for fam, text in _colour_items(ctx, c):
            if fam not in entity.colours:
                latent = entity.colour_display[0] if entity.colour_display else None
                dominant = ctx.prompt[_after_colours(c) : c.end] if owner is c else ctx.text(owner)
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


def _skin_owner(ctx: _Ctx, c: Chunk) -> tuple[Chunk, Entry | None]:
    """The owner of a skin said to have a colour: in "a banana with pink skin" the colour of
    the skin is the banana's.

    Animals are left to the covering rule, which knows their coats.
    """
    for o, conn, first in ctx.neighbours(c):
        if first and "with" in conn and o.sense("animal") is None:
            return o, next((e for e in o.senses if e.colours), None)
        break
    return c, None


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
            (e for e in c.senses if e.materials and e.category in ("object", "vessel", "storage")),
            None,
        )
        if obj is None:
            continue
        # Vessels and containers come in every material ("a glass mug", "a metal bowl"):
        # only an explicit "made of" counts for them.
        adjectives = c.mod_senses("material") if obj.category == "object" else []
        for m, mat in adjectives:
            # "gold" may be a colour; "cheese platter", "ice cream truck" name a content.
            if any(e.category in ("colour", *CONTENT) for e in m.senses):
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
