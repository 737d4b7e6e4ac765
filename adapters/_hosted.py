"""What the hosted adapters share above the transport: a base class that owns the HTTP clients
and credentials, and the pure choices every hosted backend makes (which rewrite to send,
whether to emulate staging, which latent concepts to exclude, which aspect ratio fits)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from lcfix.adapters._http import (
    MAX_IMAGE_BYTES,
    AsyncHttpClient,
    Flow,
    HttpClient,
    PollPolicy,
    RetryPolicy,
    arun_flow,
    resolve_secret,
    run_flow,
)
from lcfix.adapters.base import (
    AdapterOptions,
    Capabilities,
    GenerationRequest,
    GenerationResult,
    StagingMode,
    parse_options,
)
from lcfix.compose import excludable_latents
from lcfix.errors import ConfigError, UnsupportedError
from lcfix.plans import Plan, RewriteDialect, Stage
from lcfix.text import phrase_in


class HostedAdapter:
    """Base for adapters that talk to an HTTP API through a flow (see ``_http``).

    Subclasses set the class attributes and implement ``_flow``; ``generate`` and
    ``agenerate`` drive the same flow with sync or async I/O.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    Options: ClassVar[type[AdapterOptions]]
    key_env: ClassVar[str | None] = None
    key_required: ClassVar[bool] = True
    base_env: ClassVar[str | None] = None
    default_api_base: ClassVar[str | None] = None
    # Sent with every POST that creates something; the server dedupes retries when it
    # supports the header and ignores it otherwise.
    idempotency_header: ClassVar[str | None] = "Idempotency-Key"

    def __init__(
        self,
        model: str,
        *,
        options: AdapterOptions | Mapping[str, Any] | None = None,
        api_key: str | SecretStr | None = None,
        api_base: str | None = None,
        timeout: float = 180.0,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        max_image_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        self.model = self.check_model(model)
        self.options = parse_options(self.Options, options, adapter=self.name)
        self._key = resolve_secret(
            api_key, self.key_env, adapter=self.name, required=self.key_required
        )
        base = api_base or (os.environ.get(self.base_env) if self.base_env else None)
        base = base or self.default_api_base
        if not base:
            env = f" or set {self.base_env}" if self.base_env else ""
            raise ConfigError(f"backend {self.name!r} needs a base URL: pass --api-base{env}")
        self.api_base = base.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.poll = poll or PollPolicy()
        self._http_client = http_client
        self._async_http_client = async_http_client
        self._client_kwargs: dict[str, Any] = {
            "adapter": self.name,
            "api_base": self.api_base,
            "auth": self.auth_headers(),
            "key_env": self.key_env,
            "timeout": timeout,
            "retry": self.retry,
            "idempotency_header": self.idempotency_header,
            "max_image_bytes": max_image_bytes,
        }
        self._sync: HttpClient | None = None
        self._async: AsyncHttpClient | None = None

    def check_model(self, model: str) -> str:
        """Reject models the backend cannot run (override); returns the model name."""
        if not model.strip():
            raise ConfigError(f"backend {self.name!r} needs a model, e.g. {self.name}:MODEL")
        return model.strip()

    def auth_headers(self) -> dict[str, SecretStr]:
        """Headers that carry the credentials (sent only to the api_base's origin)."""
        if self._key is None:
            return {}
        return {"Authorization": SecretStr(f"Bearer {self._key.get_secret_value()}")}

    def _flow(self, request: GenerationRequest) -> Flow[GenerationResult]:
        raise NotImplementedError

    def generate(self, request: GenerationRequest) -> GenerationResult:
        if self._sync is None:
            self._sync = HttpClient(client=self._http_client, **self._client_kwargs)
        started = time.perf_counter()
        return _with_total(run_flow(self._flow(request), self._sync), started)

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        if self._async is None:
            self._async = AsyncHttpClient(client=self._async_http_client, **self._client_kwargs)
        started = time.perf_counter()
        return _with_total(await arun_flow(self._flow(request), self._async), started)

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        self.close()
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    def __enter__(self) -> HostedAdapter:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> HostedAdapter:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, api_base={self.api_base!r})"


def _with_total(result: GenerationResult, started: float) -> GenerationResult:
    timings = {**result.timings, "total_s": round(time.perf_counter() - started, 3)}
    return result.model_copy(update={"timings": timings})


# --- choices shared by hosted adapters (pure) ---------------------------------------------


def prompt_for(plan: Plan, dialect: RewriteDialect) -> str:
    """The rewrite in ``dialect`` when the plan is at risk, else the prompt unchanged."""
    if not plan.at_risk:
        return plan.prompt
    return {"natural": plan.rewrites.natural, "weighted": plan.rewrites.weighted}.get(
        dialect, plan.rewrites.a1111
    )


def latent_terms(plan: Plan) -> list[str]:
    """Latent concepts worth excluding: named by the plan, never asked for by the user."""
    return excludable_latents(plan.prompt, plan.pairs)


def negative_with_latents(negative: str | None, plan: Plan) -> str | None:
    """The user's negative prompt plus the plan's latent concepts (e.g. 'blurry, glass')."""
    parts = [negative.strip()] if negative and negative.strip() else []
    parts += [t for t in latent_terms(plan) if not (negative and phrase_in(negative, t))]
    return ", ".join(parts) or None


def audit_revised(plan: Plan, revised: str | None, *, adapter: str) -> list[str]:
    """Warnings for planned concepts that the provider's revised prompt no longer mentions
    (``sdk.dispatch`` logs every result warning once)."""
    if not revised:
        return []
    names: list[str] = []
    for pair in plan.pairs:
        names += [n for n in (pair.fragile, pair.dominant) if n not in names]
    lost = [n for n in names if not phrase_in(revised, n)]
    if not lost:
        return []
    dropped = ", ".join(repr(n) for n in lost)
    return [f"{adapter} rewrote the prompt and dropped {dropped}: {revised!r}"]


def wants_emulation(mode: StagingMode, plan: Plan, *, adapter: str, auto: bool) -> bool:
    """Whether to emulate staging: ``emulate`` always (for an at-risk plan), ``auto`` as the
    adapter decides, ``off`` never; ``native`` is impossible on a hosted API."""
    if mode == "native":
        raise UnsupportedError(
            "a hosted API cannot switch prompts inside sampling; use staging emulate, auto or off",
            adapter=adapter,
        )
    staged = plan.at_risk and len(plan.stages) > 1
    return staged and (mode == "emulate" or (mode == "auto" and auto))


def fragile_stage(plan: Plan) -> Stage:
    """The last fragile-only stage: its prompt names every fragile concept; its end is r."""
    return plan.stages[-2]


def nearest_ratio(width: int, height: int, choices: Sequence[str]) -> tuple[str, bool]:
    """The ``W:H`` choice closest to width/height (by log ratio), and whether it is exact."""
    want = math.log(width / height)

    def distance(choice: str) -> float:
        w, _, h = choice.partition(":")
        return abs(math.log(float(w) / float(h)) - want)

    best = min(choices, key=distance)
    return best, distance(best) < 1e-3
