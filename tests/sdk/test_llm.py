"""The litellm port: error translation, Retry-After, tenacity retries, JSON modes, breaker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx

from lcfix.config import LLMSettings, resolve_llm_settings
from lcfix.errors import (
    PlannerAuthError,
    PlannerBackendError,
    PlannerCircuitOpenError,
    PlannerRateLimitError,
    PlannerTimeoutError,
    PlannerTransientError,
)
from lcfix.llm import (
    CircuitBreaker,
    LLMClient,
    RateLimiter,
    RetryPolicy,
    format_mode,
    parse_retry_after,
    response_format,
)

OPENAI = "https://api.openai.com/v1/chat/completions"
LOCAL = "http://127.0.0.1:9/v1"
KEY = "sk-test-very-secret-key-123"
MSGS = [{"role": "user", "content": "answer in JSON"}]
FAST = RetryPolicy(max_attempts=4, initial_wait=0.001, max_wait=0.004, max_total=30.0)


def chat(
    content: str = "{}", prompt_tokens: int = 11, completion_tokens: int = 7
) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        },
    )


def error(
    status: int, message: str = "boom", headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"error": {"message": message}})


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> LLMSettings:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return resolve_llm_settings("openai/gpt-4o-mini", timeout=5)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)

    async def a(self, seconds: float) -> None:
        self.calls.append(seconds)


def client(settings: LLMSettings, sleeps: Sleeps, **kw: Any) -> LLMClient:
    kw.setdefault("retry", FAST)
    return LLMClient(settings, sleep=sleeps, asleep=sleeps.a, **kw)


# ---- pure helpers ----------------------------------------------------------------------------


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert (
        25 <= (parse_retry_after({"Retry-After": format_datetime(later, usegmt=True)}) or 0) <= 31
    )
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


def test_backoff_grows_with_bounded_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(initial_wait=1.0, max_wait=4.0, jitter=0.5, max_retry_after=10.0)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        waits = {policy.wait(attempt, None) for _ in range(20)}
        assert all(base <= w <= base * 1.5 for w in waits)
        assert len(waits) > 1  # jitter
    assert policy.wait(1, 3.0) == 3.0
    assert policy.wait(1, 99.0) == 10.0


def test_rate_limiter_spaces_requests() -> None:
    limiter = RateLimiter(rpm=600)  # one every 0.1 s
    delays = [limiter.reserve() for _ in range(4)]
    assert delays[0] == pytest.approx(0.0, abs=0.01)
    assert delays[3] == pytest.approx(0.3, abs=0.02)
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_circuit_breaker_opens_then_probes() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=0.05)
    breaker.check()
    breaker.failure("500")
    breaker.check()
    breaker.failure("500")
    with pytest.raises(PlannerCircuitOpenError, match="500"):
        breaker.check()
    time.sleep(0.06)
    breaker.check()  # the one probe
    with pytest.raises(PlannerCircuitOpenError):
        breaker.check()  # others wait for the probe
    breaker.success()
    breaker.check()
    assert not breaker.is_open


def test_circuit_breaker_lost_probe_expires() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=0.05)
    breaker.failure("timeout")
    time.sleep(0.06)
    breaker.check()  # a probe that never reports back...
    time.sleep(0.06)
    breaker.check()  # ...does not block the circuit forever
    breaker.failure("timeout")
    with pytest.raises(PlannerCircuitOpenError):
        breaker.check()


def test_format_mode_by_model() -> None:
    assert format_mode("openai/gpt-4o-mini") == "json_schema"
    assert format_mode("openai/some-local-model") == "json_object"
    schema = {"type": "object"}
    assert response_format("json_schema", schema, "p") == {
        "type": "json_schema",
        "json_schema": {"name": "p", "schema": schema, "strict": True},
    }
    assert response_format("json_object", schema, "p") == {"type": "json_object"}
    assert response_format("none", schema, "p") is None


# ---- calls through litellm -------------------------------------------------------------------


def test_complete_returns_text_and_usage(mock: respx.MockRouter, settings: LLMSettings) -> None:
    route = mock.post(OPENAI).mock(return_value=chat('{"a": 1}', 30, 5))
    reply = client(settings, Sleeps()).complete(MSGS, response_format={"type": "json_object"})
    assert reply.text == '{"a": 1}'
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (30, 5)
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = json.loads(request.content)
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"] == MSGS


def test_429_with_retry_after_then_success(mock: respx.MockRouter, settings: LLMSettings) -> None:
    route = mock.post(OPENAI).mock(
        side_effect=[error(429, "slow down", {"Retry-After": "7"}), chat("ok")]
    )
    sleeps = Sleeps()
    reply = client(settings, sleeps).complete(MSGS)
    assert reply.text == "ok" and reply.attempts == 2
    assert route.call_count == 2  # litellm's own retries are off: one HTTP call per attempt
    assert sleeps.calls == [7.0]


def test_retry_after_beyond_the_budget_gives_up_at_once(
    mock: respx.MockRouter, settings: LLMSettings
) -> None:
    route = mock.post(OPENAI).mock(return_value=error(429, headers={"Retry-After": "3"}))
    sleeps = Sleeps()
    policy = RetryPolicy(max_total=2.0, max_retry_after=30.0)
    with pytest.raises(PlannerRateLimitError) as info:
        client(settings, sleeps, retry=policy).complete(MSGS)
    assert info.value.retry_after == 3.0
    assert route.call_count == 1 and sleeps.calls == []


def test_5xx_until_retries_run_out(mock: respx.MockRouter, settings: LLMSettings) -> None:
    route = mock.post(OPENAI).mock(return_value=error(503, "overloaded"))
    sleeps = Sleeps()
    with pytest.raises(PlannerTransientError) as info:
        client(settings, sleeps).complete(MSGS)
    assert route.call_count == FAST.max_attempts
    assert info.value.attempts == FAST.max_attempts
    assert len(sleeps.calls) == FAST.max_attempts - 1
    assert sleeps.calls == sorted(sleeps.calls) or max(sleeps.calls) <= FAST.max_wait * 1.5


def test_timeout_is_retried_then_raised(mock: respx.MockRouter, settings: LLMSettings) -> None:
    route = mock.post(OPENAI).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(PlannerTimeoutError, match="timed out"):
        client(settings, Sleeps()).complete(MSGS)
    assert route.call_count == FAST.max_attempts


def test_connection_error_is_transient(mock: respx.MockRouter, settings: LLMSettings) -> None:
    route = mock.post(OPENAI).mock(side_effect=[httpx.ConnectError("refused"), chat("ok")])
    assert client(settings, Sleeps()).complete(MSGS).text == "ok"
    assert route.call_count == 2


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_fail_fast_and_name_the_variable(
    mock: respx.MockRouter, settings: LLMSettings, status: int
) -> None:
    route = mock.post(OPENAI).mock(return_value=error(status, f"bad key {KEY}"))
    with pytest.raises(PlannerAuthError) as info:
        client(settings, Sleeps()).complete(MSGS)
    assert route.call_count == 1
    assert "OPENAI_API_KEY" in str(info.value)
    assert KEY not in str(info.value)


def test_missing_key_fails_before_any_call(mock: respx.MockRouter) -> None:
    with pytest.raises(PlannerAuthError, match="ANTHROPIC_API_KEY"):
        LLMClient(resolve_llm_settings("anthropic/claude-3-5-haiku-latest"))
    with pytest.raises(PlannerAuthError, match="OPENAI_API_KEY"):
        LLMClient(resolve_llm_settings("openai/gpt-4o-mini"))


def test_bad_request_is_not_retried(mock: respx.MockRouter, settings: LLMSettings) -> None:
    route = mock.post(OPENAI).mock(return_value=error(400, "context too long"))
    with pytest.raises(PlannerBackendError) as info:
        client(settings, Sleeps()).complete(MSGS)
    assert not isinstance(info.value, PlannerTransientError)
    assert route.call_count == 1


def test_rejected_response_format_steps_down_to_json_mode(
    mock: respx.MockRouter, settings: LLMSettings
) -> None:
    route = mock.post(OPENAI).mock(
        side_effect=[error(400, "response_format json_schema is not supported"), chat("{}")]
    )
    c = client(settings, Sleeps())
    rf = response_format("json_schema", {"type": "object"}, "p")
    assert c.complete(MSGS, response_format=rf).text == "{}"
    sent = [json.loads(call.request.content).get("response_format") for call in route.calls]
    assert sent == [rf, {"type": "json_object"}]
    route.mock(return_value=chat("{}"))
    c.complete(MSGS, response_format=rf)  # remembered: no second rejected call
    assert json.loads(route.calls.last.request.content)["response_format"] == {
        "type": "json_object"
    }


def test_local_server_without_key_gets_a_placeholder(mock: respx.MockRouter) -> None:
    route = mock.post(f"{LOCAL}/chat/completions").mock(return_value=chat("hi"))
    settings = resolve_llm_settings("openai/local-model", LOCAL)
    assert client(settings, Sleeps()).complete(MSGS).text == "hi"
    assert route.calls.last.request.headers["authorization"] == "Bearer lcfix-no-key"


def test_explicit_key_is_sent_but_never_shown(mock: respx.MockRouter) -> None:
    route = mock.post(f"{LOCAL}/chat/completions").mock(return_value=chat("hi"))
    settings = resolve_llm_settings("openai/local-model", LOCAL, api_key=KEY)
    assert KEY not in repr(settings) and KEY not in settings.model_dump_json()
    client(settings, Sleeps()).complete(MSGS)
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"


def test_breaker_stops_calls_to_a_dead_endpoint(
    mock: respx.MockRouter, settings: LLMSettings
) -> None:
    route = mock.post(OPENAI).mock(side_effect=httpx.ConnectError("refused"))
    c = client(settings, Sleeps(), breaker=CircuitBreaker(threshold=3, cooldown=60))
    with pytest.raises(PlannerBackendError):
        c.complete(MSGS)
    assert route.call_count == 3  # the breaker opened before the 4th attempt
    with pytest.raises(PlannerCircuitOpenError):
        c.complete(MSGS)
    assert route.call_count == 3


async def test_async_twin_retries_the_same_way(
    mock: respx.MockRouter, settings: LLMSettings
) -> None:
    route = mock.post(OPENAI).mock(
        side_effect=[error(429, headers={"Retry-After": "2"}), error(500), chat("ok", 3, 4)]
    )
    sleeps = Sleeps()
    reply = await client(settings, sleeps).acomplete(MSGS)
    assert reply.text == "ok" and reply.attempts == 3 and reply.usage.total_tokens == 7
    assert route.call_count == 3
    assert sleeps.calls[0] == 2.0 and len(sleeps.calls) == 2


async def test_async_auth_error(mock: respx.MockRouter, settings: LLMSettings) -> None:
    mock.post(OPENAI).mock(return_value=error(401))
    with pytest.raises(PlannerAuthError, match="OPENAI_API_KEY"):
        await client(settings, Sleeps()).acomplete(MSGS)
