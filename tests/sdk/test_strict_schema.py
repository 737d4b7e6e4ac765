"""lcfix.strict_schema: OpenAI strict-mode schemas from pydantic models, and their checker."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from lcfix.strict_schema import schema_problems, strict_json_schema


class _Args(BaseModel):
    prompt: str = Field(min_length=1, description="The prompt")
    seed: int | None = None
    mode: str | None = Field(default=None, json_schema_extra={"enum": ["a", "b", None]})


def test_pydantic_model_becomes_a_strict_schema() -> None:
    schema = strict_json_schema(_Args)
    assert schema_problems(schema) == []
    assert schema["required"] == ["prompt", "seed", "mode"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["seed"]["type"] == ["integer", "null"]
    assert "minLength" not in schema["properties"]["prompt"]


def _obj(**props: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ({**_obj(a={"type": "string"}), "required": []}, "every property must be required"),
        ({k: v for k, v in _obj(a={"type": "string"}).items() if k != "additionalProperties"},
         "additionalProperties must be false"),
        (_obj(a=_obj(b={"type": "string"}) | {"additionalProperties": True}),
         "$.a: additionalProperties must be false"),
        (_obj(a={"type": "string", "default": "x"}), "keyword 'default'"),
        (_obj(a={"type": "string", "minLength": 1}), "keyword 'minLength'"),
        (_obj(a={"type": ["string", "null"], "enum": ["x"]}), "must list null"),
        (_obj(a={"type": "string", "format": "uri"}), "format 'uri'"),
        (_obj(a={"$ref": "#/$defs/Missing"}), "does not point"),
        (_obj(a={"type": "array"}), "must declare items"),
        (_obj(a={"type": "strng"}), "unknown type 'strng'"),
        ({"anyOf": [_obj(a={"type": "string"})]}, "root must be a plain object"),
    ],
)  # fmt: skip
def test_schema_problems_finds_each_violation(schema: dict[str, Any], needle: str) -> None:
    problems = schema_problems(schema)
    assert any(needle in p for p in problems), problems


def test_schema_problems_limits_nesting() -> None:
    node: dict[str, Any] = _obj(leaf={"type": "string"})
    for _ in range(11):
        node = _obj(child=node)
    assert any("nested" in p for p in schema_problems(node))
    shallow = _obj(child=_obj(leaf={"type": "string"}))
    assert schema_problems(shallow) == []
