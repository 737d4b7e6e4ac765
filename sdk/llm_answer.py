"""What the LLM planner asks and how it checks the answer: the prompt template, the answer
schema, parsing, the semantic checks and the re-ask messages. No I/O beyond reading the
packaged template.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lcfix.compose import compose_plan
from lcfix.errors import (
    ConfigError,
    PlanValidationError,
)
from lcfix.plans import ConceptPair, Plan, PlannerInfo
from lcfix.strict_schema import strict_json_schema
from lcfix.text import missing_words, phrase_in

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


TEMPLATE_FILE = "planner_prompt_v1.md"
_USER_MARKER = "<!-- user message -->"
_MAX_ECHO = 4000  # characters of a bad answer sent back in a re-ask

# ---- the prompt template -------------------------------------------------------------------


@dataclass(frozen=True)
class PromptTemplate:
    """The versioned planner prompt (``lcfix/data/planner_prompt_v1.md``)."""

    system: str
    user: str
    version: str
    """``v1-<hash>``: part of the cache key, so any edit invalidates cached plans."""

    def messages(self, prompt: str) -> list[dict[str, str]]:
        # The prompt is data: stop it from closing the tag that fences it in.
        fenced = re.sub(r"</\s*prompt\s*>", "</ prompt>", prompt, flags=re.IGNORECASE)
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user.replace("{prompt}", fenced)},
        ]


@lru_cache(maxsize=1)
def load_template() -> PromptTemplate:
    """Read the packaged prompt template."""
    text = (resources.files("lcfix") / "data" / TEMPLATE_FILE).read_text(encoding="utf-8")
    system, marker, user = text.partition(_USER_MARKER)
    if not marker:
        raise ConfigError(f"{TEMPLATE_FILE} lacks the {_USER_MARKER!r} marker")
    system = re.sub(r"^\s*<!--.*?-->\s*", "", system, count=1, flags=re.DOTALL)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    stem = Path(TEMPLATE_FILE).stem.rsplit("_", 1)[-1]
    return PromptTemplate(system=system.strip(), user=user.strip(), version=f"{stem}-{digest}")


# ---- checking an answer (no I/O) -----------------------------------------------------------


class AnswerPair(BaseModel):
    model_config = ConfigDict(extra="ignore")

    fragile: str = Field(
        min_length=1, max_length=200, description="The concept likely lost, copied word for word"
    )
    dominant: str = Field(
        min_length=1, max_length=200, description="The concept whose association overrides it"
    )
    latent: str | None = Field(
        default=None, max_length=200, description="The unmentioned concept that replaces it"
    )
    pattern: str = Field(default="other", description="e.g. beverage-container")
    severity: int = Field(default=3, ge=1, le=5, description="1-5; 5 = almost always lost")
    rationale: str = Field(default="", description="One sentence")


class AnswerConcept(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=200, description="A concept copied from the prompt")
    description: str = Field(default="", description="A short visual description")


class Answer(BaseModel):
    """What the LLM returns, parsed leniently (unknown keys ignored, bounds checked here)."""

    model_config = ConfigDict(extra="ignore")

    at_risk: bool = Field(description="Whether any concept is likely lost")
    pairs: list[AnswerPair] = Field(default_factory=list, max_length=8)
    concepts: list[AnswerConcept] = Field(default_factory=list, max_length=16)
    stage1_end: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="Fraction of steps for the fragile concept alone"
    )
    natural: str | None = Field(default=None, description="The prompt in explicit natural words")


ANSWER_SCHEMA: dict[str, Any] = strict_json_schema(Answer)
ANSWER_SCHEMA.pop("description", None)  # the class docstring is for readers, not the LLM
"""The JSON schema sent as ``response_format`` where the provider supports it."""


def extract_json(text: str) -> Any:
    """The JSON value in ``text``, tolerating code fences and prose around one object."""
    body = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", body, flags=re.DOTALL)
    if fence:
        body = fence.group(1).strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        start, end = body.find("{"), body.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(body[start : end + 1])
            except json.JSONDecodeError:
                pass
        snippet = body[:80] or "an empty reply"
        raise PlanValidationError(
            [f"the answer is not valid JSON ({exc.msg} at char {exc.pos}): {snippet!r}"]
        ) from None


def _pattern(raw: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    return slug[:64] or "other"


def answer_problems(prompt: str, answer: Answer) -> list[str]:
    """Every way ``answer`` drifts from ``prompt``; empty when it is usable."""
    problems: list[str] = []
    if answer.at_risk and not answer.pairs:
        problems.append("at_risk is true but pairs is empty: name the pair, or answer false")
    if not answer.at_risk and answer.pairs:
        problems.append("at_risk is false but pairs is not empty: make them agree")
    for i, pair in enumerate(answer.pairs):
        for role in ("fragile", "dominant"):
            value = getattr(pair, role)
            if not phrase_in(prompt, value):
                problems.append(
                    f"pairs[{i}].{role} {value!r} is not in the prompt: copy concepts word for "
                    "word from the text inside <prompt>"
                )
        if phrase_in(pair.fragile, pair.dominant) and phrase_in(pair.dominant, pair.fragile):
            problems.append(f"pairs[{i}]: fragile and dominant are the same concept")
    for i, concept in enumerate(answer.concepts):
        if not phrase_in(prompt, concept.name):
            problems.append(
                f"concepts[{i}].name {concept.name!r} is not in the prompt: describe only "
                "concepts the prompt contains"
            )
    return problems


def stage_problems(prompt: str, plan: Plan) -> list[str]:
    """Stages that introduce a concept the prompt lacks, or a last stage that drops one."""
    problems: list[str] = []
    for i, stage in enumerate(plan.stages):
        extra = missing_words(stage.prompt, prompt)
        if extra:
            problems.append(f"stage {i + 1} introduces {', '.join(extra)}, not in the prompt")
    lost = missing_words(prompt, plan.stages[-1].prompt)
    if lost:
        problems.append(f"the last stage drops {', '.join(lost)}")
    return problems


def natural_ok(prompt: str, natural: str) -> bool:
    """A rewrite is kept only if it keeps every content word and stays a prompt-sized text."""
    text = natural.strip()
    return bool(text) and len(text) <= 4 * len(prompt) + 600 and not missing_words(prompt, text)


def parse_answer(prompt: str, text: str, planner: PlannerInfo) -> Plan:
    """Turn an LLM answer into a checked Plan, or raise PlanValidationError with every problem.

    An unusable ``natural`` rewrite is replaced by the composed one rather than re-asked.
    """
    data = extract_json(text)
    if not isinstance(data, dict):
        raise PlanValidationError([f"the answer must be a JSON object, got {type(data).__name__}"])
    try:
        answer = Answer.model_validate(data)
    except ValidationError as exc:
        raise PlanValidationError(
            [
                f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg']}"
                for err in exc.errors(include_url=False)
            ]
        ) from exc
    problems = answer_problems(prompt, answer)
    if problems:
        raise PlanValidationError(problems)
    pairs = [
        ConceptPair(
            fragile=p.fragile.strip(),
            dominant=p.dominant.strip(),
            # A "latent" concept the user asked for is not latent: never exclude it.
            latent=p.latent.strip() if p.latent and not phrase_in(prompt, p.latent) else None,
            pattern=_pattern(p.pattern),
            severity=p.severity,
            rationale=p.rationale.strip()[:300],
        )
        for p in answer.pairs
    ]
    descriptions = {c.name.strip(): c.description.strip()[:200] for c in answer.concepts}
    try:
        plan = compose_plan(
            prompt, pairs, planner=planner, descriptions=descriptions, stage1_end=answer.stage1_end
        )
    except ValidationError as exc:
        raise PlanValidationError([str(e["msg"]) for e in exc.errors(include_url=False)]) from exc
    problems = stage_problems(prompt, plan)
    if problems:
        raise PlanValidationError(problems)
    if answer.natural and plan.at_risk and natural_ok(prompt, answer.natural):
        rewrites = plan.rewrites.model_copy(update={"natural": answer.natural.strip()})
        plan = plan.model_copy(update={"rewrites": rewrites})
    return plan


def reask_messages(
    messages: Sequence[Mapping[str, str]], answer: str, problems: Sequence[str]
) -> list[dict[str, str]]:
    """The conversation so far plus the rejected answer and why it was rejected."""
    listed = "\n".join(f"- {p}" for p in problems)
    return [
        *(dict(m) for m in messages),
        {"role": "assistant", "content": answer[:_MAX_ECHO] or "(empty answer)"},
        {
            "role": "user",
            "content": f"Your answer was rejected:\n{listed}\nAnswer again for the same prompt "
            "with one corrected JSON object only. Copy concept names word for word from the "
            "text inside <prompt>.",
        },
    ]


def replan_for(plan: Plan, prompt: str) -> Plan:
    """``plan`` (found for a prompt that differs only in case or spacing) rebuilt for ``prompt``."""
    if plan.prompt == prompt:
        return plan
    k = len({p.fragile.lower() for p in plan.pairs})
    stage1_end = plan.stages[k - 1].end if k else None
    return compose_plan(
        prompt,
        plan.pairs,
        planner=plan.planner,
        descriptions={c.name: c.description for c in plan.concepts},
        stage1_end=stage1_end,
    )
