"""``DIR/manifest.jsonl``: the append-only record that makes ``lcfix generate`` resumable.

Each job (one prompt, one variant, one seed) is keyed by a content hash of what determines
its images: the prompt, the plan (without provenance such as ``cached``), the backend, the
generation options, the seed and the variant (``lcfix`` or ``baseline``). A job's line is
written only after its images and sidecars are on disk, and each line is flushed and
fsynced, so after ``kill -9``:

- a finished job has its line and is skipped on the next run;
- an unfinished job has no line and runs again;
- a torn last line (killed mid-write) is cut off when the manifest is opened.

Failed jobs get a line with their error; they are skipped unless the run asks to retry them.
The latest line for a key wins. A lock file stops two runs from writing one directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lcfix.batch import complete_lines
from lcfix.errors import ConfigError, InputError
from lcfix.plans import Plan

MANIFEST_NAME = "manifest.jsonl"
LOCK_NAME = ".lcfix-generate.lock"
Variant = Literal["lcfix", "baseline"]
Status = Literal["done", "failed"]

# Planner provenance changes between runs (a cache hit, token usage) without changing the plan.
_VOLATILE_PLANNER_FIELDS = {"cached", "usage", "attempts"}


def canonical_json(obj: Any) -> str:
    """Stable JSON for hashing: sorted keys, no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def plan_fingerprint(plan: Plan) -> dict[str, Any]:
    """The parts of a plan that decide what gets generated."""
    return plan.model_dump(mode="json", exclude={"planner": _VOLATILE_PLANNER_FIELDS})


def job_key(
    *,
    prompt: str,
    plan: Plan | None,
    backend: str,
    options: Mapping[str, Any],
    seed: int | None,
    variant: Variant,
) -> str:
    """The content hash of a job (hex sha256).

    A baseline ignores the plan (it sends the original prompt), so a new planner never
    regenerates baselines.
    """
    payload = {
        "prompt": prompt,
        "plan": plan_fingerprint(plan) if plan is not None and variant == "lcfix" else None,
        "backend": backend,
        "options": dict(options),
        "seed": seed,
        "variant": variant,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


class JobRecord(BaseModel):
    """One manifest line."""

    model_config = ConfigDict(extra="allow")

    key: str
    status: Status
    prompt_id: str
    variant: Variant
    prompt: str
    seed: int | None = None
    backend: str
    prompt_sent: str | None = None
    revised_prompt: str | None = None
    files: list[str] = Field(default_factory=list, description="Images, relative to DIR")
    sidecars: list[str] = Field(default_factory=list, description="JSON sidecars, relative")
    plan: dict[str, Any] | None = None
    scores: dict[str, float] | None = None
    warnings: list[str] = Field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    attempt: int = 1
    seconds: float = 0.0
    finished_at: float = Field(default_factory=time.time)


class Manifest:
    """The manifest of one output directory. Use as a context manager.

    >>> with Manifest(out_dir) as m:
    ...     if not m.is_done(key):
    ...         ...  # write the images and sidecars first
    ...         m.append(JobRecord(key=key, status="done", ...))
    """

    def __init__(self, out_dir: str | Path, *, lock: bool = True) -> None:
        self.dir = Path(out_dir)
        self.path = self.dir / MANIFEST_NAME
        self._records: dict[str, JobRecord] = {}
        self._order: list[str] = []
        self._write_lock = threading.Lock()
        self._lock_fh: Any = None
        self._fh: Any = None
        self.dir.mkdir(parents=True, exist_ok=True)
        if lock:
            self._acquire_lock()
        try:
            self._load()
            self._fh = self.path.open("a", encoding="utf-8")
        except BaseException:
            self._release_lock()
            raise

    def _acquire_lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks, no guard
            return
        fh = (self.dir / LOCK_NAME).open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            raise ConfigError(
                f"another lcfix run is writing {self.dir}; wait for it or use another --out"
            ) from exc
        self._lock_fh = fh  # the OS drops the lock if this process dies, even on kill -9

    def _release_lock(self) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def _load(self) -> None:
        # A torn last line is a job that did not finish: complete_lines drops it.
        for n, raw in complete_lines(self.path):
            try:
                record = JobRecord.model_validate_json(raw)
            except ValueError as exc:
                raise InputError(
                    f"cannot resume: unreadable manifest line ({exc.__class__.__name__}); "
                    "fix or delete the line",
                    path=self.path,
                    line=n,
                ) from exc
            self._remember(record)

    def _remember(self, record: JobRecord) -> None:
        if record.key not in self._records:
            self._order.append(record.key)
        self._records[record.key] = record

    def get(self, key: str) -> JobRecord | None:
        """The latest record for ``key``."""
        return self._records.get(key)

    def is_done(self, key: str) -> bool:
        record = self._records.get(key)
        return record is not None and record.status == "done"

    def is_failed(self, key: str) -> bool:
        record = self._records.get(key)
        return record is not None and record.status == "failed"

    def records(self) -> list[JobRecord]:
        """The latest record of every key, in first-seen order."""
        return [self._records[k] for k in self._order]

    def append(self, record: JobRecord) -> None:
        """Write one line, flushed and fsynced before returning.

        Call it only after the job's files are completely written.
        """
        if self._fh is None:
            raise ConfigError(f"the manifest {self.path} is closed")
        line = record.model_dump_json(exclude_none=True) + "\n"
        with self._write_lock:
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._remember(record)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._release_lock()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[JobRecord]:
        return iter(self.records())


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary file and a rename, fsynced, so it is whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_records(out_dir: str | Path) -> list[JobRecord]:
    """The latest record of every job in ``out_dir``'s manifest, without locking or writing."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.exists():
        return []
    latest: dict[str, JobRecord] = {}
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = JobRecord.model_validate_json(raw)
            latest[record.key] = record  # the latest line wins; the first one fixes the order
    return list(latest.values())
