"""Backends: the adapter Protocol and the registry behind the ``lcfix.adapters`` entry points.

Built-in adapters register through the same entry-point group as third-party plugins.
``LCFIX_PLUGINS=a,b`` restricts which third-party adapters load; ``LCFIX_PLUGINS=`` (empty)
loads built-ins only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from lcfix.adapters.base import (
    AdapterOptions,
    Capabilities,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    ImageAdapter,
    SentRequest,
    StagingMode,
)
from lcfix.errors import AdapterNotFoundError, LcfixError

GROUP = "lcfix.adapters"
_BUILTIN_DIST = "lcfix"

__all__ = [
    "GROUP",
    "AdapterInfo",
    "AdapterOptions",
    "Capabilities",
    "GeneratedImage",
    "GenerationRequest",
    "GenerationResult",
    "ImageAdapter",
    "SentRequest",
    "StagingMode",
    "available_adapters",
    "get_adapter_class",
    "load_adapter",
    "parse_backend",
]


@dataclass(frozen=True)
class AdapterInfo:
    """One registered adapter, as ``lcfix adapters list`` shows it."""

    name: str
    origin: str
    version: str
    target: str
    capabilities: Capabilities | None
    error: str | None = None


def _origin(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    if dist is None:
        return ("unknown", "")
    return (dist.metadata["Name"] or "unknown", dist.version or "")


def _allowed(ep: EntryPoint) -> bool:
    name, _ = _origin(ep)
    if name == _BUILTIN_DIST:
        return True
    only = os.environ.get("LCFIX_PLUGINS")
    if only is None:
        return True
    return ep.name in {x.strip() for x in only.split(",") if x.strip()}


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        if not _allowed(ep):
            continue
        # A built-in name wins over a plugin that reuses it.
        if ep.name in found and _origin(found[ep.name])[0] == _BUILTIN_DIST:
            continue
        found[ep.name] = ep
    return found


def parse_backend(backend: str) -> tuple[str, str]:
    """Split ``'openai:gpt-image-1'`` into ``('openai', 'gpt-image-1')``."""
    name, sep, model = backend.partition(":")
    if not name or not sep or not model:
        raise AdapterNotFoundError(
            f"backend {backend!r} must look like NAME:MODEL, e.g. openai:gpt-image-1, "
            "stability:sd3.5-large, diffusers:stabilityai/stable-diffusion-xl-base-1.0"
        )
    return name.strip().lower(), model.strip()


def get_adapter_class(name: str) -> type[ImageAdapter]:
    """The adapter class registered under ``name``; imports only that plugin."""
    eps = _entry_points()
    ep = eps.get(name)
    if ep is None:
        known = ", ".join(sorted(eps)) or "none"
        raise AdapterNotFoundError(f"no backend named {name!r}; registered backends: {known}")
    try:
        cls = ep.load()
    except LcfixError:
        raise
    except Exception as exc:
        dist, version = _origin(ep)
        raise AdapterNotFoundError(
            f"backend {name!r} ({ep.value} from {dist} {version}) failed to import: {exc}"
        ) from exc
    return cls  # type: ignore[no-any-return]


def load_adapter(backend: str, **kwargs: Any) -> ImageAdapter:
    """Build the adapter for a backend string: ``load_adapter('openai:gpt-image-1')``."""
    name, model = parse_backend(backend)
    return get_adapter_class(name)(model, **kwargs)  # type: ignore[call-arg]


def available_adapters() -> list[AdapterInfo]:
    """Every registered adapter with its origin and capabilities (a broken plugin shows its
    error instead of failing the listing)."""
    out = []
    for name, ep in sorted(_entry_points().items()):
        dist, version = _origin(ep)
        try:
            caps: Capabilities | None = get_adapter_class(name).capabilities
            error = None
        except LcfixError as exc:
            caps, error = None, str(exc)
        out.append(AdapterInfo(name, dist, version, ep.value, caps, error))
    return out
