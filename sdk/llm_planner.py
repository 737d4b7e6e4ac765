"""The LLM planner: any litellm model finds the LC-Mis pairs of a prompt.

    >>> planner = LLMPlanner("openai/gpt-4o-mini", fallback=OfflinePlanner())
    >>> plan = planner.plan("a tea cup of iced coke")
    >>> plan.planner.name, plan.pairs[0].fragile
    ('llm', 'tea cup')

The LLM answers a small JSON object (``ANSWER_SCHEMA``): pairs, concept descriptions, a
stage-1 prior and a natural rewrite. lcfix checks it against the prompt (every concept comes
from the prompt, no stage adds one, the last stage keeps them all), re-asks with the problems
at most ``max_reasks`` times, and otherwise falls back to the offline planner:

- the fallback plan keeps the fallback planner's ``name`` ("offline"), and records
  ``fallback="llm failed: <why>"``, ``model=<the LLM model>``, the LLM ``attempts`` and any
  tokens spent;
- a rejected credential is not a per-prompt failure: ``PlannerAuthError`` is raised (fail fast).

Successful LLM plans are cached in sqlite (see ``lcfix.cache``); a hit makes no HTTP call and
is marked ``cached=True`` with ``attempts=0`` and no usage.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from lcfix.cache import PlanCache, cache_key
from lcfix.config import redact, resolve_llm_settings
from lcfix.errors import (
    CacheError,
    ConfigError,
    InputError,
    LcfixError,
    PlannerAuthError,
    PlannerError,
    PlannerOutputError,
    PlanValidationError,
)
from lcfix.llm import CircuitBreaker, Completion, RateLimiter, RetryPolicy
from lcfix.llm_answer import (
    ANSWER_SCHEMA,
    load_template,
    parse_answer,
    reask_messages,
    replan_for,
)
from lcfix.planner import check_prompt
from lcfix.plans import Plan, PlannerInfo, Usage

if TYPE_CHECKING:
    from lcfix.llm import LLMClient
    from lcfix.planner import Planner

log = logging.getLogger(__name__)


_MAX_REASON = 400
OUTPUT_BREAKER_THRESHOLD = 8
"""Prompts in a row whose answers stayed invalid before the planner stops asking for 60 s."""
SCREEN_MIN_RECALL = 0.95
SCREEN_DEV_RECALL: float | None = 1.0
"""Recall of the offline screen on ``lcmis_dev.jsonl`` (38/38 at-risk prompts flagged, with and
without embeddings; 0/26 false positives), measured by ``benchmarks/llm_planner.py screen``.
Screening (``auto`` mode) is on only while this reaches SCREEN_MIN_RECALL: re-measure and
update it when the offline knowledge base changes."""
# ---- the planner ---------------------------------------------------------------------------


@dataclass
class _Tally:
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, reply: Completion) -> None:
        self.attempts += 1
        self.prompt_tokens += reply.usage.prompt_tokens
        self.completion_tokens += reply.usage.completion_tokens

    @property
    def usage(self) -> Usage | None:
        if not self.attempts:
            return None
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)


class _Talk:
    """One prompt's exchange with the LLM: the messages to send, and what each answer means."""

    def __init__(self, planner: LLMPlanner, prompt: str, tally: _Tally) -> None:
        planner._answers.check()
        self.planner, self.prompt, self.tally = planner, prompt, tally
        self.messages = planner.template.messages(prompt)
        self.asks_left = planner.max_reasks + 1

    def answer(self, reply: Completion) -> Plan | None:
        """The checked plan, or None after queueing a re-ask; PlannerOutputError when no
        asks are left."""
        self.tally.add(reply)
        self.asks_left -= 1
        planner = self.planner
        try:
            plan = parse_answer(self.prompt, reply.text, planner._info(self.tally))
        except PlanValidationError as exc:
            if self.asks_left <= 0:
                problems = "; ".join(exc.problems)
                planner._answers.failure(f"invalid answers: {problems}"[:200])
                raise PlannerOutputError(
                    f"the LLM's plan stayed invalid after {self.tally.attempts} attempts: "
                    + problems,
                    attempts=self.tally.attempts,
                    last_output=reply.text,
                ) from None
            self.messages = reask_messages(self.messages, reply.text, exc.problems)
            return None
        planner._answers.success()
        return plan


@dataclass(frozen=True)
class _Deferred:
    """A prompt whose LLM planning failed; its fallback plan is still to be made."""

    error: BaseException
    tally: _Tally


class LLMPlanner:
    """Plans prompts with an LLM through litellm, with a cache and an offline fallback.

    ``model``/``api_base`` default to ``LCFIX_LLM_MODEL``/``LCFIX_LLM_API_BASE``; provider
    keys come from the provider's usual variable (``OPENAI_API_KEY``, ...) or ``api_key``.
    ``cache`` is True (the user cache), False, or a path. ``concurrency`` bounds the prompts
    in flight in ``plan_many``/``aplan_many``; ``rpm`` caps requests per minute.
    """

    name = "llm"

    def __init__(
        self,
        model: str | None = None,
        api_base: str | None = None,
        fallback: Planner | None = None,
        cache: bool | str | Path = True,
        concurrency: int = 16,
        rpm: float | None = None,
        screen: bool = False,
        timeout: float | None = None,
        max_reasks: int = 2,
        *,
        api_key: str | SecretStr | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.settings = resolve_llm_settings(model, api_base, api_key=api_key, timeout=timeout)
        self.model = self.settings.model
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
        if rpm is not None and rpm <= 0:
            raise ConfigError(f"rpm must be positive, got {rpm}")
        if max_reasks < 0:
            raise ConfigError(f"max_reasks must be 0 or more, got {max_reasks}")
        self.fallback = fallback
        self.concurrency = concurrency
        self.max_reasks = max_reasks
        self.screen = bool(screen) and fallback is not None and screening_validated()
        self.template = load_template()
        self.version = f"prompt-{self.template.version.split('-')[0]}"
        self._limiter = RateLimiter(rpm) if rpm else None
        self._retry = retry
        self._breaker = breaker or CircuitBreaker()
        # An endpoint that answers, but never with a usable plan (a wrong model, a proxy's
        # error page), would cost every prompt all its re-asks: stop asking it for a while.
        self._answers = CircuitBreaker(threshold=OUTPUT_BREAKER_THRESHOLD, cooldown=60.0)
        self._client: LLMClient | None = None
        self._response_format: dict[str, Any] | None = None
        self._client_lock = threading.Lock()
        self._warned = False
        self._cache: PlanCache | None = None
        if cache is True:
            self._cache = PlanCache()
        elif isinstance(cache, (str, Path)) and str(cache):
            self._cache = PlanCache(cache)
        # The endpoint is part of the model's identity: one name may serve two models.
        self._cache_model = json.dumps([self.model, self.settings.api_base])

    def __repr__(self) -> str:
        return f"LLMPlanner(model={self.model!r}, api_base={self.settings.api_base!r})"

    @property
    def cache(self) -> PlanCache | None:
        """The plan cache, or None when off (or disabled after an error)."""
        return self._cache

    # -- shared, no I/O but the cache ---------------------------------------------------------

    def _key(self, prompt: str) -> str:
        return cache_key(prompt, self._cache_model, self.template.version)

    def _info(self, tally: _Tally) -> PlannerInfo:
        return PlannerInfo(
            name=self.name,
            model=self.model,
            version=self.version,
            attempts=tally.attempts,
            usage=tally.usage,
        )

    def _cache_failed(self, exc: CacheError) -> None:
        log.warning("plan cache disabled for this run: %s", exc)
        self._cache = None

    def _cached(self, prompts: Sequence[str]) -> dict[str, Plan]:
        """Cache hits by prompt, marked cached and rebuilt for each prompt's exact text."""
        if self._cache is None or not prompts:
            return {}
        keys = {p: self._key(p) for p in prompts}
        try:
            found = self._cache.get_many(list(set(keys.values())))
        except CacheError as exc:
            self._cache_failed(exc)
            return {}
        out: dict[str, Plan] = {}
        for prompt, key in keys.items():
            hit = found.get(key)
            if hit is not None:
                plan = replan_for(hit, prompt)
                out[prompt] = plan.with_planner(cached=True, attempts=0, usage=None)
        return out

    def _store(self, prompt: str, plan: Plan) -> None:
        if self._cache is None:
            return
        try:
            self._cache.put(
                self._key(prompt), plan, model=self._cache_model, template=self.template.version
            )
        except CacheError as exc:
            self._cache_failed(exc)

    def _get_client(self) -> tuple[LLMClient, dict[str, Any] | None]:
        with self._client_lock:
            if self._client is None:
                from lcfix.llm import LLMClient, response_format

                client = LLMClient(
                    self.settings, retry=self._retry, limiter=self._limiter, breaker=self._breaker
                )
                self._response_format = response_format(
                    client.format_mode(), ANSWER_SCHEMA, "lcfix_plan"
                )
                self._client = client
            return self._client, self._response_format

    def _reason(self, exc: BaseException) -> str:
        what = str(exc) if isinstance(exc, LcfixError) else f"{type(exc).__name__}: {exc}"
        reason = redact(f"llm failed: {what}", [self.settings.api_key])
        return reason[:_MAX_REASON] + ("..." if len(reason) > _MAX_REASON else "")

    def _fell_back(self, plan: Plan, exc: BaseException, tally: _Tally) -> Plan:
        reason = self._reason(exc)
        if not self._warned:
            self._warned = True
            log.warning("LLM planner falling back to the %s planner: %s", plan.planner.name, reason)
        return plan.with_planner(
            fallback=reason, model=self.model, attempts=tally.attempts, usage=tally.usage
        )

    @staticmethod
    def _screened(plan: Plan) -> Plan:
        """An offline plan that found no risk, kept instead of asking the LLM."""
        return plan.with_planner(fallback="screened: the offline planner found no risk")

    def _triage(self, exc: Exception) -> None:
        """Re-raise what must not fall back: bad credentials, or any failure with no fallback."""
        if isinstance(exc, PlannerAuthError) or (
            self.fallback is None and isinstance(exc, LcfixError)
        ):
            raise exc
        if self.fallback is None:
            raise PlannerError(self._reason(exc)) from exc

    # -- sync ---------------------------------------------------------------------------------

    def _ask(self, prompt: str, tally: _Tally) -> Plan:
        client, rf = self._get_client()
        talk = _Talk(self, prompt, tally)
        while (plan := talk.answer(client.complete(talk.messages, response_format=rf))) is None:
            pass
        return plan

    def _plan_miss(self, prompt: str) -> Plan:
        offline: Plan | None = None
        if self.screen and self.fallback is not None:
            try:
                offline = self.fallback.plan(prompt)
            except LcfixError:
                offline = None  # no screen for this prompt: ask the LLM
            if offline is not None and not offline.at_risk:
                return self._screened(offline)
        tally = _Tally()
        try:
            plan = self._ask(prompt, tally)
        except Exception as exc:  # any LLM failure, even a bug in a provider, falls back
            self._triage(exc)
            assert self.fallback is not None  # _triage raised otherwise
            return self._fell_back(offline or self.fallback.plan(prompt), exc, tally)
        self._store(prompt, plan)
        return plan

    def plan(self, prompt: str) -> Plan:
        """Plan one prompt. Falls back to the fallback planner; raises only for bad input,
        rejected credentials, or a failure with no fallback."""
        check_prompt(prompt)
        hit = self._cached([prompt]).get(prompt)
        return hit if hit is not None else self._plan_miss(prompt)

    def plan_many(self, prompts: Sequence[str]) -> list[Plan | LcfixError]:
        """One result per prompt, in order, planned ``concurrency`` at a time."""
        coro = self.aplan_many(prompts)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # Called from inside an event loop (a notebook, an async app): run on a fresh loop.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, coro).result()

    # -- async --------------------------------------------------------------------------------

    async def _aask(self, prompt: str, tally: _Tally) -> Plan:
        client, rf = self._get_client()
        talk = _Talk(self, prompt, tally)
        while (
            plan := talk.answer(await client.acomplete(talk.messages, response_format=rf))
        ) is None:
            pass
        return plan

    async def _aplan_miss(
        self, prompt: str, offline: Plan | None = None, *, defer: bool = False
    ) -> Plan | _Deferred:
        """Plan a prompt the cache lacks. ``offline`` is its offline plan when the batch
        already screened it; with ``defer``, a needed fallback is returned as ``_Deferred``
        so the batch can run the fallback planner once for all of them."""
        if self.screen and self.fallback is not None:
            if offline is None:
                try:
                    offline = await self.fallback.aplan(prompt)
                except LcfixError:
                    offline = None  # no screen for this prompt: ask the LLM
            if offline is not None and not offline.at_risk:
                return self._screened(offline)
        tally = _Tally()
        try:
            plan = await self._aask(prompt, tally)
        except Exception as exc:  # any LLM failure, even a bug in a provider, falls back
            self._triage(exc)
            assert self.fallback is not None  # _triage raised otherwise
            if offline is None and defer:
                return _Deferred(exc, tally)
            return self._fell_back(offline or await self.fallback.aplan(prompt), exc, tally)
        self._store(prompt, plan)
        return plan

    async def aplan(self, prompt: str) -> Plan:
        """The async twin of ``plan``."""
        check_prompt(prompt)
        hit = self._cached([prompt]).get(prompt)
        if hit is not None:
            return hit
        plan = await self._aplan_miss(prompt)
        assert isinstance(plan, Plan)  # nothing is deferred without defer=True
        return plan

    async def aplan_many(self, prompts: Sequence[str]) -> list[Plan | LcfixError]:
        """One result per prompt, in order. Identical prompts are planned once; at most
        ``concurrency`` are in flight. Raises only PlannerAuthError (the key is wrong for all)."""
        prompts = list(prompts)
        results: list[Plan | LcfixError | None] = [None] * len(prompts)
        todo: dict[str, list[int]] = {}
        for i, prompt in enumerate(prompts):
            try:
                check_prompt(prompt)
            except InputError as exc:
                results[i] = exc
                continue
            todo.setdefault(prompt, []).append(i)
        for prompt, plan in self._cached(list(todo)).items():
            for i in todo.pop(prompt):
                results[i] = plan
        offline: dict[str, Plan] = {}
        if self.screen and self.fallback is not None and todo:
            # One batch call: the offline planner batches its embedding lookups.
            screened = await self.fallback.aplan_many(list(todo))
            offline = {p: r for p, r in zip(todo, screened, strict=True) if isinstance(r, Plan)}
        gate = asyncio.Semaphore(self.concurrency)
        deferred: dict[str, _Deferred] = {}

        async def run(prompt: str, where: list[int]) -> None:
            async with gate:
                res: Plan | _Deferred | LcfixError
                try:
                    res = await self._aplan_miss(prompt, offline.get(prompt), defer=True)
                except PlannerAuthError:
                    raise
                except LcfixError as exc:
                    res = exc
            if isinstance(res, _Deferred):
                deferred[prompt] = res
                return
            for i in where:
                results[i] = res

        tasks = [asyncio.ensure_future(run(p, where)) for p, where in todo.items()]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        if deferred and self.fallback is not None:
            # One batch call for every prompt the LLM failed: the offline planner batches
            # its embedding lookups, which per-prompt calls in threads would not.
            fallen = await self.fallback.aplan_many(list(deferred))
            for (prompt, why), fb in zip(deferred.items(), fallen, strict=True):
                res = self._fell_back(fb, why.error, why.tally) if isinstance(fb, Plan) else fb
                for i in todo[prompt]:
                    results[i] = res
        return [r if r is not None else PlannerError("not planned") for r in results]

    def close(self) -> None:
        """Close the cache and the fallback planner."""
        if self._cache is not None:
            self._cache.close()
        if self.fallback is not None:
            self.fallback.close()


def screening_validated() -> bool:
    """Whether the offline screen met the recall bar on the dev set (see SCREEN_DEV_RECALL)."""
    return SCREEN_DEV_RECALL is not None and SCREEN_DEV_RECALL >= SCREEN_MIN_RECALL
