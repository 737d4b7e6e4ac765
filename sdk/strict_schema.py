"""OpenAI strict-mode JSON Schemas: build them from pydantic models and check them.

Strict mode (structured outputs and strict tool calls) accepts a subset of JSON Schema:
every property required, ``additionalProperties: false`` on every object, optional values as
nullable type unions, and a short list of keywords. Used by the tool definitions and by the
LLM planner's ``response_format``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["schema_problems", "strict_json_schema"]

# Keywords OpenAI's strict mode accepts (structured outputs, "supported schemas").
_KEYWORDS = frozenset(
    {
        "type", "description", "title", "properties", "required", "additionalProperties",
        "enum", "const", "anyOf", "items", "$ref", "$defs", "pattern", "format",
        "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
        "minItems", "maxItems",
    }
)  # fmt: skip
_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
_MAX_DEPTH = 10
_MAX_PROPERTIES = 5000
_MAX_ENUM = 1000


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a pydantic model, rewritten for OpenAI strict mode.

    Every property becomes required, objects get ``additionalProperties: false``,
    ``X | None`` becomes the type union ``["x", "null"]``, and keywords strict mode rejects
    (defaults, string lengths, titles) are dropped; pydantic still enforces them when the
    arguments are validated.
    """
    return _strict_node(model.model_json_schema())


def _strict_node(node: Mapping[str, Any]) -> dict[str, Any]:
    branches = node.get("anyOf")
    if isinstance(branches, list):
        merged = _merge_nullable(branches)
        if merged is not None:
            extra = {k: v for k, v in node.items() if k != "anyOf"}
            return _strict_node({**merged, **extra})
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEYWORDS or key == "title":
            continue
        if key == "properties" or key == "$defs":
            out[key] = {name: _strict_node(sub) for name, sub in value.items()}
        elif key == "items" and isinstance(value, Mapping):
            out[key] = _strict_node(value)
        elif key == "anyOf":
            out[key] = [_strict_node(b) for b in value]
        else:
            out[key] = value
    if "properties" in out:
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out


def _merge_nullable(branches: list[Any]) -> dict[str, Any] | None:
    """``anyOf: [{type: X, ...}, {type: null}]`` as ``{type: [X, "null"], ...}``, or None."""
    nulls = [b for b in branches if b == {"type": "null"}]
    rest = [b for b in branches if b != {"type": "null"}]
    if len(nulls) != 1 or len(rest) != 1 or not isinstance(rest[0].get("type"), str):
        return None
    merged = dict(rest[0])
    merged["type"] = [merged["type"], "null"]
    if "enum" in merged:
        merged["enum"] = [*merged["enum"], None]
    return merged


def schema_problems(schema: Mapping[str, Any]) -> list[str]:
    """Every way ``schema`` breaks OpenAI's strict-mode rules; empty when it complies.

    Checks: an object at the root, ``additionalProperties: false`` and every property
    required on every object, only supported keywords and formats, nullable enums that list
    null, local ``$ref`` targets, nesting depth, and the property and enum size limits.
    """
    defs = schema.get("$defs", {})
    check = _StrictCheck(defs if isinstance(defs, Mapping) else {})
    if schema.get("type") != "object" or "anyOf" in schema:
        check.problems.append("$: the root must be a plain object schema (type 'object', no anyOf)")
    check.node(schema, "$", 0)
    for name, sub in check.defs.items():
        check.node(sub, f"$defs.{name}", 1)
    if check.properties > _MAX_PROPERTIES:
        check.problems.append(f"$: {check.properties} properties; the limit is {_MAX_PROPERTIES}")
    return check.problems


class _StrictCheck:
    """One walk over a schema, collecting problems."""

    def __init__(self, defs: Mapping[str, Any]) -> None:
        self.defs = defs
        self.problems: list[str] = []
        self.properties = 0

    def node(self, node: Any, path: str, depth: int) -> None:
        say = self.problems.append
        if not isinstance(node, Mapping):
            say(f"{path}: a schema must be an object, got {type(node).__name__}")
            return
        if depth > _MAX_DEPTH:
            say(f"{path}: nested {depth} levels deep; strict mode allows {_MAX_DEPTH}")
            return
        for key in (k for k in node if k not in _KEYWORDS):
            say(f"{path}: keyword {key!r} is not supported in strict mode")
        ref = str(node.get("$ref", "#"))
        if ref != "#" and not (ref.startswith("#/$defs/") and ref[8:] in self.defs):
            say(f"{path}: $ref {ref!r} does not point into this schema's $defs")
        types = self.types(node, path)
        if "format" in node and node["format"] not in _FORMATS:
            say(f"{path}: format {node['format']!r} is not supported in strict mode")
        enum = node.get("enum")
        if "enum" in node and (not isinstance(enum, list) or not enum):
            say(f"{path}: enum must be a non-empty list")
        elif isinstance(enum, list) and len(enum) > _MAX_ENUM:
            say(f"{path}: {len(enum)} enum values; strict mode allows {_MAX_ENUM}")
        elif isinstance(enum, list) and "null" in types and None not in enum:
            say(f"{path}: a nullable enum must list null among its values")
        if "object" in types or "properties" in node:
            self.object(node, path, depth)
        if "array" in types:
            if "items" not in node:
                say(f"{path}: an array must declare items")
            else:
                self.node(node["items"], f"{path}[]", depth + 1)
        for i, branch in enumerate(node.get("anyOf") or []):
            self.node(branch, f"{path}.anyOf[{i}]", depth + 1)

    def types(self, node: Mapping[str, Any], path: str) -> set[str]:
        raw = node.get("type")
        if raw is None:
            if not any(k in node for k in ("anyOf", "$ref", "enum", "const")):
                self.problems.append(f"{path}: every schema needs a type (or anyOf, $ref, enum)")
            return set()
        values = raw if isinstance(raw, list) else [raw]
        self.problems.extend(f"{path}: unknown type {v!r}" for v in values if v not in _TYPES)
        return {str(v) for v in values}

    def object(self, node: Mapping[str, Any], path: str, depth: int) -> None:
        say = self.problems.append
        props = node.get("properties")
        if not isinstance(props, Mapping):
            say(f"{path}: an object must list its properties")
            props = {}
        if node.get("additionalProperties") is not False:
            say(f"{path}: additionalProperties must be false")
        required = node.get("required")
        if not isinstance(required, list):
            say(f"{path}: required must list every property")
        elif missing := [name for name in props if name not in required]:
            say(f"{path}: every property must be required; missing {missing}")
        elif unknown := [name for name in required if name not in props]:
            say(f"{path}: required names unknown properties {unknown}")
        self.properties += len(props)
        for name, sub in props.items():
            self.node(sub, f"{path}.{name}", depth + 1)
