"""The shared HTTP machinery: error mapping, retries, idempotency, downloads, polling, flows."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from lcfix.adapters._http import (
    AsyncHttpClient,
    Call,
    HttpClient,
    PollPolicy,
    Reply,
    Sleep,
    arun_flow,
    decode_image,
    error_from_response,
    is_retryable,
    parse_retry_after,
    poll,
    resolve_secret,
    run_flow,
)
from lcfix.errors import (
    AuthenticationError,
    BackendConnectionError,
    BackendError,
    BackendServerError,
    BackendTimeoutError,
    BadRequestError,
    ConfigError,
    ContentPolicyError,
    RateLimitError,
)
from lcfix.testing import tiny_png
from tests.adapters.fakes import Clock

BASE = "https://api.example.test/v1"
PNG = tiny_png()


def client(clock: Clock, **kw: Any) -> HttpClient:
    kw.setdefault("retry", clock.policy())
    return HttpClient(adapter="t", api_base=BASE, **kw)


# --- error mapping --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (401, {"error": {"message": "bad key"}}, AuthenticationError),
        (403, {"error": {"message": "no access"}}, AuthenticationError),
        (403, {"name": "content_moderation", "errors": ["flagged"]}, ContentPolicyError),
        (400, {"error": {"code": "content_policy_violation", "message": "no"}}, ContentPolicyError),
        (400, {"error": {"code": "moderation_blocked", "message": "no"}}, ContentPolicyError),
        (400, {"error": {"code": "invalid_size", "message": "bad size"}}, BadRequestError),
        (422, "unprocessable", BadRequestError),
        (429, {"error": {"message": "slow"}}, RateLimitError),
        (408, "", BackendTimeoutError),
        (500, "boom", BackendServerError),
        (503, {"detail": "overloaded"}, BackendServerError),
    ],
)
def test_error_from_response_maps_each_status(status: int, body: object, cls: type) -> None:
    err = error_from_response(status, {"x-request-id": "req_1"}, body, adapter="t")
    assert type(err) is cls
    if cls is not BackendTimeoutError:
        assert "req_1" in str(err) and f"HTTP {status}" in str(err)


def test_error_message_names_the_key_variable_and_redacts_secrets() -> None:
    err = error_from_response(
        401,
        {},
        {"error": {"message": "key sk-live-123456 is wrong"}},
        adapter="openai",
        key_env="OPENAI_API_KEY",
        secrets=["sk-live-123456"],
    )
    assert "OPENAI_API_KEY" in str(err)
    assert "sk-live-123456" not in str(err)


def test_rate_limit_carries_retry_after() -> None:
    err = error_from_response(429, {"Retry-After": "7"}, {}, adapter="t")
    assert isinstance(err, RateLimitError) and err.retry_after == 7.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    now = 1445412480.0  # 07:28:00 that day
    assert parse_retry_after(headers, now=now) == expected


def test_quota_and_not_implemented_are_not_retried() -> None:
    quota = error_from_response(429, {}, {"error": {"code": "insufficient_quota"}}, adapter="t")
    assert not is_retryable(quota)
    assert not is_retryable(error_from_response(501, {}, "", adapter="t"))
    assert is_retryable(error_from_response(502, {}, "", adapter="t"))
    assert not is_retryable(error_from_response(400, {}, "", adapter="t"))


def test_resolve_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="FOO_KEY"):
        resolve_secret(None, "FOO_KEY", adapter="t")
    monkeypatch.setenv("FOO_KEY", "from-env")
    key = resolve_secret(None, "FOO_KEY", adapter="t")
    assert key is not None and key.get_secret_value() == "from-env"
    assert "from-env" not in repr(key)
    assert resolve_secret(None, "MISSING_KEY", adapter="t", required=False) is None


# --- retries and idempotency ----------------------------------------------------------------


def test_retries_429_then_503_honouring_retry_after_with_one_idempotency_key() -> None:
    clock = Clock()
    http = client(clock, idempotency_header="Idempotency-Key")
    with respx.mock(assert_all_mocked=True) as router:
        route = router.post(f"{BASE}/jobs").mock(
            side_effect=[
                httpx.Response(429, headers={"Retry-After": "2"}, json={"error": "slow"}),
                httpx.Response(503, json={"error": "busy"}),
                httpx.Response(200, json={"ok": True}),
            ]
        )
        reply = http.request(Call("POST", "jobs", json={"a": 1}, idempotent=True))
    assert reply.json == {"ok": True} and reply.attempts == 3
    assert clock.sleeps == [2.0, 1.0]  # Retry-After, then back-off 0.5 * 2**1
    keys = {c.request.headers["idempotency-key"] for c in route.calls}
    assert len(keys) == 1 and len(next(iter(keys))) == 32


def test_each_logical_request_gets_its_own_idempotency_key() -> None:
    http = client(Clock(), idempotency_header="Idempotency-Key")
    with respx.mock(assert_all_mocked=True) as router:
        route = router.post(f"{BASE}/jobs").mock(return_value=httpx.Response(200, json={}))
        http.request(Call("POST", "jobs", idempotent=True))
        http.request(Call("POST", "jobs", idempotent=True))
        http.request(Call("POST", "jobs"))
    keys = [c.request.headers.get("idempotency-key") for c in route.calls]
    assert keys[0] and keys[1] and keys[0] != keys[1] and keys[2] is None


def test_gives_up_after_the_attempt_limit() -> None:
    clock = Clock()
    http = client(clock, retry=clock.policy(attempts=3))
    with respx.mock(assert_all_mocked=True) as router:
        route = router.get(f"{BASE}/x").mock(return_value=httpx.Response(502, text="bad gateway"))
        with pytest.raises(BackendServerError, match="HTTP 502"):
            http.request(Call("GET", "x"))
    assert route.call_count == 3 and clock.sleeps == [0.5, 1.0]


def test_retry_after_beyond_the_total_budget_stops_at_once() -> None:
    clock = Clock()
    http = client(clock, retry=clock.policy(total=30.0))
    with respx.mock(assert_all_mocked=True) as router:
        route = router.get(f"{BASE}/x").mock(
            return_value=httpx.Response(429, headers={"Retry-After": "120"}, json={})
        )
        with pytest.raises(RateLimitError) as info:
            http.request(Call("GET", "x"))
    assert route.call_count == 1 and clock.sleeps == []
    assert info.value.retry_after == 120.0


def test_client_errors_are_not_retried() -> None:
    http = client(Clock())
    with respx.mock(assert_all_mocked=True) as router:
        route = router.get(f"{BASE}/x").mock(return_value=httpx.Response(400, json={}))
        with pytest.raises(BadRequestError):
            http.request(Call("GET", "x"))
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (httpx.ConnectError("refused"), BackendConnectionError),
        (httpx.ReadTimeout("slow"), BackendTimeoutError),
    ],
)
def test_transport_errors_are_retried_then_translated(exc: Exception, cls: type) -> None:
    clock = Clock()
    http = client(clock, retry=clock.policy(attempts=2))
    with respx.mock(assert_all_mocked=True) as router:
        route = router.get(f"{BASE}/x").mock(side_effect=exc)
        with pytest.raises(cls) as info:
            http.request(Call("GET", "x"))
    assert route.call_count == 2
    assert isinstance(info.value.__cause__, httpx.TransportError)


def test_credentials_go_only_to_the_api_origin() -> None:
    http = client(Clock(), auth={"Authorization": SecretStr("Bearer sk-abc")})
    with respx.mock(assert_all_mocked=True) as router:
        api = router.get(f"{BASE}/x").mock(return_value=httpx.Response(200, json={}))
        cdn = router.get("https://cdn.example.test/i.png").mock(
            return_value=httpx.Response(200, content=PNG, headers={"content-type": "image/png"})
        )
        http.request(Call("GET", "x"))
        http.request(Call("GET", "https://cdn.example.test/i.png", expect="image"))
    assert api.calls.last.request.headers["authorization"] == "Bearer sk-abc"
    assert "authorization" not in cdn.calls.last.request.headers


def test_async_client_retries_the_same_way() -> None:
    clock = Clock()
    http = AsyncHttpClient(adapter="t", api_base=BASE, retry=clock.policy())

    async def go() -> Reply:
        try:
            return await http.request(Call("GET", "x"))
        finally:
            await http.aclose()

    with respx.mock(assert_all_mocked=True) as router:
        router.get(f"{BASE}/x").mock(
            side_effect=[httpx.Response(500), httpx.Response(200, json={"n": 1})]
        )
        reply = asyncio.run(go())
    assert reply.json == {"n": 1} and reply.attempts == 2 and clock.sleeps == [0.5]


# --- downloads ------------------------------------------------------------------------------


def _image_route(router: respx.MockRouter, **kw: Any) -> None:
    router.get("https://cdn.example.test/i").mock(return_value=httpx.Response(200, **kw))


def test_download_checks_content_type() -> None:
    http = client(Clock())
    with respx.mock(assert_all_mocked=True) as router:
        _image_route(router, text="<html>", headers={"content-type": "text/html"})
        with pytest.raises(BackendError, match=r"expected an image.*text/html"):
            http.request(Call("GET", "https://cdn.example.test/i", expect="image"))


def test_download_accepts_octet_stream_that_is_an_image() -> None:
    http = client(Clock())
    with respx.mock(assert_all_mocked=True) as router:
        _image_route(router, content=PNG, headers={"content-type": "application/octet-stream"})
        reply = http.request(Call("GET", "https://cdn.example.test/i", expect="image"))
    assert reply.content == PNG and reply.mime_type == "image/png"


@pytest.mark.parametrize("declare_length", [True, False])
def test_download_enforces_the_size_limit(declare_length: bool) -> None:
    http = client(Clock(), max_image_bytes=len(PNG) - 1)
    # Without a Content-Length the body arrives chunked and is counted as it streams.
    body: Any = PNG if declare_length else iter([PNG[:30], PNG[30:]])
    with respx.mock(assert_all_mocked=True) as router:
        route = router.get("https://cdn.example.test/i").mock(
            return_value=httpx.Response(200, content=body, headers={"content-type": "image/png"})
        )
        with pytest.raises(BackendError, match="byte limit"):
            http.request(Call("GET", "https://cdn.example.test/i", expect="image"))
    assert ("content-length" in route.calls.last.response.headers) is declare_length


def test_expired_download_link_is_explained() -> None:
    http = client(Clock())
    with respx.mock(assert_all_mocked=True) as router:
        router.get("https://cdn.example.test/i").mock(return_value=httpx.Response(403))
        with pytest.raises(BackendError, match="may have expired"):
            http.request(Call("GET", "https://cdn.example.test/i", expect="image"))


def test_data_urls_and_base64_images() -> None:
    http = client(Clock())
    b64 = base64.b64encode(PNG).decode()
    reply = http.request(Call("GET", f"data:image/png;base64,{b64}", expect="image"))
    assert reply.content == PNG
    assert decode_image(b64, adapter="t") == (PNG, "image/png")
    with pytest.raises(BackendError, match="not valid base64"):
        decode_image("***", adapter="t")
    with pytest.raises(BackendError, match="not a PNG"):
        decode_image(base64.b64encode(b"hello").decode(), adapter="t")
    with pytest.raises(BackendError, match="byte limit"):
        decode_image(b64, adapter="t", max_bytes=10)


# --- polling and flows ----------------------------------------------------------------------


def _status_check(reply: Reply) -> tuple[bool, str]:
    return reply.json["status"] == "done", reply.json["status"]


def test_poll_backs_off_until_done() -> None:
    clock = Clock()
    policy = PollPolicy(interval=1.0, factor=2.0, maximum=3.0, timeout=60, clock=lambda: clock.now)
    flow = poll(Call("GET", "job/1"), _status_check, policy, adapter="t", job="1")
    http = client(clock)
    with respx.mock(assert_all_mocked=True) as router:
        route = router.get(f"{BASE}/job/1").mock(
            side_effect=[
                httpx.Response(200, json={"status": s}) for s in ("queued",) * 3 + ("done",)
            ]
        )
        reply = run_flow(flow, http)
    assert reply.json["status"] == "done" and route.call_count == 4
    assert clock.sleeps == [1.0, 2.0, 3.0]


def test_poll_times_out_with_the_last_status() -> None:
    clock = Clock()
    policy = PollPolicy(interval=5.0, factor=1.0, timeout=12, clock=lambda: clock.now)
    flow = poll(Call("GET", "job/1"), _status_check, policy, adapter="t", job="1")
    with respx.mock(assert_all_mocked=True) as router:
        router.get(f"{BASE}/job/1").mock(return_value=httpx.Response(200, json={"status": "busy"}))
        with pytest.raises(BackendTimeoutError, match="job 1 was still busy after 12 s"):
            run_flow(flow, client(clock))
    assert sum(clock.sleeps) <= 12


def test_the_same_flow_runs_sync_and_async() -> None:
    def flow() -> Any:
        first: Reply = yield Call("GET", "a")
        yield Sleep(0.25)
        second: Reply = yield Call("POST", "b", json={"from": first.json["v"]})
        return second.json["v"]

    for run_async in (False, True):
        clock = Clock()
        with respx.mock(assert_all_mocked=True) as router:
            router.get(f"{BASE}/a").mock(return_value=httpx.Response(200, json={"v": 1}))
            b = router.post(f"{BASE}/b").mock(return_value=httpx.Response(200, json={"v": 2}))
            if run_async:
                http = AsyncHttpClient(adapter="t", api_base=BASE, retry=clock.policy())
                assert asyncio.run(arun_flow(flow(), http)) == 2
            else:
                assert run_flow(flow(), client(clock)) == 2
        assert b.calls.last.request.content == b'{"from":1}' and clock.sleeps == [0.25]
