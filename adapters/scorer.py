"""Scorers for the switch-point search: the ``Scorer`` protocol, CLIPScore as the paper
computes it, and a deterministic synthetic scorer for tests and benchmarks.

The paper's score (Hessel et al.'s CLIPScore, as in the MoCE code): each text is prefixed
"A photo depicts ", the score of an image against a text is ``2.5 * max(cos, 0)``, and a
concept's score is the max of its score against its name and against its description, where
for a set of images each of the two is first averaged over the set.

    >>> scorer = CLIPScorer()                       # openai/clip-vit-base-patch32
    >>> concept_scores(scorer, images, plan.concepts)
    {'tea cup': 0.74, 'iced coke': 0.69}

This module imports nothing heavy; ``CLIPScorer`` loads torch and transformers when built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from typing import Any, Protocol, runtime_checkable

from lcfix.errors import AdapterError, ConfigError, ExtraNotInstalledError
from lcfix.plans import Concept

PREFIX = "A photo depicts "
WEIGHT = 2.5
DEFAULT_CLIP = "openai/clip-vit-base-patch32"

INFO_STEP = "lcfix.switch_step"
"""PIL ``Image.info`` keys the search sets on probe images (the synthetic scorer reads them)."""
INFO_TOTAL = "lcfix.steps"
INFO_SEED = "lcfix.seed"


@runtime_checkable
class Scorer(Protocol):
    """Scores images against texts on the paper's scale (0 to 2.5; 0.72 is the threshold)."""

    name: str

    def score(self, images: Sequence[Any], texts: Sequence[str]) -> list[list[float]]:
        """One row per image, one column per text."""
        ...


def _texts(concept: Concept) -> list[str]:
    return [concept.name] + ([concept.description] if concept.description.strip() else [])


def concept_scores(
    scorer: Scorer, images: Sequence[Any], concepts: Sequence[Concept]
) -> dict[str, float]:
    """Each concept's score over a set of images: the max over name and description of the
    mean over images (the paper takes the max of the set means)."""
    texts: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    for c in concepts:
        own = _texts(c)
        spans[c.name] = (len(texts), len(texts) + len(own))
        texts += own
    table = scorer.score(images, texts)
    if len(table) != len(images) or any(len(row) != len(texts) for row in table):
        raise AdapterError(
            f"scorer {scorer.name!r} returned a table of the wrong shape: a Scorer returns one "
            f"row per image ({len(images)}) and one column per text ({len(texts)})"
        )
    means = [sum(row[j] for row in table) / len(table) for j in range(len(texts))]
    return {name: max(means[a:b]) for name, (a, b) in spans.items()}


class CLIPScorer:
    """CLIPScore with a transformers CLIP model (``model`` is a hub id or a local directory).

    Pass ``clip_model`` and ``processor`` to use objects you already have.
    """

    def __init__(
        self,
        model: str = DEFAULT_CLIP,
        *,
        clip_model: Any = None,
        processor: Any = None,
        device: str | None = None,
        prefix: str = PREFIX,
        weight: float = WEIGHT,
    ) -> None:
        try:
            import torch
            from transformers import CLIPModel, CLIPProcessor
        except ImportError as exc:
            raise ExtraNotInstalledError(
                "CLIP scoring", "diffusion", exc.name or "transformers"
            ) from exc
        self._torch = torch
        self.name = f"clip:{model}" if clip_model is None else f"clip:{type(clip_model).__name__}"
        self.prefix = prefix
        self.weight = weight
        if clip_model is None or processor is None:
            try:
                clip_model = CLIPModel.from_pretrained(model)
                processor = CLIPProcessor.from_pretrained(model)
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"cannot load the CLIP scorer {model!r}: {exc}. Download it once with network "
                    f"access (hf download {model}), or pass a local directory as the model"
                ) from exc
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = clip_model.to(device).eval()
        self.processor = processor
        self.device = device
        self._text_cache: dict[str, Any] = {}

    def _features(self, out: Any) -> Any:
        # transformers 5 returns a ModelOutput whose pooler_output is the projected embedding.
        feats = getattr(out, "pooler_output", out)
        return feats / feats.norm(dim=-1, keepdim=True)

    def _text_features(self, texts: Sequence[str]) -> Any:
        torch = self._torch
        todo = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if todo:
            enc = self.processor(
                text=[self.prefix + t for t in todo], return_tensors="pt", padding=True,
                truncation=True,
            )  # fmt: skip
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.no_grad():
                feats = self._features(self.model.get_text_features(**enc))
            for t, f in zip(todo, feats, strict=True):
                self._text_cache[t] = f
        return torch.stack([self._text_cache[t] for t in texts])

    def score(self, images: Sequence[Any], texts: Sequence[str]) -> list[list[float]]:
        """``2.5 * max(cos(image, "A photo depicts " + text), 0)`` for every pair."""
        torch = self._torch
        if not images or not texts:
            return [[] for _ in images]
        pix = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        pixel_values = pix["pixel_values"].to(self.device, dtype=self.model.dtype)
        with torch.no_grad():
            img = self._features(self.model.get_image_features(pixel_values=pixel_values))
        txt = self._text_features(texts).to(img.dtype)
        cos = img.float() @ txt.float().T
        return (self.weight * cos.clamp(min=0)).tolist()  # type: ignore[no-any-return]


def _unit(seed: int, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SyntheticScorer:
    """A deterministic stand-in whose balance grows with the switch step (for tests and
    benchmarks, where random-weight models give meaningless CLIP scores).

    It reads the switch step, step count and seed that the search stores in each probe
    image's ``info``. For an image switched at fraction ``f`` with seed ``s``, texts of the
    fragile concepts score ``level + slope * (f - target(s))`` and all others
    ``level - slope * (f - target(s))``, where ``target(s)`` is ``target`` moved by up to
    ``jitter`` per seed. Images without the info score as if switched at the target.
    """

    def __init__(
        self,
        fragile: Collection[str],
        *,
        target: float = 0.3,
        slope: float = 1.0,
        level: float = 0.74,
        jitter: float = 0.05,
    ) -> None:
        self.name = "synthetic"
        self.fragile = {t.lower() for t in fragile}
        self.target = target
        self.slope = slope
        self.level = level
        self.jitter = jitter
        self.calls = 0

    @classmethod
    def for_plan(cls, plan: Any, **kwargs: Any) -> SyntheticScorer:
        """Treat the plan's fragile concepts (names and descriptions) as the fragile texts."""
        fragile = {p.fragile.lower() for p in plan.pairs}
        texts = set(fragile)
        for c in plan.concepts:
            if c.name.lower() in fragile and c.description:
                texts.add(c.description.lower())
        return cls(texts, **kwargs)

    def target_for(self, seed: int) -> float:
        """The switch fraction at which this seed's two concepts balance."""
        return self.target + self.jitter * (2 * _unit(seed, "target") - 1)

    def score(self, images: Sequence[Any], texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        rows = []
        for im in images:
            info = getattr(im, "info", {}) or {}
            seed = int(info.get(INFO_SEED, 0))
            target = self.target_for(seed)
            total = int(info.get(INFO_TOTAL, 0))
            f = int(info[INFO_STEP]) / total if total and INFO_STEP in info else target
            shift = self.slope * (f - target)
            rows.append(
                [self.level + (shift if t.lower() in self.fragile else -shift) for t in texts]
            )
        return rows
