"""The Planner protocol and how a planner is chosen.

A planner turns a prompt into a Plan. Two ship with lcfix: the embedded offline planner
(no network, no key, deterministic) and the LLM planner (any litellm model), which falls back
to the offline planner when the LLM fails.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Literal, Protocol, get_args, runtime_checkable

from lcfix.errors import ConfigError, InputError, LcfixError
from lcfix.plans import Plan

PlannerKind = Literal["offline", "llm", "auto"]
PLANNER_KINDS: tuple[str, ...] = get_args(PlannerKind)
MAX_PROMPT_CHARS = 4000
"""Longest prompt lcfix plans; longer ones are an input error (documented in docs/cli.md)."""


def check_prompt(prompt: object, *, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """``prompt`` unchanged, or InputError (field ``prompt``) when it is not a string, is
    empty, or is longer than ``max_chars``. Every entry point checks prompts with this."""
    if not isinstance(prompt, str):
        raise InputError(f"a prompt must be a string, got {type(prompt).__name__}", field="prompt")
    if not prompt.strip():
        raise InputError("empty prompt", field="prompt")
    if len(prompt) > max_chars:
        raise InputError(
            f"prompt is {len(prompt)} characters; the limit is {max_chars}", field="prompt"
        )
    return prompt


@runtime_checkable
class Planner(Protocol):
    """Anything that turns prompts into plans."""

    name: str

    def plan(self, prompt: str) -> Plan: ...

    def plan_many(self, prompts: Sequence[str]) -> list[Plan | LcfixError]:
        """One result per prompt, in order; a failed prompt gives its error, not an exception."""
        ...

    async def aplan(self, prompt: str) -> Plan: ...

    async def aplan_many(self, prompts: Sequence[str]) -> list[Plan | LcfixError]: ...

    def close(self) -> None: ...


class BasePlanner:
    """Default batch and async methods for planners that only implement ``plan``.

    ``aplan`` runs ``plan`` in a worker thread so a CPU-bound planner never blocks the loop.
    """

    name = "base"

    def plan(self, prompt: str) -> Plan:
        raise NotImplementedError

    def plan_many(self, prompts: Sequence[str]) -> list[Plan | LcfixError]:
        out: list[Plan | LcfixError] = []
        for prompt in prompts:
            try:
                out.append(self.plan(prompt))
            except LcfixError as exc:
                out.append(exc)
        return out

    async def aplan(self, prompt: str) -> Plan:
        return await asyncio.to_thread(self.plan, prompt)

    async def aplan_many(self, prompts: Sequence[str]) -> list[Plan | LcfixError]:
        return await asyncio.to_thread(self.plan_many, prompts)

    def close(self) -> None:
        return None


def llm_configured(model: str | None = None) -> bool:
    """Whether an LLM model is set, by argument or ``LCFIX_LLM_MODEL``."""
    return bool(model or os.environ.get("LCFIX_LLM_MODEL"))


def get_planner(
    kind: PlannerKind = "auto",
    *,
    model: str | None = None,
    api_base: str | None = None,
    embeddings: bool | None = None,
    cache: bool | str = True,
    concurrency: int = 16,
    rpm: float | None = None,
) -> Planner:
    """Build a planner.

    ``auto`` picks the LLM planner when a model is configured (argument or
    ``LCFIX_LLM_MODEL``), otherwise the offline planner. ``embeddings`` turns the offline
    planner's MiniLM generalisation on or off (default: off unless ``LCFIX_EMBEDDINGS=1``;
    it needs the ``embeddings`` extra).
    """
    from lcfix.offline import OfflinePlanner

    if kind not in PLANNER_KINDS:
        raise ConfigError(f"unknown planner {kind!r}; choose offline, llm or auto")
    offline = OfflinePlanner(embeddings=embeddings)
    if kind == "offline" or (kind == "auto" and not llm_configured(model)):
        return offline
    if not llm_configured(model):
        raise ConfigError(
            "the LLM planner needs a model: pass --model (e.g. openai/gpt-4o-mini) "
            "or set LCFIX_LLM_MODEL"
        )
    from lcfix.llm_planner import LLMPlanner

    return LLMPlanner(
        model=model,
        api_base=api_base,
        fallback=offline,
        cache=cache,
        concurrency=concurrency,
        rpm=rpm,
        screen=(kind == "auto"),
    )
