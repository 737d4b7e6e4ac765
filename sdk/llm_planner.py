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
import hashlib
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lcfix.cache import PlanCache, cache_key
from lcfix.compose import compose_plan
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
from lcfix.plan import ConceptPair, Plan, PlannerInfo, Usage
from lcfix.planner import MAX_PROMPT_CHARS
from lcfix.text import missing_words, phrase_in
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

if TYPE_CHECKING:
    from lcfix.llm import LLMClient
    from lcfix.planner import Planner

log = logging.getLogger(__name__)

TEMPLATE_FILE = "planner_prompt_v1.md"
_USER_MARKER = "<!-- user message -->"
_MAX_REASON = 400
_MAX_ECHO = 4000  # characters of a bad answer sent back in a re-ask

OUTPUT_BREAKER_THRESHOLD = 8
"""Prompts in a row whose answers stayed invalid before the planner stops asking for 60 s."""
SCREEN_MIN_RECALL = 0.95
SCREEN_DEV_RECALL: float | None = 1.0
"""Recall of the offline screen on ``lcmis_dev.jsonl`` (38/38 at-risk prompts flagged, with and
without embeddings; 0/26 false positives), measured by ``benchmarks/llm_planner.py screen``.
Screening (``auto`` mode) is on only while this reaches SCREEN_MIN_RECALL: re-measure and
update it when the offline knowledge base changes."""

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


_STRICT_KEYS = frozenset({"type", "items", "anyOf", "$ref", "description", "enum"})


def strict_schema(node: Any) -> Any:
    """A pydantic JSON schema cut to what strict structured outputs accept: every property
    required, no other keys, no defaults or bounds (``Answer`` checks those locally)."""
    if isinstance(node, list):
        return [strict_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict_schema(v) for k, v in node.items() if k in _STRICT_KEYS}
    if "$defs" in node:
        out["$defs"] = {name: strict_schema(sub) for name, sub in node["$defs"].items()}
    if "properties" in node:
        out["properties"] = {name: strict_schema(sub) for name, sub in node["properties"].items()}
        out["required"] = list(node["properties"])
        out["additionalProperties"] = False
    return out


ANSWER_SCHEMA: dict[str, Any] = strict_schema(Answer.model_json_schema())
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


def check_prompt(prompt: str) -> str:
    """The prompt, or InputError if it is empty or too long to plan."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("the prompt is empty", field="prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(
            f"the prompt has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}",
            field="prompt",
        )
    return prompt


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
