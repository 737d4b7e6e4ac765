"""The adapter Protocol every backend implements, and the types it exchanges.

An adapter receives a Plan (inside a GenerationRequest) and returns images; it never calls an
LLM. Argument names follow diffusers and are shared by every backend: ``prompt``,
``negative_prompt``, ``width``, ``height``, ``seed``, ``num_images``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lcfix.errors import ConfigError
from lcfix.plans import Plan

StagingMode = Literal["auto", "native", "emulate", "off"]
"""auto: stage natively where the backend can, else emulate where it can, else rewrite only.
native: stage inside sampling (local backends). emulate: two-request emulation on hosted APIs.
off: send the rewrite only."""

Dialect = Literal["natural", "weighted", "a1111", "stages"]


class Capabilities(BaseModel):
    """What a backend can do; shown by ``lcfix adapters list``."""

    model_config = ConfigDict(frozen=True)

    staging: Literal["native", "emulated", "none"] = "none"
    dialect: Dialect = "natural"
    negative_prompt: bool = False
    seed: bool = False
    max_images: int = 1
    revised_prompt: bool = False
    switch_search: bool = False


class AdapterOptions(BaseModel):
    """Base for each adapter's own options; unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationRequest(BaseModel):
    """What to generate: the plan plus the options every backend shares."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plan: Plan
    negative_prompt: str | None = None
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    seed: int | None = Field(default=None, ge=0)
    num_images: int = Field(default=1, ge=1, le=64)
    staging: StagingMode = "auto"

    @property
    def prompt(self) -> str:
        return self.plan.prompt


class SentRequest(BaseModel):
    """One upstream call an adapter made, for the sidecar (never holds secrets)."""

    model_config = ConfigDict(frozen=True)

    kind: str = Field(description="e.g. generate, edit, img2img, imagine, stage")
    prompt: str
    extra: dict[str, Any] = Field(default_factory=dict)


class GeneratedImage(BaseModel):
    """One image and what produced it."""

    model_config = ConfigDict(frozen=True)

    data: bytes = Field(repr=False)
    mime_type: str = "image/png"
    index: int = 0
    seed: int | None = None
    revised_prompt: str | None = None

    @property
    def extension(self) -> str:
        return {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(
            self.mime_type, "bin"
        )


class GenerationResult(BaseModel):
    """The images a backend made for one request, with an audit trail."""

    model_config = ConfigDict(frozen=True)

    backend: str
    model: str
    plan: Plan
    images: tuple[GeneratedImage, ...]
    prompt_sent: str = Field(description="The prompt actually sent (final stage or rewrite)")
    revised_prompt: str | None = None
    requests: tuple[SentRequest, ...] = ()
    staging: Literal["native", "emulated", "none"] = "none"
    seed: int | None = None
    warnings: tuple[str, ...] = ()
    timings: dict[str, float] = Field(default_factory=dict)
    usage: dict[str, Any] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class ImageAdapter(Protocol):
    """A backend. Built as ``Adapter(model, options=..., api_base=..., ...)``."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    Options: ClassVar[type[AdapterOptions]]
    model: str

    def generate(self, request: GenerationRequest) -> GenerationResult: ...

    async def agenerate(self, request: GenerationRequest) -> GenerationResult: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


OptionsT = TypeVar("OptionsT", bound=AdapterOptions)


def parse_options(
    cls: type[OptionsT], options: OptionsT | Mapping[str, Any] | None, *, adapter: str
) -> OptionsT:
    """Validate user options against an adapter's Options class, naming each bad field."""
    if isinstance(options, cls):
        return options
    try:
        return cls.model_validate(dict(options or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        allowed = ", ".join(sorted(cls.model_fields)) or "none"
        raise ConfigError(
            f"bad options for backend {adapter!r}: {problems} (allowed options: {allowed})"
        ) from exc
