"""The AUTOMATIC1111 prompt-editing bridge: ``[from:to:when]`` to a Plan and back.

WebUI users write staging by hand: ``a [tea cup:glass:0.3] of iced coke`` draws a tea cup for
the first 30 % of the steps, then a glass. ``parse_a1111`` turns such a prompt into a Plan, so
it runs on any lcfix backend; ``to_a1111`` writes a Plan's stages in the same syntax.

    >>> plan = parse_a1111("[tea cup:a tea cup of iced coke:0.25]")
    >>> [(s.prompt, s.end) for s in plan.stages]
    [('tea cup', 0.25), ('a tea cup of iced coke', 1.0)]
    >>> to_a1111(plan)
    '[tea cup:a tea cup of iced coke:0.25]'

Supported: ``[from:to:when]``, ``[to:when]`` (added at ``when``), ``[from::when]`` (removed at
``when``), nesting, backslash escapes (``\\[``, ``\\:``, ...). ``when`` below 1 is a fraction of
the steps; 1 or more is an absolute step and needs ``steps``. Emphasis (``(word:1.2)``,
``[word]``) keeps its text and drops the weight: lcfix backends do not read weights.
Alternation ``[a|b]`` and composable ``AND`` switch on every step, which a staging plan cannot
express; they are rejected with an InputError that names the column.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lcfix.compose import a1111_rewrite, natural_rewrite, weighted_rewrite
from lcfix.errors import InputError
from lcfix.plans import Concept, ConceptPair, Plan, PlannerInfo, Rewrites, Stage
from lcfix.text import STOPWORDS, norm_words, singular

SYNTAX_VERSION = "1"
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_WEIGHT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_AND = re.compile(r"\bAND\b")
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Scheduled:
    before: tuple[_Node, ...]
    after: tuple[_Node, ...]
    when: float  # fraction of the steps in [0, 1]


_Node = _Text | _Scheduled


class _Parser:
    """Recursive descent over the A1111 grammar; positions are 0-based character offsets."""

    def __init__(self, text: str, steps: int | None) -> None:
        self.s = text
        self.i = 0
        self.steps = steps

    def error(self, pos: int, reason: str) -> InputError:
        pos = min(pos, len(self.s))
        return InputError(
            f"A1111 syntax error at column {pos + 1}: {reason}\n  {self.s}\n  {' ' * pos}^",
            field="prompt",
        )

    def parse(self) -> list[_Node]:
        m = _AND.search(self.s)
        if m is not None:
            raise self.error(
                m.start(),
                "AND (composable diffusion) is not supported: a staging plan runs one prompt "
                "per stage",
            )
        nodes = self.seq("")
        if self.i < len(self.s):  # only a stray closer stops the top level
            raise self.error(self.i, f"unmatched {self.s[self.i]!r}")
        return nodes

    def seq(self, stops: str) -> list[_Node]:
        nodes: list[_Node] = []
        buf: list[str] = []

        def flush() -> None:
            if buf:
                nodes.append(_Text("".join(buf)))
                buf.clear()

        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c == "\\":
                # An escape keeps the next character literally; a lone trailing backslash stays.
                buf.append(s[self.i + 1] if self.i + 1 < len(s) else "\\")
                self.i += 2
            elif c in stops:
                break
            elif c == "[":
                flush()
                nodes.extend(self.bracket())
            elif c == "(":
                flush()
                nodes.extend(self.paren())
            elif c in "])":
                if stops:
                    raise self.error(self.i, f"unmatched {c!r}")
                break
            else:
                buf.append(c)
                self.i += 1
        flush()
        return nodes

    def bracket(self) -> list[_Node]:
        start = self.i
        self.i += 1
        parts: list[tuple[int, list[_Node]]] = []
        while True:
            part_start = self.i
            parts.append((part_start, self.seq(":|]")))
            if self.i >= len(self.s):
                raise self.error(start, "unclosed '['")
            c = self.s[self.i]
            if c == "|":
                raise self.error(
                    self.i,
                    "alternation [a|b] is not supported: it switches prompts on every step, "
                    "while a staging plan switches once",
                )
            self.i += 1
            if c == "]":
                break
        if len(parts) == 1:  # [word]: de-emphasis, the text stays
            return parts[0][1]
        if len(parts) > 3:
            raise self.error(
                parts[3][0] - 1, "too many ':' in prompt editing; expected [from:to:when]"
            )
        when_pos, when_nodes = parts[-1]
        when = self.when(when_pos, when_nodes)
        before = tuple(parts[0][1]) if len(parts) == 3 else ()
        after = tuple(parts[-2][1])
        return [_Scheduled(before, after, when)]

    def when(self, pos: int, nodes: list[_Node]) -> float:
        raw = "".join(n.text for n in nodes if isinstance(n, _Text))
        text = raw.strip()
        if any(isinstance(n, _Scheduled) for n in nodes) or not _NUMBER.fullmatch(text):
            shown = self.s[pos : self.i - 1]
            raise self.error(
                pos,
                f"expected a number after the last ':' of prompt editing, got {shown!r} "
                "(write [from:to:when], e.g. [cup:glass:0.3])",
            )
        value = float(text)
        if value < 1:
            return value
        if self.steps is None:
            raise self.error(
                pos,
                f"'{text}' is an absolute step; pass the step count (steps=, --steps) or "
                "write a fraction below 1",
            )
        return min(int(value), self.steps) / self.steps

    def paren(self) -> list[_Node]:
        start = self.i
        self.i += 1
        inner = self.seq(":)")
        if self.i >= len(self.s):
            raise self.error(start, "unclosed '('")
        if self.s[self.i] == ":":
            colon = self.i
            self.i += 1
            weight = self.seq(")")
            if self.i >= len(self.s):
                raise self.error(start, "unclosed '('")
            raw = "".join(n.text for n in weight if isinstance(n, _Text)).strip()
            if not _WEIGHT.fullmatch(raw) or any(isinstance(n, _Scheduled) for n in weight):
                # '(a:b)' with no number is text with a colon in it, as in A1111.
                inner = [*inner, _Text(self.s[colon]), *weight]
        self.i += 1  # the ')'
        return inner


def _switch_points(nodes: Sequence[_Node]) -> set[float]:
    out: set[float] = set()
    for node in nodes:
        if isinstance(node, _Scheduled):
            if 0 < node.when < 1:
                out.add(node.when)
            out |= _switch_points(node.before) | _switch_points(node.after)
    return out


def _render(nodes: Sequence[_Node], t: float) -> str:
    # A1111 uses `before` while step <= when, so a stage ending exactly at `when` is `before`.
    parts = []
    for node in nodes:
        if isinstance(node, _Text):
            parts.append(node.text)
        else:
            parts.append(_render(node.before if t <= node.when else node.after, t))
    return "".join(parts)


def _clean(text: str) -> str:
    return " ".join(text.split())


def parse_schedule(text: str, *, steps: int | None = None) -> list[Stage]:
    """The distinct prompts an A1111 prompt runs through, as stages with their ends.

    Whitespace is collapsed; consecutive stages with the same text merge. Raises InputError
    (with the column) for malformed or unsupported syntax, or an empty stage.
    """
    if steps is not None and steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}", field="steps")
    parser = _Parser(text, steps)
    nodes = parser.parse()
    ends = [*sorted(_switch_points(nodes)), 1.0]
    stages: list[Stage] = []
    for end in ends:
        prompt = _clean(_render(nodes, end))
        if not prompt:
            raise InputError(
                f"the prompt is empty up to {end:g} of the steps; lcfix stages need text "
                f"(in {text!r})",
                field="prompt",
            )
        if stages and stages[-1].prompt == prompt:
            stages[-1] = Stage(prompt=prompt, end=end)
        else:
            stages.append(Stage(prompt=prompt, end=end))
    return stages


def _runs(text: str, keep: Callable[[str], bool]) -> list[str]:
    """Contiguous phrases of ``text`` whose content words all pass ``keep``, longest first.

    Function words may sit inside a phrase but not at its edges; punctuation other than
    spaces and hyphens ends a phrase.
    """
    runs: list[tuple[int, str]] = []
    cur: list[re.Match[str]] = []

    def close() -> None:
        while cur and cur[-1].group(0).lower() in STOPWORDS:
            cur.pop()
        n = sum(m.group(0).lower() not in STOPWORDS for m in cur)
        if n:
            runs.append((n, text[cur[0].start() : cur[-1].end()]))
        cur.clear()

    prev_end = 0
    for m in _TOKEN.finditer(text):
        if cur and text[prev_end : m.start()].strip(" -"):
            close()
        prev_end = m.end()
        word = m.group(0).lower()
        if word in STOPWORDS:
            if cur:
                cur.append(m)
        elif keep(singular(word)):
            cur.append(m)
        else:
            close()
    close()
    return [r for _, r in sorted(runs, key=lambda r: -r[0])]


def _pairs(stages: Sequence[Stage]) -> list[ConceptPair]:
    final = stages[-1].prompt
    final_words = set(norm_words(final))
    fragile: list[str] = []
    prev_words: set[str] = set()
    for stage in stages[:-1]:
        seen_before = prev_words
        runs = _runs(stage.prompt, lambda w: w in final_words and w not in seen_before)  # noqa: B023
        if runs and runs[0].lower() not in {f.lower() for f in fragile}:
            fragile.append(runs[0])
        prev_words = set(norm_words(stage.prompt))
    first_words = set(norm_words(stages[0].prompt))
    dominant_runs = _runs(final, lambda w: w not in first_words)
    fallback = _runs(final, lambda _w: True)
    if not fallback:
        raise InputError(
            f"the final prompt {final!r} has no content words to stage", field="prompt"
        )
    if not fragile:
        # Pure replacement ([dog:cat:0.5]): nothing of stage 1 survives, so the pair names
        # the final prompt's main phrase; the stages still carry the schedule.
        fragile = [fallback[0]]
    dominant = dominant_runs[0] if dominant_runs else fallback[0]
    rationale = "from A1111 prompt editing: " + " -> ".join(
        f"{s.prompt!r} until {s.end:g}" for s in stages
    )
    return [
        ConceptPair(fragile=f, dominant=dominant, pattern="other", rationale=rationale[:300])
        for f in fragile
    ]


def plan_from_stages(stages: Sequence[Stage]) -> Plan:
    """A Plan whose prompt is the last stage's text and whose stages are ``stages``."""
    stages = list(stages)
    final = stages[-1].prompt
    info = PlannerInfo(name="a1111", version=SYNTAX_VERSION)
    pairs = _pairs(stages) if len(stages) > 1 else []
    names: list[str] = []
    for pair in pairs:
        for name in (pair.fragile, pair.dominant):
            if name.lower() not in {n.lower() for n in names}:
                names.append(name)
    return Plan(
        prompt=final,
        at_risk=bool(pairs),
        pairs=tuple(pairs),
        concepts=tuple(Concept(name=n) for n in names),
        stages=tuple(stages),
        rewrites=Rewrites(
            natural=natural_rewrite(final, pairs, {}),
            weighted=weighted_rewrite(final, pairs),
            a1111=a1111_rewrite(stages),
        ),
        planner=info,
    )


def parse_a1111(text: str, *, steps: int | None = None) -> Plan:
    """Parse an A1111 prompt with prompt editing into a Plan (planner name ``a1111``).

    ``plan.prompt`` is the text of the last stage, so the plan contract holds; the pairs name
    what stage 1 draws (fragile) and what the last stage adds (dominant).

    >>> parse_a1111("a [dog:cat:10] in a hat", steps=20).switch_points
    [0.5]
    """
    if not text.strip():
        raise InputError("empty prompt", field="prompt")
    return plan_from_stages(parse_schedule(text, steps=steps))


def to_a1111(plan: Plan) -> str:
    """The plan's stages as nested ``[from:to:when]`` prompt editing (fractions of steps)."""
    return a1111_rewrite(plan.stages)


def has_prompt_editing(text: str) -> bool:
    """Whether ``text`` uses prompt editing (an unescaped ``[...:...]``), cheaply."""
    return bool(re.search(r"(?<!\\)\[[^\]]*(?<!\\):", text))


def schedule_steps(plan: Plan, steps: int) -> list[tuple[str, int, int]]:
    """Each stage as ``(prompt, first_step, last_step)``, 1-based as A1111 counts steps."""
    out: list[tuple[str, int, int]] = []
    start = 1
    for stage, nxt in itertools.zip_longest(plan.stages, plan.stages[1:]):
        last = steps if nxt is None else min(steps, int(stage.end * steps))
        if last >= start:
            out.append((stage.prompt, start, last))
            start = last + 1
    return out


def parse_if_edited(prompt: str, *, steps: int | None = None) -> Plan | None:
    """The plan of a prompt that uses prompt editing, or None for a plain prompt.

    Lets WebUI prompts run on any backend: callers plan plain prompts with their planner and
    take the schedule the user wrote for the rest. Malformed syntax raises InputError.
    """
    return parse_a1111(prompt, steps=steps) if has_prompt_editing(prompt) else None
