"""Shared machinery for hosted adapters: error mapping, retries, downloads, polling, flows.

An adapter writes its upstream conversation once, as a *flow*: a generator that yields
``Call`` (a request to make) or ``Sleep`` and is sent back each call's ``Reply``. ``run_flow``
drives a flow with the sync ``HttpClient``, ``arun_flow`` with ``AsyncHttpClient``; everything
that decides (errors, back-off, polling, prompt choice) does no I/O and is shared by both.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import json
import logging
import os
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

import httpx
from pydantic import SecretStr
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception

from lcfix import __version__
from lcfix.errors import (
    AdapterError,
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

log = logging.getLogger("lcfix.adapters")
T = TypeVar("T")

MAX_IMAGE_BYTES = 50 * 1024 * 1024
# Substrings of an error body's code, type or message that mean "refused by moderation".
_POLICY = re.compile(r"content.(policy|moderation|filter)|moderation.blocked|safety.system|nsfw")


# --- secrets ------------------------------------------------------------------------------


def resolve_secret(
    value: str | SecretStr | None, env: str | None, *, adapter: str, required: bool = True
) -> SecretStr | None:
    """The key from the argument, else from ``env``; a missing required key is a ConfigError
    that names the variable."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value and env:
        value = os.environ.get(env, "").strip()
    if value:
        return SecretStr(value)
    if required:
        where = f"set {env} or pass api_key=..." if env else "pass api_key=..."
        raise ConfigError(f"backend {adapter!r} needs an API key: {where}")
    return None


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


# --- errors -------------------------------------------------------------------------------


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lower:
            return max(float(lower["retry-after-ms"]) / 1000.0, 0.0)
        raw = lower.get("retry-after")
        if raw is None:
            return None
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(raw)).timestamp()
    except (TypeError, ValueError):
        return None
    return max(when - (time.time() if now is None else now), 0.0)


def _message_of(body: object) -> str:
    if isinstance(body, dict):
        for key in ("error", "message", "detail", "description", "errors", "failReason", "name"):
            value = body.get(key)
            if isinstance(value, dict):
                return _message_of(value)
            if isinstance(value, list) and value:
                return "; ".join(str(v) for v in value)
            if value:
                return str(value)
        return str(body)[:500]
    return str(body or "")[:500]


def _codes_of(body: object) -> str:
    """Every short code-like field of an error body, lower-cased, for classification."""
    if not isinstance(body, dict):
        return str(body).lower()
    inner = body.get("error")
    parts = [str(body.get(k, "")) for k in ("code", "type", "name", "finish_reason")]
    if isinstance(inner, dict):
        parts += [str(inner.get(k, "")) for k in ("code", "type", "message")]
    return " ".join([*parts, _message_of(body)]).lower()


def is_policy_refusal(body: object) -> bool:
    return _POLICY.search(_codes_of(body)) is not None


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: object,
    *,
    adapter: str,
    key_env: str | None = None,
    secrets: Sequence[str] = (),
) -> AdapterError:
    """The one place an HTTP error status becomes an lcfix error."""
    lower = {k.lower(): v for k, v in headers.items()}
    request_id = lower.get("x-request-id") or lower.get("request-id")
    msg = redact(_message_of(body), secrets)
    where = f"HTTP {status}" + (f", request id {request_id}" if request_id else "")
    kw: dict[str, Any] = {"adapter": adapter, "request_id": request_id, "body": body}
    if status in (400, 403, 422, 451) and is_policy_refusal(body):
        text = f"the provider refused the prompt under its content policy ({where}): {msg}"
        return ContentPolicyError(text, status_code=status, **kw)
    if status in (401, 403):
        text = f"the provider rejected the credentials ({where}): {msg}"
        return AuthenticationError(text + (f"; check {key_env}" if key_env else ""), **kw)
    if status == 429:
        text = f"rate limited ({where}): {msg}"
        return RateLimitError(text, retry_after=parse_retry_after(headers), **kw)
    if status == 408:
        return BackendTimeoutError(f"the provider timed out the request ({where})", adapter=adapter)
    kw["status_code"] = status
    if status >= 500:
        return BackendServerError(f"the provider failed ({where}): {msg}", **kw)
    if status >= 400:
        return BadRequestError(f"the request was rejected ({where}): {msg}", **kw)
    return BackendError(f"unexpected reply ({where}): {msg}", **kw)


def error_from_transport(exc: httpx.TransportError, *, adapter: str, url: str) -> AdapterError:
    origin = str(httpx.URL(url).copy_with(path="/", query=None, fragment=None))
    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeoutError(f"request to {origin} timed out", adapter=adapter)
    return BackendConnectionError(
        f"could not reach {origin}: {type(exc).__name__}: {exc}", adapter=adapter
    )


def is_retryable(exc: BaseException) -> bool:
    """429 (but not an exhausted quota), 5xx other than 501, timeouts, connection errors."""
    if isinstance(exc, RateLimitError):
        return "insufficient_quota" not in _codes_of(exc.body)
    if isinstance(exc, BackendServerError):
        return exc.status_code != 501
    return isinstance(exc, (BackendTimeoutError, BackendConnectionError))


# --- retries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter, honouring ``Retry-After``, bounded in attempts and in
    total time. ``sleep``/``asleep`` are injectable so tests run instantly."""

    attempts: int = 5
    initial: float = 0.5
    multiplier: float = 2.0
    maximum: float = 20.0
    jitter: float = 0.25
    total: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def wait(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, (int, float)):
            return float(retry_after)
        delay = min(self.initial * self.multiplier ** (attempt - 1), self.maximum)
        return delay * (1.0 + self.jitter * random.random())

    def _stop(self, rs: RetryCallState) -> bool:
        if rs.attempt_number >= self.attempts:
            return True
        spent = max(rs.seconds_since_start or 0.0, rs.idle_for)
        return spent + (rs.upcoming_sleep or 0.0) > self.total

    def _wait(self, rs: RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome is not None else None
        return self.wait(rs.attempt_number, exc)

    def _kwargs(self) -> dict[str, Any]:
        return {
            "retry": retry_if_exception(is_retryable),
            "wait": self._wait,
            "stop": self._stop,
            "reraise": True,
            "before_sleep": _log_retry,
        }


NO_RETRY = RetryPolicy(attempts=1)


def _log_retry(rs: RetryCallState) -> None:
    exc = rs.outcome.exception() if rs.outcome is not None else None
    attempt = rs.attempt_number + 1
    log.warning("%s; retrying in %.1f s (attempt %d)", exc, rs.upcoming_sleep, attempt)


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy) -> T:
    """Run ``fn`` under ``policy``; the last lcfix error propagates when retries run out."""
    return Retrying(sleep=policy.sleep, **policy._kwargs())(fn)


async def acall_with_retries(fn: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    """Async twin of ``call_with_retries``."""
    return await AsyncRetrying(sleep=policy.asleep, **policy._kwargs())(fn)


# --- calls, replies, flows ----------------------------------------------------------------

FileField = tuple[str, tuple[str | None, bytes | str, str | None]]


@dataclass(frozen=True)
class Call:
    """One request a flow wants made. ``url`` is absolute or relative to the api_base."""

    method: str
    url: str
    json: Any = None
    files: Sequence[FileField] | None = None
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    idempotent: bool = False
    expect: Literal["json", "image"] = "json"


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Reply:
    status: int
    json: Any
    content: bytes = b""
    mime_type: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    attempts: int = 1
    elapsed: float = 0.0

    @property
    def json_object(self) -> dict[str, Any]:
        """The JSON body when it is an object, else an empty dict (to read fields from)."""
        return self.json if isinstance(self.json, dict) else {}

    @property
    def trace(self) -> dict[str, Any]:
        """What a SentRequest records about this reply."""
        return {
            "status": self.status,
            "attempts": self.attempts,
            "elapsed_s": round(self.elapsed, 3),
        }


Flow = Generator["Call | Sleep", Any, T]


def sniff_mime(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def decode_image(b64: str, *, adapter: str, max_bytes: int = MAX_IMAGE_BYTES) -> tuple[bytes, str]:
    """Decode a base64 image (or a ``data:`` URL), checking its size and that it is an image."""
    if b64.startswith("data:"):
        b64 = b64.partition(",")[2]
    if len(b64) * 3 // 4 > max_bytes:
        raise BackendError(f"image is larger than the {max_bytes} byte limit", adapter=adapter)
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BackendError(
            "the provider returned an image that is not valid base64", adapter=adapter
        ) from exc
    mime = sniff_mime(data)
    if mime is None:
        raise BackendError(
            "the provider returned data that is not a PNG, JPEG, WebP or GIF image", adapter=adapter
        )
    return data, mime


def _image_mime(header: str, data: bytes, *, adapter: str, host: str) -> str:
    declared = header.split(";")[0].strip().lower()
    sniffed = sniff_mime(data)
    if declared.startswith("image/") and sniffed:
        return sniffed
    if declared in ("", "application/octet-stream", "binary/octet-stream") and sniffed:
        return sniffed
    raise BackendError(
        f"expected an image from {host}, got {declared or 'no content type'}", adapter=adapter
    )


class _ClientBase:
    def __init__(
        self,
        *,
        adapter: str,
        api_base: str,
        auth: Mapping[str, SecretStr] | None = None,
        key_env: str | None = None,
        timeout: float = 180.0,
        retry: RetryPolicy | None = None,
        idempotency_header: str | None = None,
        max_image_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        self.adapter = adapter
        self.api_base = api_base.rstrip("/")
        self._auth = dict(auth or {})
        self.key_env = key_env
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 15.0))
        self.retry = retry or RetryPolicy()
        self.idempotency_header = idempotency_header
        self.max_image_bytes = max_image_bytes
        self._base_origin = httpx.URL(self.api_base).copy_with(path="/", query=None)

    @property
    def secrets(self) -> list[str]:
        out = []
        for value in self._auth.values():
            raw = value.get_secret_value()
            out += [raw, raw.split()[-1]] if raw.strip() else []
        return out

    def url(self, call: Call) -> str:
        if "://" in call.url:
            return call.url
        return f"{self.api_base}/{call.url.lstrip('/')}"

    def _headers(self, call: Call, url: str, key: str | None) -> dict[str, str]:
        headers = {"User-Agent": f"lcfix/{__version__}", **call.headers}
        # Credentials go only to the api_base's origin, never to CDN links in a reply.
        if httpx.URL(url).copy_with(path="/", query=None) == self._base_origin:
            headers.update({k: v.get_secret_value() for k, v in self._auth.items()})
        if key and self.idempotency_header:
            headers[self.idempotency_header] = key
        return headers

    def _kwargs(self, call: Call, key: str | None) -> dict[str, Any]:
        url = self.url(call)
        return {
            "method": call.method,
            "url": url,
            "json": call.json,
            "files": call.files,
            "params": call.params,
            "headers": self._headers(call, url, key),
        }

    def _reply(self, call: Call, resp: httpx.Response, content: bytes, started: float) -> Reply:
        elapsed = time.perf_counter() - started
        host = resp.request.url.host
        if resp.status_code >= 400:
            if call.expect == "image" and resp.status_code in (401, 403, 404, 410):
                raise BackendError(
                    f"could not download the image from {host}: HTTP {resp.status_code} "
                    "(the link may have expired)",
                    adapter=self.adapter,
                    status_code=resp.status_code,
                )
            try:
                body: object = json.loads(content)
            except ValueError:
                body = content[:500].decode("utf-8", "replace")
            raise error_from_response(
                resp.status_code,
                resp.headers,
                body,
                adapter=self.adapter,
                key_env=self.key_env,
                secrets=self.secrets,
            )
        if call.expect == "image":
            mime = _image_mime(
                resp.headers.get("content-type", ""), content, adapter=self.adapter, host=host
            )
            return Reply(resp.status_code, None, content, mime, resp.headers, elapsed=elapsed)
        try:
            data = json.loads(content) if content else None
        except ValueError as exc:
            raise BackendError(
                f"{host} answered HTTP {resp.status_code} with a body that is not JSON",
                adapter=self.adapter,
                status_code=resp.status_code,
            ) from exc
        return Reply(resp.status_code, data, b"", "", resp.headers, elapsed=elapsed)

    def _check_size(self, call: Call, total: int, declared: str | None = None) -> None:
        limit = self.max_image_bytes
        if call.expect == "image" and (total > limit or int(declared or 0) > limit):
            raise BackendError(f"image is larger than the {limit} byte limit", adapter=self.adapter)

    def _data_url(self, call: Call) -> Reply | None:
        if call.expect == "image" and call.url.startswith("data:"):
            data, mime = decode_image(
                call.url, adapter=self.adapter, max_bytes=self.max_image_bytes
            )
            return Reply(200, None, data, mime)
        return None

    def _new_key(self, call: Call) -> str | None:
        # One key per logical request, reused by every retry of it.
        return uuid.uuid4().hex if call.idempotent and self.idempotency_header else None


class HttpClient(_ClientBase):
    """Sync requests with retries and error mapping over an httpx.Client."""

    def __init__(self, *, client: httpx.Client | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._owns = client is None
        self._client = client or httpx.Client(timeout=self.timeout)

    def request(self, call: Call) -> Reply:
        if (inline := self._data_url(call)) is not None:
            return inline
        key, tries = self._new_key(call), [0]

        def once() -> Reply:
            tries[0] += 1
            kwargs = self._kwargs(call, key)
            started = time.perf_counter()
            try:
                with self._client.stream(**kwargs) as resp:
                    chunks, total = [], 0
                    self._check_size(call, 0, resp.headers.get("content-length"))
                    for chunk in resp.iter_bytes():
                        total += len(chunk)
                        self._check_size(call, total)
                        chunks.append(chunk)
            except httpx.TransportError as exc:
                raise error_from_transport(exc, adapter=self.adapter, url=kwargs["url"]) from exc
            return self._reply(call, resp, b"".join(chunks), started)

        return replace(call_with_retries(once, self.retry), attempts=tries[0])

    def close(self) -> None:
        if self._owns:
            self._client.close()


class AsyncHttpClient(_ClientBase):
    """Async twin of HttpClient over an httpx.AsyncClient."""

    def __init__(self, *, client: httpx.AsyncClient | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._owns = client is None
        self._client = client or httpx.AsyncClient(timeout=self.timeout)

    async def request(self, call: Call) -> Reply:
        if (inline := self._data_url(call)) is not None:
            return inline
        key, tries = self._new_key(call), [0]

        async def once() -> Reply:
            tries[0] += 1
            kwargs = self._kwargs(call, key)
            started = time.perf_counter()
            try:
                async with self._client.stream(**kwargs) as resp:
                    chunks, total = [], 0
                    self._check_size(call, 0, resp.headers.get("content-length"))
                    async for chunk in resp.aiter_bytes():
                        total += len(chunk)
                        self._check_size(call, total)
                        chunks.append(chunk)
            except httpx.TransportError as exc:
                raise error_from_transport(exc, adapter=self.adapter, url=kwargs["url"]) from exc
            return self._reply(call, resp, b"".join(chunks), started)

        return replace(await acall_with_retries(once, self.retry), attempts=tries[0])

    async def aclose(self) -> None:
        if self._owns:
            await self._client.aclose()


def run_flow(flow: Flow[T], client: HttpClient) -> T:
    """Drive a flow with sync I/O."""
    try:
        step = next(flow)
        while True:
            if isinstance(step, Sleep):
                client.retry.sleep(step.seconds)
                step = flow.send(None)
            else:
                step = flow.send(client.request(step))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        flow.close()


async def arun_flow(flow: Flow[T], client: AsyncHttpClient) -> T:
    """Drive a flow with async I/O."""
    try:
        step = next(flow)
        while True:
            if isinstance(step, Sleep):
                await client.retry.asleep(step.seconds)
                step = flow.send(None)
            else:
                step = flow.send(await client.request(step))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        flow.close()


# --- polling ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PollPolicy:
    """How a job is polled: growing intervals and an overall timeout (``clock`` injectable)."""

    interval: float = 1.0
    factor: float = 1.5
    maximum: float = 10.0
    timeout: float = 600.0
    clock: Callable[[], float] = time.monotonic

    def delay(self, poll: int) -> float:
        return min(self.interval * self.factor**poll, self.maximum)


def poll(
    call: Call,
    check: Callable[[Reply], tuple[bool, str]],
    policy: PollPolicy,
    *,
    adapter: str,
    job: str,
) -> Generator[Call | Sleep, Any, Reply]:
    """Sub-flow: repeat ``call`` until ``check`` says done (it raises on failure states)."""
    start = policy.clock()
    n = 0
    while True:
        reply: Reply = yield call
        done, status = check(reply)
        if done:
            return reply
        delay = policy.delay(n)
        if policy.clock() - start + delay > policy.timeout:
            raise BackendTimeoutError(
                f"job {job} was still {status or 'pending'} after {policy.timeout:g} s of polling",
                adapter=adapter,
            )
        n += 1
        yield Sleep(delay)
