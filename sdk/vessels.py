"""Clash rules for things that hold other things: vessels, clothing used as one, storage.

Part of :mod:`lcfix.detect` (which calls :func:`vessels`, :func:`worn_vessels` and
:func:`storage` with its context): a drink or food held by an odd vessel, storage place or
garment, and jewelry or objects inside a storage place with other usual contents. No I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lcfix.kb import Entry, KnowledgeBase
from lcfix.phrases import Chunk, chunk_words, link_kind

if TYPE_CHECKING:
    from lcfix.detect import _Ctx

CONTENT = ("beverage", "food", "fruit")
"""Categories that a vessel holds."""

_HOLDER_FIRST = frozenset(
    {"of", "with", "containing", "holding", "holds", "filled", "full", "brimming",
     "overflowing", "stuffed", "loaded"}
)  # fmt: skip
_CONTENT_FIRST = frozenset(
    {"in", "into", "inside", "within", "on", "onto", "upon", "from", "out", "served", "poured",
     "bottom", "filling", "fills", "fill"}
)  # fmt: skip


def _fronted(holder: Chunk, connector: tuple[str, ...]) -> bool:
    """A fronted 'in' phrase, then a comma: "In a champagne flute, hot coffee"."""
    return "," in connector and bool({"in", "inside", "within"} & set(holder.connector))


def _holds(connector: tuple[str, ...], holder_first: bool) -> bool:
    words = set(connector)
    return bool(words & (_HOLDER_FIRST if holder_first else _CONTENT_FIRST))


def content_of(c: Chunk) -> Entry | None:
    """The drink, food or fruit that a chunk names, if any."""
    for e in c.senses:
        if e.category in CONTENT:
            return e
    return None


def vessels(ctx: _Ctx) -> None:
    """Drink or food held by a vessel it does not usually fill ("a tea cup of iced coke")."""
    kb = ctx.kb
    links: list[tuple[Chunk, Entry, Chunk, Entry]] = []
    occupant: dict[int, int] = {}
    for c in ctx.chunks:
        content = content_of(c) if ctx.live(c) else None
        if content is None:
            continue
        for o, conn, first in ctx.neighbours(c):
            vessel = o.sense("vessel")
            if vessel is None or content_of(o) is not None or link_kind(kb, conn) == "separate":
                continue
            if _holds(conn, holder_first=first) or (first and _fronted(o, conn)):
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
        if content.topping or _fits(content, vessel, kb) or _side_of_fitting(ctx, c, vessel):
            continue
        pattern = "beverage-container" if content.category == "beverage" else "food-tableware"
        latent = content.latent or (vessel.holds_display[0] if vessel.holds_display else None)
        # Lasagna in a bowl, stew on a plate: one everyday dish for another is a weaker clash
        # than a dish in a wine glass, so a stronger one in the prompt is staged first.
        severity = 2 if vessel.name in _TABLEWARE and content.partner_heads & _TABLEWARE else None
        ctx.add(o, c, pattern, latent, vessel, content, position=o.index, severity=severity)


_TABLEWARE = frozenset({"plate", "bowl", "dish", "platter"})


def _named_for(kb: KnowledgeBase, content: Entry, vessel: Entry) -> bool:
    """Whether the container is named after the content: "a carton of eggs" is an egg
    carton, "a pot of tea" a tea pot."""
    if " " in vessel.name:  # "beer" + "wine glass" names no beer glass
        return False
    return any(
        e.category in ("vessel", "storage") for e in kb.lookup(f"{content.name} {vessel.name}")
    )


def _side_of_fitting(ctx: _Ctx, c: Chunk, vessel: Entry) -> bool:
    """Whether the main dish named before ``c`` fits the vessel: in "butter chicken with naan
    served in a bowl" the bowl holds the curry, and the side does not make it odd."""
    for o, conn, first in ctx.neighbours(c):
        if first and ("with" in conn or "and" in conn):
            main = content_of(o)
            return main is not None and _fits(main, vessel)
    return False


# Words by which a non-vessel holds food or drink: "soup in a hat", "a boot full of beer";
# "on" is left out, since food on a shirt or a hat is a stain or a joke, not a vessel.
_INSIDE_CONTENT_FIRST = frozenset({"in", "into", "inside", "within", "from", "out"})
_INSIDE_HOLDER_FIRST = frozenset(
    {"of", "filled", "full", "brimming", "overflowing", "stuffed", "loaded", "containing"}
)


def worn_vessels(ctx: _Ctx) -> None:
    """Food or drink held by clothing, footwear or headwear: the garment is the fragile
    concept, as any odd vessel is ("popcorn in a cowboy hat", "a sneaker full of cereal")."""
    for c in ctx.chunks:
        content = content_of(c) if ctx.live(c) else None
        if content is None or content.topping:
            continue
        for o, conn, first in ctx.neighbours(c):
            worn = next((e for e in o.senses if e.wearable), None)
            if worn is None or o.sense("vessel") is not None or content_of(o) is not None:
                continue
            if link_kind(ctx.kb, conn) == "separate":
                continue
            words = set(conn)
            if not words & (_INSIDE_HOLDER_FIRST if first else _INSIDE_CONTENT_FIRST):
                continue
            pattern = "beverage-container" if content.category == "beverage" else "food-tableware"
            ctx.add(o, c, pattern, content.latent, worn, content, position=o.index)


def _fits(content: Entry, vessel: Entry, kb: KnowledgeBase | None = None) -> bool:
    if vessel.name in content.partner_names or content.name in vessel.holds:
        return True
    if kb is not None and _named_for(kb, content, vessel):
        return True
    if kb is not None and _material_variant(kb, vessel, content):
        return True
    if content.category == "fruit":
        return vessel.generic or "fruit" in vessel.holds or vessel.name in ("fruit bowl", "basket")
    if vessel.name in ("plate", "napkin") and content.category == "food":
        # A plate (dish, platter) or napkin takes any solid food; soups and the like clash.
        return not content.partner_heads <= _LIQUID_HOLDERS
    return vessel.generic and vessel.name.split()[-1] in content.partner_heads


def _material_variant(kb: KnowledgeBase, vessel: Entry, content: Entry) -> bool:
    """A "copper cup" is a cup: what a plain generic vessel takes, its material variant does."""
    words = vessel.name.split()
    if len(words) != 2 or kb.find(words[0], "material") is None:
        return False
    plain = kb.find(words[1], "vessel")
    return plain is not None and plain.generic and _fits(content, plain)


# Vessels of foods eaten with a spoon or drunk: such a food on a plate is a clash.
_LIQUID_HOLDERS = frozenset(
    {"bowl", "cup", "mug", "glass", "pot", "jar", "tureen", "cone", "bottle", "can", "carton",
     "thermos", "flask", "kettle", "teapot", "ladle", "spoon", "pitcher"}
)  # fmt: skip


_ITEM_CATEGORIES = ("jewelry", "food", "fruit", "beverage", "object", "instrument", "cultural")


def storage(ctx: _Ctx) -> None:
    """Items inside a storage place with other usual contents ("a ring in a bird nest"),
    jewelry in a vessel or food, and food or drink in a storage place ("milk in a boot")."""
    kb = ctx.kb
    for c in ctx.chunks:
        if not ctx.live(c):
            continue
        store = c.sense("storage")
        # A vessel is storage for jewelry only: food in a vessel is the food-tableware rule.
        only_jewelry = store is None
        store = store or c.sense("vessel")
        holder: Chunk | str = c
        filled = _filled_with(ctx, c)
        if filled is not None:
            # "a bag of flour", "a jar of honey": whatever it is, it holds that food now.
            holder = ctx.prompt[c.display_start : ctx.chunks[c.index + 1].end]
            if store is None:
                store = Entry(
                    "storage",
                    filled.name,
                    "",
                    holds=frozenset({filled.name}),
                    holds_display=(filled.name,),
                )
        named = _named_content(c) if filled is None else None
        if named is not None and store is not None:
            # "a sardine tin", "a candy jar": a container named for a food holds that food.
            store = Entry(
                "storage",
                store.name,
                "",
                holds=frozenset({named.name}),
                holds_display=(named.name,),
            )
        food = next((e for e in c.senses if e.category in ("food", "fruit")), None)
        inside_food = store is None and food is not None
        if inside_food:
            assert food is not None  # "a ring baked inside a loaf of bread"
            holds = frozenset({food.name})
            store = Entry("storage", food.name, "", holds=holds, holds_display=(food.name,))
        if store is None:
            continue
        for o, conn, first in _holder_neighbours(ctx, c):
            if link_kind(kb, conn) == "separate" or not _holds(conn, holder_first=not first):
                continue
            if inside_food and not set(conn) & {"in", "inside", "into", "within"}:
                continue
            # Food first: "cake" is also a material, "fish" also an animal.
            item = next((e for e in o.senses if e.category in CONTENT), None) or next(
                (e for e in o.senses if e.category in _ITEM_CATEGORIES), None
            )
            if only_jewelry and (item is None or item.category != "jewelry"):
                continue
            if item is not None and item.category == "jewelry" and _edible(o):
                continue  # "chocolate coins", "candy necklace": food shaped like jewelry
            animal = o.sense("animal")
            if item is None and animal is not None and _holds_animals(kb, store):
                item = animal
            if item is None or o.sense("storage") is not None:
                continue
            if _stores(store, item):
                continue
            if item.category in CONTENT and not only_jewelry:
                # Milk in a boot, soup in a toilet: the drink's own vessel replaces the odd
                # container, as in the beverage-container and food-tableware patterns.
                pattern = "beverage-container" if item.category == "beverage" else "food-tableware"
                ctx.add(c, o, pattern, item.latent, store, item, position=c.index)
                continue
            pattern = "jewelry-storage" if item.category == "jewelry" else "object-storage"
            latent = store.holds_display[0] if store.holds_display else None
            if filled is not None:
                latent = filled.name
            ctx.add(o, holder, pattern, latent, item, store, position=o.index)


def _holder_neighbours(ctx: _Ctx, c: Chunk) -> list[tuple[Chunk, tuple[str, ...], bool]]:
    """The neighbours of a container and, past a phrase that names no item ("a tiara tossed
    on dirty *clothes* in a hamper"), the jewelry before it."""
    out = list(ctx.neighbours(c))
    back = next(((o, conn) for o, conn, first in out if first), None)
    if back is not None and not any(e.category in _HELD for e in back[0].senses):
        further = next(((o, conn) for o, conn, first in ctx.neighbours(back[0]) if first), None)
        if further is not None and further[0].sense("jewelry") is not None:
            conn = (*further[1], *chunk_words(back[0]), *back[1])
            out.append((further[0], conn, True))
    return out


_HELD = frozenset({*_ITEM_CATEGORIES, "animal"})


def _filled_with(ctx: _Ctx, c: Chunk) -> Entry | None:
    """The food in "a bag *of flour*": a phrase right after ``c``, joined by 'of' alone."""
    if c.index + 1 >= len(ctx.chunks) or c.head is None:
        return None
    nxt = ctx.chunks[c.index + 1]
    if nxt.connector != ("of",) or content_of(c) is not None:
        return None
    return content_of(nxt)


def _named_content(c: Chunk) -> Entry | None:
    """The food or drink a container is named for: the sardines of "a sardine tin"."""
    for m in reversed(c.mods):
        if m.has("colour") is None and m.has("material") is None:
            found = next((e for e in m.senses if e.category in CONTENT), None)
            if found is not None:
                return found
    return None


def _edible(c: Chunk) -> bool:
    return any(e.category in CONTENT for m in c.mods for e in m.senses)


def _holds_animals(kb: KnowledgeBase, store: Entry) -> bool:
    return any(kb.find(h, "animal") is not None for h in store.holds)


def _stores(store: Entry, item: Entry) -> bool:
    if item.name in store.holds or item.category in store.holds:
        return True
    if item.category == "animal":
        # A tank for fish takes any water animal, a cage for birds any bird.
        aquatic = "fish" in store.holds and bool(item.biomes & {"ocean", "river"})
        return aquatic or ("bird" in store.holds and "feathers" in item.coverings)
    if item.category == "jewelry" and (store.name in item.holds or "jewelry" in store.holds):
        return True
    return item.category in CONTENT and "food" in store.holds


__all__ = ["CONTENT", "content_of", "storage", "vessels", "worn_vessels"]
