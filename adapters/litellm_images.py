"""litellm's image providers: ``litellm.image_generation`` and ``aimage_generation``.

``litellm:vertex_ai/imagen-4.0-generate-001``, ``litellm:stability/sd3.5-large``,
``litellm:bedrock/stability.sd3-5-large-v1:0``, ``litellm:fal_ai/fal-ai/flux/dev``, ...
The rewrite dialect follows the provider: Midjourney-like providers get ``::`` weights,
A1111-backed ones (custom providers named a1111/sdwebui/forge) get ``[from:to:when]`` prompt
editing, which stages natively inside their sampler, everything else the ``natural`` rewrite.
lcfix owns the retries (litellm's are switched off) and maps litellm's errors onto its own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, SecretStr

from lcfix.adapters._hosted import audit_revised, negative_with_latents, prompt_for
from lcfix.adapters._http import (
    MAX_IMAGE_BYTES,
    AsyncHttpClient,
    Call,
    HttpClient,
    RetryPolicy,
    acall_with_retries,
    call_with_retries,
    decode_image,
    error_from_response,
    redact,
    resolve_secret,
)
from lcfix.adapters.base import (
    AdapterOptions,
    Capabilities,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    SentRequest,
    parse_options,
)
from lcfix.errors import (
    AdapterError,
    BackendConnectionError,
    BackendError,
    BackendTimeoutError,
    ContentPolicyError,
    UnsupportedError,
)
from lcfix.plans import RewriteDialect

_WEIGHTED = ("midjourney", "imagine", "mj")
_A1111 = ("a1111", "sdwebui", "automatic1111", "forge", "sdnext")


def provider_of(model: str) -> str:
    """litellm's provider prefix of ``model`` (bare gpt-image models are openai)."""
    return model.partition("/")[0].lower() if "/" in model else "openai"


def takes_sd_params(model: str) -> bool:
    """Whether litellm forwards ``negative_prompt`` and ``seed`` for this model."""
    provider = provider_of(model)
    return provider in ("stability", "fal_ai") or (
        provider == "bedrock" and "stability" in model.lower()
    )


def dialect_for(model: str) -> RewriteDialect:
    """The rewrite dialect a litellm model understands best."""
    provider = provider_of(model)
    if any(p in provider for p in _A1111):
        return "a1111"
    if any(p in provider or p in model.lower().split("/")[-1] for p in _WEIGHTED):
        return "weighted"
    return "natural"


class LiteLLMImagesOptions(AdapterOptions):
    """Options of the ``litellm`` backend; ``params`` passes provider-specific arguments."""

    size: str | None = None
    quality: str | None = None
    style: str | None = None
    response_format: Literal["b64_json", "url"] | None = None
    api_version: str | None = None
    dialect: RewriteDialect | None = Field(
        default=None, description="Override the provider's dialect"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Extra provider arguments")


class LiteLLMImagesAdapter:
    """The ``litellm`` backend: any image model litellm routes, as ``litellm:PROVIDER/MODEL``."""

    name: ClassVar[str] = "litellm"
    capabilities: ClassVar[Capabilities] = Capabilities(
        staging="none",
        dialect="natural",
        negative_prompt=True,
        seed=True,
        max_images=10,
        revised_prompt=True,
    )
    Options: ClassVar[type[AdapterOptions]] = LiteLLMImagesOptions

    def __init__(
        self,
        model: str,
        *,
        options: LiteLLMImagesOptions | Mapping[str, Any] | None = None,
        api_key: str | SecretStr | None = None,
        api_base: str | None = None,
        timeout: float = 180.0,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        max_image_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        if not model.strip():
            raise UnsupportedError("litellm needs a model, e.g. litellm:vertex_ai/imagen-4.0")
        self.model = model.strip()
        self.options = parse_options(LiteLLMImagesOptions, options, adapter=self.name)
        # Provider keys come from the provider's own variables (litellm reads them).
        self._key = resolve_secret(api_key, None, adapter=self.name, required=False)
        self.api_base = api_base
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.dialect: RewriteDialect = self.options.dialect or dialect_for(self.model)
        client_kwargs: dict[str, Any] = {
            "adapter": self.name,
            "api_base": api_base or "http://localhost",
            "timeout": timeout,
            "retry": self.retry,
            "max_image_bytes": max_image_bytes,
        }
        self._sync = HttpClient(client=http_client, **client_kwargs)
        self._async = AsyncHttpClient(client=async_http_client, **client_kwargs)

    def _prepare(self, request: GenerationRequest) -> tuple[dict[str, Any], list[str]]:
        native = self.dialect == "a1111"  # A1111 prompt editing stages inside the sampler
        if request.staging == "emulate" or (request.staging == "native" and not native):
            raise UnsupportedError(
                f"staging {request.staging!r} is not available through litellm for "
                f"{self.model}; use staging auto/off, or the stability or openai backend",
                adapter=self.name,
            )
        plan, o = request.plan, self.options
        dialect = "natural" if native and request.staging == "off" else self.dialect
        prompt = prompt_for(plan, dialect)
        warnings: list[str] = []
        kwargs: dict[str, Any] = {"model": self.model, "n": request.num_images}
        if takes_sd_params(self.model):
            negative = negative_with_latents(request.negative_prompt, plan)
            kwargs.update(negative_prompt=negative, seed=request.seed)
        else:
            if request.negative_prompt:
                prompt = f"{prompt} Avoid: {request.negative_prompt.strip().rstrip('.')}."
                warnings.append(f"{self.model} has no negative prompt; added as 'Avoid: ...'")
            if request.seed is not None:
                warnings.append(f"{self.model} takes no seed through litellm; it was not sent")
        size = o.size or (
            f"{request.width}x{request.height}" if request.width and request.height else None
        )
        kwargs.update(
            prompt=prompt,
            size=size,
            quality=o.quality,
            style=o.style,
            response_format=o.response_format,
            api_version=o.api_version,
            api_base=self.api_base,
            api_key=self._key.get_secret_value() if self._key else None,
            timeout=self.timeout,
            # lcfix owns retries: one place that honours Retry-After and bounds total time.
            num_retries=0,
            max_retries=0,
        )
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        kwargs.update(o.params)
        return kwargs, warnings

    def _entries(self, response: Any) -> list[tuple[str | None, str | None, str | None]]:
        """(b64, url, revised prompt) of each image in litellm's ImageResponse."""
        data = getattr(response, "data", None) or []
        out = []
        for item in data:
            get = item.get if isinstance(item, dict) else lambda k, o=item: getattr(o, k, None)
            out.append((get("b64_json"), get("url"), get("revised_prompt")))
        if not out or not all(b or u for b, u, _ in out):
            raise BackendError(f"{self.model} returned no usable images", adapter=self.name)
        return out

    def _result(
        self,
        request: GenerationRequest,
        kwargs: dict[str, Any],
        warnings: list[str],
        response: Any,
        images: list[tuple[bytes, str, str | None]],
        elapsed: float,
    ) -> GenerationResult:
        revised = next((r for _, _, r in images if r), None)
        warnings = warnings + audit_revised(request.plan, revised, adapter=self.name)
        usage = getattr(response, "usage", None)
        if usage is not None and not isinstance(usage, dict):
            usage = usage.model_dump() if hasattr(usage, "model_dump") else None
        sent_extra = {k: v for k, v in kwargs.items() if k not in ("prompt", "api_key", "timeout")}
        staged = self.dialect == "a1111" and request.plan.at_risk and request.staging != "off"
        return GenerationResult(
            backend=self.name,
            model=self.model,
            plan=request.plan,
            images=tuple(
                GeneratedImage(
                    data=d, mime_type=m, index=i, seed=kwargs.get("seed"), revised_prompt=r
                )
                for i, (d, m, r) in enumerate(images)
            ),
            prompt_sent=kwargs["prompt"],
            revised_prompt=revised,
            requests=(SentRequest(kind="generate", prompt=kwargs["prompt"], extra=sent_extra),),
            staging="native" if staged else "none",
            seed=kwargs.get("seed"),
            warnings=tuple(warnings),
            timings={"generate_s": round(elapsed, 3)},
            usage=usage,
            extra={"dialect": self.dialect},
        )

    def generate(self, request: GenerationRequest) -> GenerationResult:
        litellm = _litellm()
        kwargs, warnings = self._prepare(request)
        started = time.perf_counter()

        def once() -> Any:
            try:
                return litellm.image_generation(**kwargs)
            except Exception as exc:
                raise self._translate(exc) from exc

        response = call_with_retries(once, self.retry)
        images = []
        for b64, url, revised in self._entries(response):
            if b64:
                data, mime = decode_image(b64, adapter=self.name)
            else:
                got = self._sync.request(Call("GET", str(url), expect="image"))
                data, mime = got.content, got.mime_type
            images.append((data, mime, revised))
        elapsed = time.perf_counter() - started
        return self._result(request, kwargs, warnings, response, images, elapsed)

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        litellm = _litellm()
        kwargs, warnings = self._prepare(request)
        started = time.perf_counter()

        async def once() -> Any:
            try:
                return await litellm.aimage_generation(**kwargs)
            except Exception as exc:
                raise self._translate(exc) from exc

        response = await acall_with_retries(once, self.retry)
        images = []
        for b64, url, revised in self._entries(response):
            if b64:
                data, mime = decode_image(b64, adapter=self.name)
            else:
                got = await self._async.request(Call("GET", str(url), expect="image"))
                data, mime = got.content, got.mime_type
            images.append((data, mime, revised))
        elapsed = time.perf_counter() - started
        return self._result(request, kwargs, warnings, response, images, elapsed)

    def _translate(self, exc: Exception) -> AdapterError:
        """litellm's exception as an lcfix error (the one boundary where litellm's tree ends)."""
        if isinstance(exc, AdapterError):
            return exc
        litellm = _litellm()
        secrets = [self._key.get_secret_value()] if self._key else []
        message = redact(str(exc), secrets)
        if isinstance(exc, litellm.ContentPolicyViolationError):
            return ContentPolicyError(
                f"the provider refused the prompt under its content policy: {message}",
                adapter=self.name,
                status_code=getattr(exc, "status_code", None),
            )
        if isinstance(exc, litellm.Timeout):
            return BackendTimeoutError(f"{self.model} timed out: {message}", adapter=self.name)
        if isinstance(exc, litellm.APIConnectionError):
            return BackendConnectionError(message, adapter=self.name)
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and status >= 400:
            response = getattr(exc, "response", None)
            headers = dict(getattr(response, "headers", None) or {})
            return error_from_response(
                status, headers, {"message": message}, adapter=self.name, secrets=secrets
            )
        return BackendError(f"{type(exc).__name__}: {message}", adapter=self.name)

    def close(self) -> None:
        self._sync.close()

    async def aclose(self) -> None:
        self._sync.close()
        await self._async.aclose()

    def __repr__(self) -> str:
        return f"LiteLLMImagesAdapter(model={self.model!r}, dialect={self.dialect!r})"


def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm
