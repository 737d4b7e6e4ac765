"""lcfix inside the litellm proxy: a prompt-rewriting hook and a staging image provider.

Two plug-ins, one per mode (docs/litellm-proxy.md has the config.yaml):

- ``rewrite_hook`` (``LcfixRewriteHook``, a ``CustomLogger``): rewrite-only mode. Its
  ``async_pre_call_hook`` plans every ``/images/generations`` prompt and replaces
  ``data["prompt"]`` with the plan's rewrite in the target model's dialect, before litellm
  routes the request anywhere. One upstream call, any image model litellm serves.
- ``image_provider`` (``LcfixImageProvider``, a ``CustomLLM``): full plans. Registered as
  the custom provider ``lcfix``, it serves models named ``lcfix/<backend>``, e.g.
  ``lcfix/openai:gpt-image-1`` or ``lcfix/stability:sd3.5-large``: everything after the
  first ``/`` is an lcfix backend string, passed unchanged to the adapter registry, so it
  may itself hold ``/`` and ``:``. It plans, runs the lcfix adapter (staging emulation
  included, which takes several upstream calls) and returns a litellm ``ImageResponse``.

Per-request switches ride in the request body (``extra_body`` in the OpenAI SDK):
``lcfix_dialect`` and ``lcfix_rewrite: false`` for the hook; ``lcfix_staging`` and
``lcfix_options`` (adapter options) for the provider. litellm is imported here only.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import asyncio
import base64
import fnmatch
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast, get_args

from litellm.integrations.custom_logger import CustomLogger
from litellm.llms.custom_llm import CustomLLM, CustomLLMError
from litellm.types.utils import ImageObject, ImageResponse

from lcfix.adapters.base import GenerationResult, ImageAdapter, StagingMode
from lcfix.dispatch import agenerate, generate
from lcfix.errors import (
    AuthenticationError,
    BackendError,
    BackendTimeoutError,
    ConfigError,
    ContentPolicyError,
    InputError,
    LcfixError,
    PlanValidationError,
    RateLimitError,
    UnsupportedError,
)
from lcfix.planner import PLANNER_KINDS, Planner, PlannerKind
from lcfix.plans import Plan, RewriteDialect

if TYPE_CHECKING:
    from pydantic import SecretStr

__all__ = [
    "DEFAULT_DIALECT_RULES",
    "PROVIDER",
    "LcfixImageProvider",
    "LcfixRewriteHook",
    "dialect_for_model",
    "image_provider",
    "register",
    "rewrite_hook",
]

logger = logging.getLogger("lcfix.litellm_proxy")

PROVIDER = "lcfix"
IMAGE_CALL_TYPES = frozenset({"image_generation", "aimage_generation"})
_DIALECTS: tuple[str, ...] = get_args(RewriteDialect)
_STAGING: tuple[str, ...] = get_args(StagingMode)

DEFAULT_DIALECT_RULES: tuple[tuple[str, RewriteDialect], ...] = (
    ("*midjourney*", "weighted"),
    ("*niji*", "weighted"),
    ("*a1111*", "a1111"),
    ("*automatic1111*", "a1111"),
    ("*sd-webui*", "a1111"),
    ("*stable-diffusion-webui*", "a1111"),
)
"""(glob on the model name, dialect); the first match wins; anything else gets natural."""


def dialect_for_model(
    model: str | None, rules: Sequence[tuple[str, RewriteDialect]] = DEFAULT_DIALECT_RULES
) -> RewriteDialect:
    """The rewrite dialect for a model name: ``weighted`` for Midjourney-like models,
    ``a1111`` for Stable Diffusion web UI gateways, ``natural`` for the rest."""
    name = (model or "").lower()
    for pattern, dialect in rules:
        if fnmatch.fnmatchcase(name, pattern.lower()):
            return dialect
    return "natural"


def _env_rules() -> list[tuple[str, RewriteDialect]]:
    """``LCFIX_PROXY_DIALECTS="my-mj-*=weighted,sdxl-webui=a1111"``."""
    raw = os.environ.get("LCFIX_PROXY_DIALECTS", "")
    rules: list[tuple[str, RewriteDialect]] = []
    for item in filter(None, (x.strip() for x in raw.split(","))):
        pattern, sep, dialect = item.rpartition("=")
        if not sep or dialect not in _DIALECTS:
            raise ConfigError(
                f"LCFIX_PROXY_DIALECTS: {item!r} must look like PATTERN=DIALECT with DIALECT "
                f"one of {', '.join(_DIALECTS)}"
            )
        rules.append((pattern, cast(RewriteDialect, dialect)))
    return rules


def _env_planner() -> PlannerKind:
    kind = os.environ.get("LCFIX_PROXY_PLANNER", "auto")
    if kind not in PLANNER_KINDS:
        raise ConfigError(f"LCFIX_PROXY_PLANNER={kind!r}; choose offline, llm or auto")
    return cast(PlannerKind, kind)


class _LazyPlanner:
    """One planner per plug-in, built on first use (the proxy imports plug-ins at start-up)."""

    def __init__(self, planner: Planner | None, kind: PlannerKind | None, model: str | None):
        self._planner = planner
        self._kind = kind
        self._model = model
        self._lock = threading.Lock()

    def get(self) -> Planner:
        with self._lock:
            if self._planner is None:
                from lcfix.planner import get_planner

                self._planner = get_planner(self._kind or _env_planner(), model=self._model)
            return self._planner

    async def aget(self) -> Planner:
        if self._planner is not None:
            return self._planner
        return await asyncio.to_thread(self.get)

    def close(self) -> None:
        if self._planner is not None:
            self._planner.close()


# --- rewrite-only: the pre-call hook ------------------------------------------------------------


class LcfixRewriteHook(CustomLogger):
    """Rewrite ``/images/generations`` prompts in place, before litellm routes them.

    ``dialects`` adds (glob, dialect) rules ahead of the defaults; ``skip_models`` lists
    model names the hook leaves alone (the ``lcfix/...`` provider plans for itself);
    ``fail_open`` sends the original prompt when planning fails instead of failing the call.
    A subclass must define ``async_pre_call_hook`` itself (litellm only calls hooks defined
    on the leaf class); it may simply call ``super()``.
    """

    def __init__(
        self,
        *,
        planner: Planner | None = None,
        planner_kind: PlannerKind | None = None,
        model: str | None = None,
        dialects: Mapping[str, RewriteDialect] | None = None,
        skip_models: Sequence[str] = ("lcfix*",),
        fail_open: bool = True,
    ) -> None:
        super().__init__()
        self._planner = _LazyPlanner(planner, planner_kind, model)
        self.rules: tuple[tuple[str, RewriteDialect], ...] = (
            *(dialects or {}).items(),
            *_env_rules(),
            *DEFAULT_DIALECT_RULES,
        )
        self.skip_models = tuple(skip_models)
        self.fail_open = fail_open

    def _skipped(self, model: Any) -> bool:
        name = str(model or "").lower()
        return any(fnmatch.fnmatchcase(name, p.lower()) for p in self.skip_models)

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any]:
        """Replace ``data["prompt"]`` with the lcfix rewrite for image generation calls."""
        if call_type not in IMAGE_CALL_TYPES or self._skipped(data.get("model")):
            return data
        dialect_opt = data.pop("lcfix_dialect", None)
        enabled = data.pop("lcfix_rewrite", True)
        prompt = data.get("prompt")
        if enabled is False or not isinstance(prompt, str) or not prompt.strip():
            return data
        if dialect_opt is not None and dialect_opt not in _DIALECTS:
            raise ValueError(
                f"lcfix_dialect must be one of {', '.join(_DIALECTS)}, got {dialect_opt!r}"
            )
        dialect = (
            dialect_for_model(data.get("model"), self.rules)
            if dialect_opt is None
            else cast(RewriteDialect, dialect_opt)
        )
        try:
            plan = await (await self._planner.aget()).aplan(prompt)
        except LcfixError as exc:
            if not self.fail_open:
                raise
            logger.warning("lcfix could not plan an image prompt, sending it unchanged: %s", exc)
            return data
        apply_rewrite(data, plan, dialect)
        return data

    def close(self) -> None:
        self._planner.close()


def apply_rewrite(data: dict[str, Any], plan: Plan, dialect: RewriteDialect) -> None:
    """Write the plan's rewrite into a proxy request body, in place."""
    rewritten = getattr(plan.rewrites, dialect)
    data["prompt"] = rewritten
    # The proxy copies the prompt into `messages` for guardrails and, after the hooks, reads
    # the prompt back from there: a rewrite of `prompt` alone would be undone.
    if isinstance(data.get("messages"), list):
        data["messages"] = [{"role": "user", "content": rewritten}]
    metadata = data.get("metadata")
    if isinstance(metadata, dict):
        metadata["lcfix"] = {
            "original_prompt": plan.prompt,
            "at_risk": plan.at_risk,
            "fragile": plan.fragile,
            "dialect": dialect,
            "planner": plan.planner.name,
        }


# --- full plans: the custom provider ------------------------------------------------------------

AdapterFactory = Callable[[str, "dict[str, Any]"], ImageAdapter]
"""``(backend, kwargs) -> adapter``; kwargs may hold api_base, api_key and options."""

_SIZE = re.compile(r"^\s*(\d{2,5})\s*[xX]\s*(\d{2,5})\s*$")
# Image parameters the provider maps itself; any other parameter is offered to the adapter
# as an option when its Options model has that field, and dropped otherwise (litellm's
# drop_params behaviour).
_HANDLED = frozenset(
    {"n", "size", "seed", "negative_prompt", "response_format", "extra_body",
     "lcfix_staging", "lcfix_options", "lcfix_dialect", "lcfix_rewrite"}
)  # fmt: skip


def _default_adapter_factory(backend: str, kwargs: dict[str, Any]) -> ImageAdapter:
    from lcfix.adapters import load_adapter

    return load_adapter(backend, **kwargs)


def _adapter_options_fields(backend: str) -> frozenset[str]:
    from lcfix.adapters import get_adapter_class, parse_backend

    try:
        cls = get_adapter_class(parse_backend(backend)[0])
    except LcfixError:
        return frozenset()
    return frozenset(cls.Options.model_fields)


class _Parts:
    """A litellm image call, split into what lcfix needs."""

    def __init__(
        self,
        fields: dict[str, Any],
        passthrough: dict[str, Any],
        options: dict[str, Any],
        staging: StagingMode,
    ) -> None:
        self.fields = fields  # GenerationRequest fields
        self.passthrough = passthrough  # other image params; adapter options if it has them
        self.options = options  # explicit adapter options (lcfix_options), checked strictly
        self.staging = staging


def _request_parts(optional_params: Mapping[str, Any], default_staging: StagingMode) -> _Parts:
    """Split litellm's optional_params (no I/O)."""
    params = dict(optional_params)
    extra = params.pop("extra_body", None)
    if isinstance(extra, Mapping):
        params.update(extra)
    fields: dict[str, Any] = {}
    if params.get("n") is not None:
        if not isinstance(params["n"], int) or isinstance(params["n"], bool):
            raise InputError(f"n must be a whole number, got {params['n']!r}")
        fields["num_images"] = params["n"]
    size = params.get("size")
    if isinstance(size, str) and size.strip().lower() not in ("", "auto"):
        m = _SIZE.match(size)
        if m is None:
            raise InputError(f"size must look like WIDTHxHEIGHT, e.g. 1024x1024, got {size!r}")
        fields["width"], fields["height"] = int(m.group(1)), int(m.group(2))
    for key in ("seed", "negative_prompt"):
        if params.get(key) is not None:
            fields[key] = params[key]
    staging = params.get("lcfix_staging") or default_staging
    if staging not in _STAGING:
        raise InputError(f"lcfix_staging must be one of {', '.join(_STAGING)}, got {staging!r}")
    options = params.get("lcfix_options") or {}
    if not isinstance(options, Mapping):
        raise InputError("lcfix_options must be an object of adapter options")
    passthrough = {k: v for k, v in params.items() if k not in _HANDLED and v is not None}
    return _Parts(fields, passthrough, dict(options), cast(StagingMode, staging))


_STATUS: tuple[tuple[type[LcfixError], int], ...] = (
    (InputError, 400),
    (PlanValidationError, 400),
    (UnsupportedError, 400),
    (ContentPolicyError, 400),
    (ConfigError, 400),
    (AuthenticationError, 401),
    (RateLimitError, 429),
    (BackendTimeoutError, 504),
)


def _litellm_error(exc: LcfixError) -> CustomLLMError:
    """litellm maps the status code to its own exception classes (BadRequestError, ...)."""
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), None)
    if status is None:
        status = exc.status_code if isinstance(exc, BackendError) and exc.status_code else 500
    return CustomLLMError(status_code=status, message=str(exc))  # type: ignore[no-untyped-call]


def _image_response(result: GenerationResult, model_response: ImageResponse) -> ImageResponse:
    response = model_response if model_response is not None else ImageResponse()
    response.created = int(time.time())
    response.data = [
        ImageObject(
            b64_json=base64.b64encode(image.data).decode("ascii"),
            # The prompt the provider actually drew from: the lcfix rewrite, or the
            # provider's own revision of it.
            revised_prompt=image.revised_prompt or result.revised_prompt or result.prompt_sent,
        )
        for image in result.images
    ]
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, dict):
        hidden["lcfix"] = {
            "backend": result.backend,
            "staging": result.staging,
            "at_risk": result.plan.at_risk,
            "fragile": result.plan.fragile,
            "warnings": list(result.warnings),
            "upstream_calls": len(result.requests),
        }
    return response


class LcfixImageProvider(CustomLLM):
    """The ``lcfix`` custom provider: ``lcfix/<backend>`` models run whole lcfix plans.

    ``staging`` is the default staging mode (``auto`` emulates staging where the backend can,
    e.g. OpenAI edits or Stability image-to-image); a request's ``lcfix_staging`` overrides
    it. ``adapter_factory`` replaces the adapter registry (tests pass a fake backend).
    """

    def __init__(
        self,
        *,
        planner: Planner | None = None,
        planner_kind: PlannerKind | None = None,
        model: str | None = None,
        staging: StagingMode | None = None,
        adapter_factory: AdapterFactory | None = None,
    ) -> None:
        super().__init__()
        self._planner = _LazyPlanner(planner, planner_kind, model)
        env_staging = os.environ.get("LCFIX_PROXY_STAGING", "auto")
        self.staging: StagingMode = staging or cast(StagingMode, env_staging)
        if self.staging not in _STAGING:
            raise ConfigError(f"staging {self.staging!r}; choose one of {', '.join(_STAGING)}")
        self._factory = adapter_factory or _default_adapter_factory
        self._adapters: dict[str, ImageAdapter] = {}
        self._lock = threading.Lock()

    def _adapter(
        self, backend: str, api_key: str | None, api_base: str | None, parts: _Parts
    ) -> ImageAdapter:
        if not backend.strip():
            raise ConfigError(f"model must look like {PROVIDER}/NAME:MODEL")
        kwargs: dict[str, Any] = {}
        if api_base:
            kwargs["api_base"] = api_base
        if api_key:
            kwargs["api_key"] = _secret(api_key)
        passthrough = parts.passthrough
        if self._factory is _default_adapter_factory:
            known = _adapter_options_fields(backend)
            passthrough = {k: v for k, v in passthrough.items() if k in known}
        options = {**passthrough, **parts.options}
        if options:
            kwargs["options"] = dict(options)
        # Adapters hold HTTP connection pools: one per backend, endpoint, key and options.
        fingerprint = hashlib.sha256(
            json.dumps([backend, api_base, api_key, options], sort_keys=True, default=str).encode()
        ).hexdigest()
        with self._lock:
            if fingerprint not in self._adapters:
                self._adapters[fingerprint] = self._factory(backend, kwargs)
            return self._adapters[fingerprint]

    def image_generation(
        self,
        model: str,
        prompt: str,
        api_key: str | None,
        api_base: str | None,
        model_response: ImageResponse,
        optional_params: dict[str, Any],
        logging_obj: Any,
        timeout: Any = None,
        client: Any = None,
    ) -> ImageResponse:
        """litellm's sync entry point (``litellm.image_generation``)."""
        try:
            parts = _request_parts(optional_params, self.staging)
            adapter = self._adapter(model, api_key, api_base, parts)
            plan = self._planner.get().plan(prompt)
            result = generate(plan, adapter, staging=parts.staging, **parts.fields)
            return _image_response(result, model_response)
        except LcfixError as exc:
            raise _litellm_error(exc) from exc

    async def aimage_generation(
        self,
        model: str,
        prompt: str,
        model_response: ImageResponse,
        api_key: str | None,
        api_base: str | None,
        optional_params: dict[str, Any],
        logging_obj: Any,
        timeout: Any = None,
        client: Any = None,
    ) -> ImageResponse:
        """litellm's async entry point (``litellm.aimage_generation`` and the proxy)."""
        try:
            parts = _request_parts(optional_params, self.staging)
            adapter = await asyncio.to_thread(self._adapter, model, api_key, api_base, parts)
            plan = await (await self._planner.aget()).aplan(prompt)
            result = await agenerate(plan, adapter, staging=parts.staging, **parts.fields)
            return _image_response(result, model_response)
        except LcfixError as exc:
            raise _litellm_error(exc) from exc

    def close(self) -> None:
        for adapter in self._adapters.values():
            adapter.close()
        self._adapters.clear()
        self._planner.close()

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()
        self._adapters.clear()
        self._planner.close()


def _secret(value: str) -> SecretStr:
    from pydantic import SecretStr

    return SecretStr(value)


def register(
    handler: LcfixImageProvider | None = None, *, provider: str = PROVIDER
) -> LcfixImageProvider:
    """Register the provider with litellm in this process (the proxy does it from config).

    >>> lcfix.litellm_proxy.register()
    >>> litellm.image_generation(model="lcfix/openai:gpt-image-1", prompt="a tea cup of iced coke")
    """
    import litellm

    handler = handler or image_provider
    others = [e for e in litellm.custom_provider_map if e.get("provider") != provider]
    litellm.custom_provider_map = [*others, {"provider": provider, "custom_handler": handler}]
    return handler


# What the proxy's config.yaml names: `lcfix.litellm_proxy.rewrite_hook` and
# `lcfix.litellm_proxy.image_provider`. Both build their planner on first use.
rewrite_hook = LcfixRewriteHook()
image_provider = LcfixImageProvider()
