"""The Plan: one staging plan per prompt, the format every backend consumes.

A plan says which concepts of a prompt are at risk of latent concept misalignment (LC-Mis),
and how to stage them: the fragile concept is drawn alone first, then the sampler switches to
the full prompt. ``lcfix schema`` prints the JSON Schema.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lcfix.errors import PlanValidationError
from lcfix.text import content_words, missing_words, phrase_in

PLAN_VERSION: Literal[1] = 1
MIN_STAGE_END = 0.025
"""The paper's search range for the end of stage 1 is [0.025, 0.475] of the steps."""
MAX_STAGE1_END = 0.475

Pattern = Annotated[
    str,
    Field(
        description=(
            "The LC-Mis pattern, e.g. beverage-container, food-tableware, cuisine-location, "
            "species-site, animal-covering, jewelry-storage, fruit-plant, object-attribute, "
            "object-material, role-outfit"
        ),
        min_length=1,
        max_length=64,
    ),
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConceptPair(_Frozen):
    """A fragile concept and the dominant concept whose hidden association overrides it."""

    fragile: str = Field(description="The concept that tends to get lost, copied from the prompt")
    dominant: str = Field(
        description="The concept whose strong association overrides it, copied from the prompt"
    )
    latent: str | None = Field(
        default=None,
        description="The unmentioned concept that tends to replace the fragile one (e.g. glass)",
    )
    pattern: Pattern = "other"
    severity: int = Field(
        default=3,
        ge=1,
        le=5,
        description="1-5 on the paper's level scale: 5 means almost never drawn right",
    )
    rationale: str = Field(default="", description="One sentence: why the pair clashes")


class Concept(_Frozen):
    """A concept of the prompt with a short visual description, used by scorers."""

    name: str = Field(min_length=1, description="The concept as written in the prompt")
    description: str = Field(
        default="", description="A short visual description, e.g. 'small ceramic cup with a handle'"
    )


class Stage(_Frozen):
    """One sampling stage: ``prompt`` conditions the steps up to the fraction ``end``."""

    prompt: str = Field(min_length=1, description="The text that conditions this stage")
    end: float = Field(gt=0.0, le=1.0, description="Fraction of denoising at which the stage ends")


RewriteDialect = Literal["natural", "weighted", "a1111"]
"""The name of one of a plan's rewrites: the prompt dialect a backend reads."""


class Rewrites(_Frozen):
    """The same plan in each backend dialect."""

    natural: str = Field(description="Explicit natural language for gpt-image-like models")
    weighted: str = Field(description="Midjourney-style weights: 'a::2 b::1 --no latent'")
    a1111: str = Field(description="AUTOMATIC1111 prompt editing: '[from:to:when]'")


class Usage(_Frozen):
    """Tokens an LLM planner spent on one plan."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class PlannerInfo(_Frozen):
    """Where a plan came from."""

    name: str = Field(description="offline, llm, a1111, ...")
    model: str | None = None
    version: str = Field(description="Knowledge-base or prompt-template version")
    cached: bool = False
    attempts: int = Field(default=1, ge=0)
    fallback: str | None = Field(
        default=None, description="Why the LLM planner fell back to the offline planner"
    )
    usage: Usage | None = None


class Plan(_Frozen):
    """A staging plan for one prompt.

    >>> plan = lcfix.plan("a tea cup of iced coke")
    >>> plan.pairs[0].fragile, plan.stages[0].prompt, plan.stages[0].end
    ('tea cup', 'tea cup', 0.25)
    """

    version: Literal[1] = PLAN_VERSION
    prompt: str = Field(min_length=1, description="The original prompt")
    at_risk: bool
    pairs: tuple[ConceptPair, ...] = ()
    concepts: tuple[Concept, ...] = ()
    stages: tuple[Stage, ...] = Field(min_length=1)
    rewrites: Rewrites
    planner: PlannerInfo

    @model_validator(mode="after")
    def _check_contract(self) -> Plan:
        problems = plan_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def fragile(self) -> list[str]:
        """The fragile concepts, in staging order."""
        return [p.fragile for p in self.pairs]

    @property
    def switch_points(self) -> list[float]:
        """The ends of every stage but the last."""
        return [s.end for s in self.stages[:-1]]

    def with_planner(self, **changes: Any) -> Plan:
        """A copy with provenance fields changed (cached, attempts, fallback, ...)."""
        return self.model_copy(update={"planner": self.planner.model_copy(update=changes)})


def plan_problems(plan: Plan) -> list[str]:
    """Every way ``plan`` breaks the contract; empty when it is valid."""
    problems: list[str] = []
    ends = [s.end for s in plan.stages]
    if any(b <= a for a, b in itertools.pairwise(ends)):
        problems.append(f"stage ends must strictly increase, got {ends}")
    if ends[-1] != 1.0:
        problems.append(f"the last stage must end at 1.0, got {ends[-1]}")
    lost = missing_words(plan.prompt, plan.stages[-1].prompt)
    if lost:
        problems.append(f"the last stage drops prompt concepts: {', '.join(lost)}")
    if not plan.at_risk and (plan.pairs or len(plan.stages) != 1):
        problems.append("a plan with no risk has no pairs and exactly one stage")
    if plan.at_risk and not plan.pairs:
        problems.append("an at-risk plan names at least one concept pair")
    for pair in plan.pairs:
        for role in ("fragile", "dominant"):
            value = getattr(pair, role)
            if not content_words(value) or not phrase_in(plan.prompt, value):
                problems.append(f"{role} concept {value!r} does not come from the prompt")
    return problems


def validate_plan_dict(data: dict[str, Any]) -> Plan:
    """Build a Plan from untrusted data, raising PlanValidationError with every problem."""
    from pydantic import ValidationError

    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'plan'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        ]
        raise PlanValidationError(problems) from exc


def plan_json_schema() -> dict[str, Any]:
    """The JSON Schema of a Plan."""
    return Plan.model_json_schema()
