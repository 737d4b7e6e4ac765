"""The one place lcfix calls a chat LLM, through litellm.

    >>> client = LLMClient(resolve_llm_settings("openai/gpt-4o-mini"))
    >>> reply = client.complete([{"role": "user", "content": "Say hi as JSON"}],
    ...                         response_format={"type": "json_object"})
    >>> reply.text, reply.usage.total_tokens

litellm's own retries are off; tenacity retries 429, 5xx, timeouts and lost connections,
honouring ``Retry-After``, backing off exponentially with jitter, within a total time budget.
Credentials fail fast with a message naming the variable to set. A circuit breaker stops
calling an endpoint that keeps failing, so a dead server cannot stall a batch of thousands.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
)

from lcfix.config import LLMSettings, key_hint, needs_key, provider_of, redact
from lcfix.errors import (
    PlannerAuthError,
    PlannerBackendError,
    PlannerCircuitOpenError,
    PlannerRateLimitError,
    PlannerTimeoutError,
    PlannerTransientError,
)
from lcfix.plans import Usage

Message = Mapping[str, str]
FormatMode = Literal["json_schema", "json_object", "none"]
_NO_KEY = "lcfix-no-key"  # OpenAI-compatible local servers ignore the key but the SDK wants one
_MAX_DETAIL = 300


@dataclass(frozen=True)
class RetryPolicy:
    """Transport retries. The total time spent on one request stays under
    ``max_total + timeout`` (no new attempt starts if its wait would cross ``max_total``)."""

    max_attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 8.0
    max_total: float = 45.0
    max_retry_after: float = 30.0
    jitter: float = 0.5

    def wait(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number ``attempt``."""
        if retry_after is not None and retry_after >= 0:
            # Honour the server's word, capped; a cap above the budget stops the retries.
            return min(retry_after, self.max_retry_after)
        base = min(self.max_wait, self.initial_wait * 2.0 ** (attempt - 1))
        return base + random.uniform(0, self.jitter * base)


@dataclass(frozen=True)
class Completion:
    """The text of one chat reply and the tokens it cost."""

    text: str
    usage: Usage
    attempts: int = 1


class RateLimiter:
    """Spaces requests ``60 / rpm`` seconds apart, across threads and event loops."""

    def __init__(self, rpm: float) -> None:
        if rpm <= 0:
            raise ValueError("rpm must be positive")
        self.interval = 60.0 / rpm
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Book the next slot; returns how long to wait for it."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
            return start - now


@dataclass
class CircuitBreaker:
    """Opens after ``threshold`` failures in a row (5xx, timeouts, refused connections);
    while open, calls fail at once. Every ``cooldown`` seconds one probe is let through:
    its success closes the circuit, its failure keeps it open."""

    threshold: int = 5
    cooldown: float = 30.0
    _failures: int = 0
    _opened_at: float | None = None
    _probe_at: float | None = None
    _last: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self) -> None:
        """Raise PlannerCircuitOpenError unless a call may go ahead."""
        with self._lock:
            if self._opened_at is None:
                return
            now = time.monotonic()
            # A probe that never reported back (it failed some other way) expires too.
            if now - self._opened_at >= self.cooldown and (
                self._probe_at is None or now - self._probe_at >= self.cooldown
            ):
                self._probe_at = now
                return
            raise PlannerCircuitOpenError(
                f"skipped: the last {self._failures} LLM calls failed ({self._last})"
            )

    def success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._probe_at = 0, None, None

    def failure(self, reason: str) -> None:
        with self._lock:
            self._failures += 1
            self._last = reason
            if self._probe_at is not None or self._failures >= self.threshold:
                self._opened_at, self._probe_at = time.monotonic(), None

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None


def _litellm() -> ModuleType:
    # Imported on first use: litellm takes seconds to import, and a fully cached run
    # never needs it.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def format_mode(model: str) -> FormatMode:
    """JSON schema where litellm knows the model supports it, else JSON mode, else none."""
    litellm = _litellm()
    try:
        if litellm.supports_response_schema(model=model):
            return "json_schema"
        params = litellm.get_supported_openai_params(model=model) or []
    except Exception:  # unknown model or provider: plain text, parsed leniently
        return "none"
    return "json_object" if "response_format" in params else "none"


def response_format(
    mode: FormatMode, schema: Mapping[str, Any], name: str
) -> dict[str, Any] | None:
    """The ``response_format`` argument for ``mode``."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": dict(schema), "strict": True},
        }
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if not headers:
        return None
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    raw_ms = lower.get("retry-after-ms")
    if raw_ms:
        try:
            return max(float(raw_ms) / 1000.0, 0.0)
        except ValueError:
            pass
    raw = lower.get("retry-after")
    if not raw:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _headers_of(exc: BaseException) -> Mapping[str, str] | None:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    try:
        return dict(headers) if headers is not None else None
    except (TypeError, ValueError):
        return None


def translate_error(exc: Exception, settings: LLMSettings) -> PlannerBackendError:
    """One litellm (or httpx) exception as an lcfix error; secrets are scrubbed."""
    litellm = _litellm()
    model = settings.model
    detail = redact(str(exc), [settings.api_key]).replace("\n", " ")
    detail = detail[:_MAX_DETAIL] + ("..." if len(detail) > _MAX_DETAIL else "")
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    lowered = detail.lower()
    if (
        isinstance(exc, (litellm.AuthenticationError, litellm.PermissionDeniedError))
        or status in (401, 403)
        or "missing credentials" in lowered
        or "api_key client option must be set" in lowered
    ):
        return PlannerAuthError(
            f"the LLM provider rejected the credentials for {model}: {key_hint(model)}. ({detail})"
        )
    if isinstance(exc, litellm.Timeout) or status == 408:
        return PlannerTimeoutError(
            f"{model}: the request timed out after {settings.timeout:g}s", status_code=status
        )
    if isinstance(exc, litellm.RateLimitError) or status == 429:
        retry_after = parse_retry_after(_headers_of(exc))
        return PlannerRateLimitError(
            f"{model}: rate limited (429): {detail}", status_code=429, retry_after=retry_after
        )
    if isinstance(
        exc,
        (
            litellm.APIConnectionError,
            litellm.InternalServerError,
            litellm.ServiceUnavailableError,
            litellm.BadGatewayError,
        ),
    ) or (status is not None and status >= 500):
        return PlannerTransientError(f"{model}: server unavailable: {detail}", status_code=status)
    return PlannerBackendError(f"{model}: the LLM call failed: {detail}")


def _format_rejected(exc: Exception, litellm: ModuleType) -> bool:
    """A 400 that blames the response_format: retry in a plainer JSON mode."""
    if not isinstance(exc, (litellm.BadRequestError, litellm.UnsupportedParamsError)):
        return False
    if isinstance(exc, litellm.ContextWindowExceededError):
        return False
    text = str(exc).lower()
    return any(w in text for w in ("response_format", "json_schema", "json_object", "schema"))


def _with_format(kwargs: dict[str, Any], rf: dict[str, Any] | None) -> dict[str, Any]:
    return {**kwargs, "response_format": rf} if rf is not None else kwargs


class LLMClient:
    """Chat completions through litellm with retries, rate limiting and a circuit breaker.

    ``sleep``/``asleep`` exist so tests can observe and skip the waits.
    """

    def __init__(
        self,
        settings: LLMSettings,
        *,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self.limiter = limiter
        self.breaker = breaker or CircuitBreaker()
        self._sleep = sleep
        self._asleep = asleep
        self._litellm = _litellm()
        self._downgrades = 0
        if needs_key(settings.model) and settings.api_key is None and settings.api_base is None:
            raise PlannerAuthError(f"no API key for {settings.model}: {key_hint(settings.model)}")

    def format_mode(self) -> FormatMode:
        """How this model is asked for JSON (see ``format_mode``)."""
        return format_mode(self.settings.model)

    def _ladder(self, rf: Mapping[str, Any] | None) -> list[dict[str, Any] | None]:
        """``rf``, then plainer JSON modes to fall back on if the provider rejects it."""
        steps: list[dict[str, Any] | None] = []
        kind = rf.get("type") if rf else None
        if kind == "json_schema" and rf is not None:
            steps.append(dict(rf))
        if kind in ("json_schema", "json_object"):
            steps.append({"type": "json_object"})
        steps.append(None)
        return steps[min(self._downgrades, len(steps) - 1) :] if rf else [None]

    def _kwargs(self, messages: Sequence[Message]) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = {
            "model": s.model,
            "messages": [dict(m) for m in messages],
            "timeout": s.timeout,
            "max_retries": 0,  # tenacity owns retries
            "num_retries": 0,
            "temperature": 0,
            "drop_params": True,  # a model that rejects temperature still gets the call
        }
        if s.api_base:
            kwargs["api_base"] = s.api_base
        if s.api_key is not None:
            kwargs["api_key"] = s.api_key.get_secret_value()
        elif s.api_base and provider_of(s.model) == "openai" and needs_key(s.model):
            kwargs["api_key"] = _NO_KEY
        return kwargs

    @staticmethod
    def _reply(response: Any, attempts: int) -> Completion:
        try:
            text = response.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            text = ""
        usage = getattr(response, "usage", None)
        return Completion(
            text=text,
            usage=Usage(
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            ),
            attempts=attempts,
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return self.retry.wait(state.attempt_number, retry_after)

    def _policy(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.retry.max_attempts)
            | stop_before_delay(self.retry.max_total),
            "wait": self._wait,
            "retry": retry_if_exception_type(PlannerTransientError),
            "reraise": True,
        }

    def _failed(self, exc: Exception) -> PlannerBackendError:
        err = translate_error(exc, self.settings)
        if isinstance(err, PlannerTransientError) and not isinstance(err, PlannerRateLimitError):
            self.breaker.failure(str(err))  # a 429 means the server is alive
        return err

    def complete(
        self, messages: Sequence[Message], *, response_format: Mapping[str, Any] | None = None
    ) -> Completion:
        """One chat completion, retried on transient failures."""
        kwargs = self._kwargs(messages)
        attempts = 0
        try:
            for attempt in Retrying(sleep=self._sleep, **self._policy()):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    self.breaker.check()
                    if self.limiter is not None:
                        self._sleep(self.limiter.reserve())
                    ladder = self._ladder(response_format)
                    for i, rf in enumerate(ladder):
                        try:
                            response = self._litellm.completion(**_with_format(kwargs, rf))
                        except Exception as exc:
                            if i + 1 < len(ladder) and _format_rejected(exc, self._litellm):
                                self._downgrades += 1
                                continue
                            raise self._failed(exc) from exc
                        break
                    self.breaker.success()
                    return self._reply(response, attempts)
        except PlannerTransientError as exc:
            exc.attempts = attempts
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def acomplete(
        self, messages: Sequence[Message], *, response_format: Mapping[str, Any] | None = None
    ) -> Completion:
        """The async twin of ``complete``."""
        kwargs = self._kwargs(messages)
        attempts = 0
        try:
            async for attempt in AsyncRetrying(sleep=self._asleep, **self._policy()):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    self.breaker.check()
                    if self.limiter is not None:
                        await self._asleep(self.limiter.reserve())
                    ladder = self._ladder(response_format)
                    for i, rf in enumerate(ladder):
                        try:
                            response = await self._litellm.acompletion(**_with_format(kwargs, rf))
                        except Exception as exc:
                            if i + 1 < len(ladder) and _format_rejected(exc, self._litellm):
                                self._downgrades += 1
                                continue
                            raise self._failed(exc) from exc
                        break
                    self.breaker.success()
                    return self._reply(response, attempts)
        except PlannerTransientError as exc:
            exc.attempts = attempts
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")
