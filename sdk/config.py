"""Settings, resolved once when a planner or client is built: explicit argument, then env.

    >>> settings = resolve_llm_settings(model="openai/gpt-4o-mini")
    >>> settings.model, settings.api_base
    ('openai/gpt-4o-mini', None)

Provider keys (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ...) are read by litellm itself,
the way litellm always reads them; lcfix only holds a key the caller passes explicitly, as a
``SecretStr``. ``redact`` scrubs key values out of any text lcfix writes or logs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from lcfix.errors import ConfigError

ENV_LLM_MODEL = "LCFIX_LLM_MODEL"
ENV_LLM_API_BASE = "LCFIX_LLM_API_BASE"
ENV_LLM_TIMEOUT = "LCFIX_LLM_TIMEOUT"
ENV_CACHE_DIR = "LCFIX_CACHE_DIR"
DEFAULT_LLM_TIMEOUT = 30.0
"""Seconds one LLM request may take before it counts as a timeout (and is retried)."""

# The variable litellm reads for each provider whose credential is one plain key. Used to
# tell the user what to set; providers with other credential schemes are not checked.
PROVIDER_KEY_VARS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "text-completion-openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "cohere": ("COHERE_API_KEY",),
    "cohere_chat": ("COHERE_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY"),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY"),
    "xai": ("XAI_API_KEY",),
    "perplexity": ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"),
    "deepinfra": ("DEEPINFRA_API_KEY",),
    "azure": ("AZURE_API_KEY",),
}

# Local servers usually need no key; the variable is still what litellm reads when they do.
OPTIONAL_KEY_VARS: dict[str, str] = {
    "hosted_vllm": "HOSTED_VLLM_API_KEY",
    "ollama": "OLLAMA_API_KEY",
    "ollama_chat": "OLLAMA_API_KEY",
    "lm_studio": "LM_STUDIO_API_KEY",
    "llamafile": "LLAMAFILE_API_KEY",
}

_SECRET_NAME = re.compile(r"(API_KEY|_KEY|_TOKEN|_SECRET|PASSWORD)$")
_MIN_SECRET_LEN = 6


class LLMSettings(BaseModel):
    """How to reach the planner's LLM. ``api_key`` is only set when passed explicitly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="A litellm model string, e.g. openai/gpt-4o-mini")
    api_base: str | None = Field(default=None, description="An OpenAI-compatible base URL")
    api_key: SecretStr | None = Field(default=None, description="Overrides the provider's env var")
    timeout: float = Field(default=DEFAULT_LLM_TIMEOUT, gt=0, description="Seconds per request")

    @property
    def provider(self) -> str:
        """The litellm provider prefix (``openai`` for a bare model name)."""
        return provider_of(self.model)


def provider_of(model: str) -> str:
    """The provider prefix of a litellm model string; bare names are OpenAI's."""
    head, sep, _ = model.partition("/")
    return head.lower() if sep else "openai"


def key_vars(model: str) -> tuple[str, ...]:
    """The environment variables litellm reads the key from, most usual first."""
    provider = provider_of(model)
    if provider in PROVIDER_KEY_VARS:
        return PROVIDER_KEY_VARS[provider]
    if provider in OPTIONAL_KEY_VARS:
        return (OPTIONAL_KEY_VARS[provider],)
    return (f"{provider.upper().replace('-', '_')}_API_KEY",)


def key_hint(model: str) -> str:
    """How to give ``model`` a key, for error messages."""
    names = key_vars(model)
    which = names[0] if len(names) == 1 else " or ".join(names)
    return f"set {which} (or pass api_key=)"


def needs_key(model: str) -> bool:
    """Whether litellm will refuse ``model`` outright because its key variable is unset."""
    provider = provider_of(model)
    names = PROVIDER_KEY_VARS.get(provider)
    return bool(names) and not any(os.environ.get(n) for n in names or ())


def resolve_llm_settings(
    model: str | None = None,
    api_base: str | None = None,
    *,
    api_key: str | SecretStr | None = None,
    timeout: float | None = None,
) -> LLMSettings:
    """Explicit arguments first, then ``LCFIX_LLM_MODEL``, ``LCFIX_LLM_API_BASE`` and
    ``LCFIX_LLM_TIMEOUT``. Raises ConfigError naming the setting to fix."""
    model = (model or os.environ.get(ENV_LLM_MODEL) or "").strip()
    if not model:
        raise ConfigError(
            "the LLM planner needs a model: pass --model (e.g. openai/gpt-4o-mini) "
            f"or set {ENV_LLM_MODEL}"
        )
    if any(c.isspace() for c in model):
        raise ConfigError(f"LLM model {model!r} contains whitespace; use a litellm model string")
    base = (api_base or os.environ.get(ENV_LLM_API_BASE) or "").strip() or None
    if base is not None and not re.match(r"^https?://[^\s/]+", base):
        raise ConfigError(
            f"LLM api_base {base!r} is not an http(s) URL (from --api-base or {ENV_LLM_API_BASE})"
        )
    if timeout is None:
        raw = os.environ.get(ENV_LLM_TIMEOUT)
        try:
            timeout = float(raw) if raw else DEFAULT_LLM_TIMEOUT
        except ValueError:
            raise ConfigError(f"{ENV_LLM_TIMEOUT}={raw!r} is not a number of seconds") from None
    if timeout <= 0:
        raise ConfigError(f"LLM timeout must be positive, got {timeout}")
    key = SecretStr(api_key) if isinstance(api_key, str) else api_key
    return LLMSettings(model=model, api_base=base, api_key=key, timeout=timeout)


def cache_dir() -> Path:
    """Where lcfix keeps caches: ``LCFIX_CACHE_DIR``, else the user cache directory."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lcfix", appauthor=False))


def secret_values(extra: Iterable[SecretStr | str | None] = ()) -> list[str]:
    """Values that must never be written: key-like env vars and the given secrets."""
    values = [
        v
        for k, v in os.environ.items()
        if _SECRET_NAME.search(k.upper()) and len(v) >= _MIN_SECRET_LEN
    ]
    for item in extra:
        raw = item.get_secret_value() if isinstance(item, SecretStr) else item
        if raw and len(raw) >= _MIN_SECRET_LEN:
            values.append(raw)
    return sorted(set(values), key=len, reverse=True)


def redact(text: str, extra: Iterable[SecretStr | str | None] = ()) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for value in secret_values(extra):
        if value in text:
            text = text.replace(value, "***")
    return text
