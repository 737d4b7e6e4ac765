"""From plan to result: the one call the CLI, the Client and the tools make to generate.

    >>> result = generate(plan, load_adapter("openai:gpt-image-1"), seed=7)

Builds the GenerationRequest (a bad value is an InputError naming the field), calls the
adapter, and logs each warning the adapter recorded (e.g. a provider's revised prompt that
dropped a planned concept) once, on the ``lcfix`` logger.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from lcfix.adapters.base import GenerationRequest, GenerationResult, ImageAdapter, StagingMode
from lcfix.errors import InputError, UnsupportedError
from lcfix.plans import Plan

log = logging.getLogger("lcfix")


def build_request(
    plan: Plan,
    *,
    negative_prompt: str | None = None,
    width: int | None = None,
    height: int | None = None,
    seed: int | None = None,
    num_images: int = 1,
    staging: StagingMode = "auto",
) -> GenerationRequest:
    """A validated GenerationRequest; a bad value raises InputError naming the field."""
    try:
        return GenerationRequest(
            plan=plan,
            negative_prompt=negative_prompt,
            width=width,
            height=height,
            seed=seed,
            num_images=num_images,
            staging=staging,
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"])
        raise InputError(f"{err['msg']} (got {err.get('input')!r})", field=field) from exc


def _check(adapter: ImageAdapter, request: GenerationRequest) -> None:
    most = adapter.capabilities.max_images
    if request.num_images > most:
        raise UnsupportedError(
            f"asked for {request.num_images} images; this backend makes at most {most} per call",
            adapter=adapter.name,
        )


def _done(result: GenerationResult) -> GenerationResult:
    for warning in result.warnings:
        log.warning("%s", warning)
    return result


def generate(
    plan: Plan,
    adapter: ImageAdapter,
    *,
    negative_prompt: str | None = None,
    width: int | None = None,
    height: int | None = None,
    seed: int | None = None,
    num_images: int = 1,
    staging: StagingMode = "auto",
) -> GenerationResult:
    """Generate images for ``plan`` on ``adapter``."""
    request = build_request(
        plan,
        negative_prompt=negative_prompt,
        width=width,
        height=height,
        seed=seed,
        num_images=num_images,
        staging=staging,
    )
    _check(adapter, request)
    return _done(adapter.generate(request))


async def agenerate(
    plan: Plan,
    adapter: ImageAdapter,
    *,
    negative_prompt: str | None = None,
    width: int | None = None,
    height: int | None = None,
    seed: int | None = None,
    num_images: int = 1,
    staging: StagingMode = "auto",
) -> GenerationResult:
    """Async twin of ``generate``."""
    request = build_request(
        plan,
        negative_prompt=negative_prompt,
        width=width,
        height=height,
        seed=seed,
        num_images=num_images,
        staging=staging,
    )
    _check(adapter, request)
    return _done(await adapter.agenerate(request))
