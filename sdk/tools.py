"""OpenAI tool calling: strict tool definitions for lcfix, and the handler that answers them.

    >>> from lcfix.tools import handle, tool_definitions
    >>> reply = openai.chat.completions.create(model=..., messages=msgs, tools=tool_definitions())
    >>> for call in reply.choices[0].message.tool_calls or []:
    ...     msgs.append({"role": "tool", "tool_call_id": call.id, "content": handle(call)})

Two tools: ``lcfix_plan_prompt`` (find the concept an image model is likely to drop and
return prompts that keep it) and ``lcfix_generate_image`` (plan, stage and draw on the
backend the application chose with ``client=``; the model never picks a backend, which
costs money). The definitions follow OpenAI's strict mode: every property is required,
``additionalProperties`` is false everywhere, and optional values are nullable type unions.
``schema_problems`` and ``tool_problems`` check a schema against those rules.

``handle`` never raises for a bad call: unknown tools, malformed JSON, bad arguments and
lcfix errors come back as a JSON error payload the model can read and correct.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lcfix.errors import ConfigError, LcfixError
from lcfix.planner import MAX_PROMPT_CHARS
from lcfix.plans import Plan, RewriteDialect
from lcfix.strict_schema import schema_problems, strict_json_schema

if TYPE_CHECKING:
    from lcfix.adapters.base import GeneratedImage, GenerationResult

__all__ = [
    "GENERATE_TOOL",
    "PLAN_TOOL",
    "GenerateImageArgs",
    "PlanPromptArgs",
    "RewriteDialect",
    "ToolClient",
    "ToolOutput",
    "ahandle",
    "arun_tool_call",
    "generation_payload",
    "handle",
    "plan_payload",
    "run_tool_call",
    "schema_problems",
    "strict_json_schema",
    "tool_definitions",
    "tool_problems",
]

logger = logging.getLogger(__name__)

PLAN_TOOL = "lcfix_plan_prompt"
GENERATE_TOOL = "lcfix_generate_image"
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_TOOL_IMAGES = 4


_Pixels = Annotated[int | None, Field(ge=64, le=4096)]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="The image prompt exactly as the user wants it drawn",
    )


class PlanPromptArgs(_Args):
    """Check an image prompt for concepts the image model is likely to lose."""

    dialect: RewriteDialect | None = Field(
        default=None,
        description=(
            "Which rewrite to return as rewritten_prompt: natural (plain language, for "
            "gpt-image, DALL-E, Imagen, Flux), weighted (Midjourney '::' weights), a1111 "
            "(Stable Diffusion web UI prompt editing). null means natural."
        ),
    )


class GenerateImageArgs(_Args):
    """Generate images for a prompt, staging the concepts the model is likely to lose."""

    num_images: int | None = Field(None, ge=1, le=MAX_TOOL_IMAGES, description="null means 1")
    seed: int | None = Field(None, ge=0, le=2**32 - 2, description="null for a random seed")
    negative_prompt: str | None = Field(None, description="What must not be shown, or null")
    width: _Pixels = Field(None, description="Width in pixels; null for the backend default")
    height: _Pixels = Field(None, description="Height in pixels; null for the backend default")


_TOOLS: dict[str, tuple[type[_Args], str]] = {
    PLAN_TOOL: (
        PlanPromptArgs,
        "Check an image prompt for latent concept misalignment before drawing it: finds the "
        "concept an image model tends to lose (e.g. the tea cup in 'a tea cup of iced coke', "
        "drawn as a glass) and returns a rewritten prompt that keeps it. Call it before "
        "generating any image whose prompt combines objects, containers or materials.",
    ),
    GENERATE_TOOL: (
        GenerateImageArgs,
        "Generate images for a prompt with lcfix: it plans the prompt, draws the fragile "
        "concept first (staging) where the backend allows it, and returns the images' "
        "metadata. Pass the user's prompt unchanged; lcfix rewrites it itself.",
    ),
}


def tool_problems(tool: Mapping[str, Any]) -> list[str]:
    """Every way a tool definition breaks strict-mode rules: the envelope, the name and the
    parameters schema. Accepts Chat Completions (``{"type": "function", "function": {...}}``)
    and Responses API (flat) definitions."""
    if tool.get("type") != "function":
        return [f"type must be 'function', got {tool.get('type')!r}"]
    fn = tool.get("function", tool)
    if not isinstance(fn, Mapping):
        return ["function must be an object"]
    problems: list[str] = []
    name = fn.get("name")
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        problems.append(f"name {name!r} must match {TOOL_NAME.pattern}")
    if fn.get("strict") is not True:
        problems.append(f"{name}: strict must be true")
    if not isinstance(fn.get("description"), str) or not fn.get("description"):
        problems.append(f"{name}: a description tells the model when to call the tool")
    params = fn.get("parameters")
    if not isinstance(params, Mapping):
        problems.append(f"{name}: parameters must be a JSON Schema object")
    else:
        problems.extend(f"{name}: {p}" for p in schema_problems(params))
    return problems


def tool_definitions(
    *, generate: bool = True, api: Literal["chat", "responses"] = "chat"
) -> list[dict[str, Any]]:
    """The lcfix tools as OpenAI strict function definitions.

    ``generate=False`` offers only ``lcfix_plan_prompt`` (for apps that draw elsewhere).
    ``api="responses"`` gives the flat shape the Responses API takes.
    """
    out = []
    for name, (model, description) in _TOOLS.items():
        if name == GENERATE_TOOL and not generate:
            continue
        params = strict_json_schema(model)
        params.pop("description", None)  # the tool's description says it already
        fn = {"name": name, "description": description, "parameters": params, "strict": True}
        out.append(
            {"type": "function", **fn}
            if api == "responses"
            else {"type": "function", "function": fn}
        )
    return out


# --- payloads ---------------------------------------------------------------------------------


def plan_payload(plan: Plan, dialect: RewriteDialect = "natural") -> dict[str, Any]:
    """What a chat model needs from a plan: the fragile concepts and the prompt to send."""
    pairs = [
        {
            "fragile": p.fragile,
            "dominant": p.dominant,
            "latent": p.latent,
            "pattern": p.pattern,
            "severity": p.severity,
            "rationale": p.rationale,
        }
        for p in plan.pairs
    ]
    if plan.at_risk:
        lost = "; ".join(
            f"{p.fragile!r} tends to be drawn as {p.latent!r} because of {p.dominant!r}"
            if p.latent
            else f"{p.fragile!r} tends to be lost next to {p.dominant!r}"
            for p in plan.pairs
        )
        advice = f"{lost}. Send rewritten_prompt to the image model, or generate with lcfix."
    else:
        advice = "No latent concept misalignment found; the prompt can be sent as it is."
    return {
        "prompt": plan.prompt,
        "at_risk": plan.at_risk,
        "fragile": plan.fragile,
        "pairs": pairs,
        "stages": [{"prompt": s.prompt, "end": s.end} for s in plan.stages],
        "dialect": dialect,
        "rewritten_prompt": getattr(plan.rewrites, dialect),
        "planner": plan.planner.name,
        "advice": advice,
    }


def generation_payload(
    result: GenerationResult, paths: Sequence[str | None] = ()
) -> dict[str, Any]:
    """A generation's audit trail, with one entry per image (never the image bytes)."""
    images = []
    for i, image in enumerate(result.images):
        entry: dict[str, Any] = {
            "index": image.index,
            "mime_type": image.mime_type,
            "bytes": len(image.data),
            "sha256": hashlib.sha256(image.data).hexdigest(),
        }
        if i < len(paths) and paths[i] is not None:
            entry["path"] = paths[i]
        images.append(entry)
    return {
        "backend": result.backend,
        "model": result.model,
        "plan": plan_payload(result.plan),
        "prompt_sent": result.prompt_sent,
        "revised_prompt": result.revised_prompt,
        "staging": result.staging,
        "seed": result.seed,
        "warnings": list(result.warnings),
        "images": images,
    }


# --- handling calls ---------------------------------------------------------------------------


class ToolClient(Protocol):
    """What ``handle`` needs from ``client=``: ``lcfix.Client`` fits."""

    def plan(self, prompt: str) -> Plan: ...

    def generate(
        self,
        prompt: str,
        *,
        negative_prompt: str | None = ...,
        width: int | None = ...,
        height: int | None = ...,
        seed: int | None = ...,
        num_images: int = ...,
    ) -> GenerationResult: ...


@dataclass(frozen=True)
class ToolOutput:
    """One answered tool call: ``content`` is the tool message; images stay in memory."""

    name: str
    call_id: str | None
    content: str
    is_error: bool = False
    plan: Plan | None = None
    result: GenerationResult | None = None
    images: tuple[GeneratedImage, ...] = field(default=())


class _BadCall(Exception):
    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True)
class _Call:
    name: str
    call_id: str | None
    args: _Args


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _parse_call(tool_call: Any) -> tuple[str, str | None, Any]:
    """(name, call id, raw arguments) from a Chat Completions tool call or a Responses API
    function_call item, as a dict or an SDK object."""
    fn = _get(tool_call, "function")
    source = fn if fn is not None else tool_call
    name = _get(source, "name")
    call_id = _get(tool_call, "id") if fn is not None else _get(tool_call, "call_id")
    if not isinstance(name, str) or not name:
        raise _BadCall("invalid_call", "the tool call has no function name")
    return name, call_id if isinstance(call_id, str) else None, _get(source, "arguments")


def _decode(name: str, call_id: str | None, raw: Any) -> _Call:
    entry = _TOOLS.get(name)
    if entry is None:
        known = ", ".join(_TOOLS)
        raise _BadCall("unknown_tool", f"no tool named {name!r}; lcfix offers {known}")
    if raw is None or raw == "":
        raw = "{}"
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _BadCall("invalid_arguments", f"arguments are not valid JSON: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise _BadCall("invalid_arguments", "arguments must be a JSON object")
    try:
        args = entry[0].model_validate(dict(raw))
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise _BadCall("invalid_arguments", detail) from exc
    return _Call(name, call_id, args)


def _error(name: str, call_id: str | None, kind: str, message: str) -> ToolOutput:
    body = {"error": {"type": kind, "message": message, "tool": name}}
    return ToolOutput(name, call_id, json.dumps(body, ensure_ascii=False), is_error=True)


def _failure(name: str, call_id: str | None, exc: Exception) -> ToolOutput:
    if isinstance(exc, _BadCall):
        return _error(name, call_id, exc.kind, str(exc))
    if isinstance(exc, LcfixError):
        return _error(name, call_id, type(exc).__name__, str(exc))
    # A chat loop must survive a bug in a tool; the log keeps the traceback.
    logger.exception("lcfix tool %s failed", name)
    return _error(name, call_id, "internal_error", f"{type(exc).__name__}: {exc}")


def _generate_kwargs(args: _Args) -> dict[str, Any]:
    values = args.model_dump(exclude={"prompt"}, exclude_none=True)
    values.setdefault("num_images", 1)
    return values


def _no_client(name: str) -> ConfigError:
    return ConfigError(
        f"{name} needs a backend chosen by the application: call "
        "handle(tool_call, client=lcfix.Client('openai:gpt-image-1'))"
    )


def _save_images(
    images: Sequence[GeneratedImage], image_dir: str | Path | None, call_id: str | None
) -> list[str | None]:
    if image_dir is None:
        return [None] * len(images)
    folder = Path(image_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", call_id or "") or "lcfix"
    paths: list[str | None] = []
    for image in images:
        path = folder / f"{stem}-{image.index}.{image.extension}"
        path.write_bytes(image.data)
        paths.append(str(path))
    return paths


def _plan_output(call: _Call, plan: Plan) -> ToolOutput:
    assert isinstance(call.args, PlanPromptArgs)
    payload = plan_payload(plan, call.args.dialect or "natural")
    return ToolOutput(call.name, call.call_id, json.dumps(payload, ensure_ascii=False), plan=plan)


def _generate_output(call: _Call, result: GenerationResult, paths: list[str | None]) -> ToolOutput:
    payload = generation_payload(result, paths)
    if all(p is None for p in paths):
        payload["note"] = "the images were returned to the application"
    return ToolOutput(
        call.name,
        call.call_id,
        json.dumps(payload, ensure_ascii=False),
        plan=result.plan,
        result=result,
        images=tuple(result.images),
    )


def _default_plan(prompt: str) -> Plan:
    from lcfix.planner import get_planner

    planner = get_planner("auto")
    try:
        return planner.plan(prompt)
    finally:
        planner.close()


def run_tool_call(
    tool_call: Any, *, client: ToolClient | None = None, image_dir: str | Path | None = None
) -> ToolOutput:
    """Answer one tool call; ``handle`` returns just its ``content``.

    ``client`` plans and generates (an ``lcfix.Client``); without one, plans come from the
    default planner and ``lcfix_generate_image`` answers with a configuration error.
    ``image_dir`` saves generated images there and reports their paths to the model.
    """
    name, call_id = "?", None
    try:
        name, call_id, raw = _parse_call(tool_call)
        call = _decode(name, call_id, raw)
        prompt = call.args.prompt
        if isinstance(call.args, PlanPromptArgs):
            return _plan_output(call, client.plan(prompt) if client else _default_plan(prompt))
        if client is None:
            raise _no_client(name)
        result = client.generate(prompt, **_generate_kwargs(call.args))
        return _generate_output(call, result, _save_images(result.images, image_dir, call_id))
    except Exception as exc:
        return _failure(name, call_id, exc)


async def arun_tool_call(
    tool_call: Any, *, client: Any = None, image_dir: str | Path | None = None
) -> ToolOutput:
    """Async twin of ``run_tool_call``; ``client`` is an ``lcfix.AsyncClient`` (a sync client
    runs in a worker thread)."""
    name, call_id = "?", None
    try:
        name, call_id, raw = _parse_call(tool_call)
        call = _decode(name, call_id, raw)
        prompt = call.args.prompt
        if isinstance(call.args, PlanPromptArgs):
            if client is None:
                return _plan_output(call, await asyncio.to_thread(_default_plan, prompt))
            return _plan_output(call, await _maybe_async(client, "aplan", "plan", prompt))
        if client is None:
            raise _no_client(name)
        kwargs = _generate_kwargs(call.args)
        result = await _maybe_async(client, "agenerate", "generate", prompt, **kwargs)
        paths = await asyncio.to_thread(_save_images, result.images, image_dir, call_id)
        return _generate_output(call, result, paths)
    except Exception as exc:
        return _failure(name, call_id, exc)


async def _maybe_async(client: Any, async_name: str, sync_name: str, *args: Any, **kw: Any) -> Any:
    method = getattr(client, async_name, None)
    if method is None:
        return await asyncio.to_thread(getattr(client, sync_name), *args, **kw)
    value = method(*args, **kw)
    return await value if inspect.isawaitable(value) else value


def handle(
    tool_call: Any, *, client: ToolClient | None = None, image_dir: str | Path | None = None
) -> str:
    """The tool message content (a JSON string) answering one lcfix tool call.

    ``tool_call`` is a Chat Completions tool call or a Responses API ``function_call``
    item, as a dict or an SDK object. Errors come back as ``{"error": {"type", "message",
    "tool"}}``; nothing raises.
    """
    return run_tool_call(tool_call, client=client, image_dir=image_dir).content


async def ahandle(
    tool_call: Any, *, client: Any = None, image_dir: str | Path | None = None
) -> str:
    """Async twin of ``handle``."""
    return (await arun_tool_call(tool_call, client=client, image_dir=image_dir)).content
