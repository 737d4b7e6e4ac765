from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from lcfix.errors import PlanValidationError
from lcfix.plans import Plan, plan_json_schema, validate_plan_dict


def plan_dict(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "prompt": "A tea cup of iced coke",
        "at_risk": True,
        "pairs": [
            {
                "fragile": "tea cup",
                "dominant": "iced coke",
                "latent": "glass",
                "pattern": "beverage-container",
                "severity": 5,
                "rationale": "coke lives in glasses",
            }
        ],
        "concepts": [{"name": "tea cup", "description": "small ceramic cup with a handle"}],
        "stages": [
            {"prompt": "tea cup", "end": 0.25},
            {"prompt": "A tea cup of iced coke", "end": 1.0},
        ],
        "rewrites": {
            "natural": "n",
            "weighted": "w",
            "a1111": "[tea cup:A tea cup of iced coke:0.25]",
        },
        "planner": {"name": "test", "version": "1"},
    }
    base.update(changes)
    return base


def test_valid_plan_round_trips_through_json() -> None:
    plan = Plan.model_validate(plan_dict())
    again = Plan.model_validate_json(plan.model_dump_json())
    assert again == plan
    assert plan.version == 1
    assert plan.fragile == ["tea cup"]
    assert plan.switch_points == [0.25]


def test_plan_is_frozen() -> None:
    plan = Plan.model_validate(plan_dict())
    with pytest.raises(ValidationError):
        plan.prompt = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("stages", "needle"),
    [
        (
            [
                {"prompt": "tea cup", "end": 0.5},
                {"prompt": "tea cup", "end": 0.4},
                {"prompt": "A tea cup of iced coke", "end": 1.0},
            ],
            "strictly increase",
        ),
        (
            [{"prompt": "tea cup", "end": 0.25}, {"prompt": "A tea cup of iced coke", "end": 0.9}],
            "end at 1.0",
        ),
        (
            [{"prompt": "tea cup", "end": 0.25}, {"prompt": "a tea cup", "end": 1.0}],
            "drops prompt concepts: iced, coke",
        ),
        (
            [{"prompt": "tea cup", "end": 0.0}, {"prompt": "A tea cup of iced coke", "end": 1.0}],
            "greater than 0",
        ),
    ],
)
def test_stage_contract(stages: list[dict[str, Any]], needle: str) -> None:
    with pytest.raises(PlanValidationError) as info:
        validate_plan_dict(plan_dict(stages=stages))
    assert needle in str(info.value)


def test_concepts_must_come_from_the_prompt() -> None:
    bad = plan_dict(pairs=[{"fragile": "cat", "dominant": "iced coke"}])
    with pytest.raises(PlanValidationError, match="fragile concept 'cat' does not come from"):
        validate_plan_dict(bad)


def test_plural_and_compound_forms_count_as_from_the_prompt() -> None:
    plan = validate_plan_dict(
        plan_dict(
            prompt="Watermelons growing on a teacup tree",
            pairs=[{"fragile": "watermelon", "dominant": "tea cup tree"}],
            stages=[
                {"prompt": "watermelons", "end": 0.2},
                {"prompt": "Watermelons growing on a teacup tree", "end": 1.0},
            ],
        )
    )
    assert plan.pairs[0].fragile == "watermelon"


def test_no_risk_means_exactly_one_stage_and_no_pairs() -> None:
    with pytest.raises(PlanValidationError, match="no risk"):
        validate_plan_dict(plan_dict(at_risk=False))
    ok = validate_plan_dict(
        plan_dict(
            at_risk=False, pairs=[], stages=[{"prompt": "A tea cup of iced coke", "end": 1.0}]
        )
    )
    assert len(ok.stages) == 1


def test_at_risk_needs_a_pair() -> None:
    with pytest.raises(PlanValidationError, match="at least one concept pair"):
        validate_plan_dict(plan_dict(pairs=[]))


def test_severity_is_on_the_paper_scale() -> None:
    bad = plan_dict(pairs=[{"fragile": "tea cup", "dominant": "iced coke", "severity": 6}])
    with pytest.raises(PlanValidationError, match="severity"):
        validate_plan_dict(bad)


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(PlanValidationError, match="colour: Extra inputs"):
        validate_plan_dict(plan_dict(colour="blue"))


def test_three_stage_plan_is_valid() -> None:
    plan = validate_plan_dict(
        plan_dict(
            prompt="A penguin with peacock feathers at the Taj Mahal",
            pairs=[
                {"fragile": "peacock feathers", "dominant": "penguin"},
                {"fragile": "Taj Mahal", "dominant": "penguin"},
            ],
            stages=[
                {"prompt": "peacock feathers", "end": 0.15},
                {"prompt": "peacock feathers, Taj Mahal", "end": 0.3},
                {"prompt": "A penguin with peacock feathers at the Taj Mahal", "end": 1.0},
            ],
        )
    )
    assert plan.switch_points == [0.15, 0.3]


def test_with_planner_changes_provenance_only() -> None:
    plan = Plan.model_validate(plan_dict())
    cached = plan.with_planner(cached=True, attempts=0)
    assert cached.planner.cached and cached.planner.attempts == 0
    assert cached.stages == plan.stages and not plan.planner.cached


def test_schema_is_json_and_names_every_field() -> None:
    schema = plan_json_schema()
    json.dumps(schema)
    assert set(schema["properties"]) == {
        "version",
        "prompt",
        "at_risk",
        "pairs",
        "concepts",
        "stages",
        "rewrites",
        "planner",
    }
    assert "stages" in schema["required"]
