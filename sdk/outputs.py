"""Save a GenerationResult: each image next to a JSON sidecar that says how it was made.

    >>> saved = save_result(result, "out/")
    >>> saved[0].path.name, saved[0].sidecar.name
    ('a-tea-cup-of-iced-coke-3f9c0e1a2b-0.png', 'a-tea-cup-of-iced-coke-3f9c0e1a2b-0.json')

File names are stable (the same prompt, plan, backend, model and seed give the same stem) and
collision-free (different requests give different stems). Every file is written to a temporary
name and renamed into place, so a crash never leaves a half-written image or sidecar; the
sidecar is written after its image, so a sidecar always describes a complete image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lcfix import __version__
from lcfix.adapters.base import GenerationResult
from lcfix.errors import InputError

SIDECAR_VERSION = 1
# Values of these variables are scrubbed from sidecars should any adapter ever leak one.
SECRET_ENV = (
    "OPENAI_API_KEY",
    "STABILITY_API_KEY",
    "REPLICATE_API_TOKEN",
    "FAL_KEY",
    "MJ_API_SECRET",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "AZURE_API_KEY",
)
_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")


@dataclass(frozen=True)
class SavedImage:
    """Where one image and its sidecar were written."""

    path: Path
    sidecar: Path
    index: int


def default_stem(result: GenerationResult) -> str:
    """``<prompt slug>-<hash of the request>``: stable for one request, distinct across them."""
    slug = re.sub(r"[^a-z0-9]+", "-", result.plan.prompt.lower()).strip("-")[:40].strip("-")
    key = json.dumps(
        [
            result.plan.model_dump(mode="json", exclude={"planner"}),
            result.backend,
            result.model,
            result.seed,
            result.prompt_sent,
            result.staging,
        ],
        sort_keys=True,
    )
    return f"{slug or 'image'}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def sidecar_dict(
    result: GenerationResult,
    index: int,
    image_name: str,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The sidecar of ``result.images[index]`` (never holds credentials)."""
    image = result.images[index]
    return {
        "lcfix_version": __version__,
        "sidecar_version": SIDECAR_VERSION,
        "image": image_name,
        "index": index,
        "mime_type": image.mime_type,
        "sha256": hashlib.sha256(image.data).hexdigest(),
        "backend": result.backend,
        "model": result.model,
        "seed": image.seed if image.seed is not None else result.seed,
        "prompt": result.plan.prompt,
        "prompt_sent": result.prompt_sent,
        "revised_prompt": image.revised_prompt or result.revised_prompt,
        "staging": result.staging,
        "warnings": list(result.warnings),
        "timings": result.timings,
        "usage": result.usage,
        "requests": [r.model_dump(mode="json") for r in result.requests],
        # Raw latents (output_type="latent") are tensors, not sidecar material.
        "extra": {k: v for k, v in result.extra.items() if k != "latents"},
        "plan": result.plan.model_dump(mode="json"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **dict(metadata or {}),
    }


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _secrets(extra: Iterable[str]) -> list[str]:
    values = [os.environ.get(name, "") for name in SECRET_ENV] + list(extra)
    return [v for v in values if len(v) >= 8]


def save_result(
    result: GenerationResult,
    out_dir: str | Path,
    *,
    stem: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    secrets: Iterable[str] = (),
) -> list[SavedImage]:
    """Write each image as ``<stem>-<i>.<ext>`` with ``<stem>-<i>.json`` beside it.

    ``metadata`` adds fields to every sidecar (e.g. a job key); ``secrets`` are extra values
    to scrub, on top of the provider keys found in the environment.
    """
    stem = stem or default_stem(result)
    if not _STEM.fullmatch(stem):
        raise InputError(
            "must be letters, digits, '.', '_' or '-' (no path separators)", field="stem"
        )
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output directory: {exc}", path=out) from exc
    scrub = _secrets(secrets)
    saved: list[SavedImage] = []
    for i, image in enumerate(result.images):
        path = out / f"{stem}-{i}.{image.extension}"
        side = out / f"{stem}-{i}.json"
        text = json.dumps(
            sidecar_dict(result, i, path.name, metadata),
            indent=2,
            ensure_ascii=False,
            default=str,
        )
        for secret in scrub:
            text = text.replace(secret, "***")
        write_atomic(path, image.data)
        write_atomic(side, text.encode("utf-8"))
        saved.append(SavedImage(path=path, sidecar=side, index=i))
    return saved
