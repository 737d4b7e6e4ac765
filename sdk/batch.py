"""Planning a whole prompt file: ordered JSONL output, resumable, one error line per failure."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lcfix.errors import InputError, LcfixError
from lcfix.inputs import PromptRecord
from lcfix.planner import Planner
from lcfix.plans import Plan


@dataclass
class RunSummary:
    """What a planning run did; printed at the end of ``lcfix plan``."""

    total: int = 0
    skipped: int = 0
    planned: int = 0
    at_risk: int = 0
    failed: int = 0
    fallbacks: int = 0
    screened: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def add(self, plan: Plan) -> None:
        self.planned += 1
        self.at_risk += plan.at_risk
        info = plan.planner
        if info.fallback is not None:
            # auto mode: prompts the offline screen found safe never went to the LLM
            if info.fallback.startswith("screened"):
                self.screened += 1
            else:
                self.fallbacks += 1
        self.cached += info.cached
        if info.usage is not None:
            self.prompt_tokens += info.usage.prompt_tokens
            self.completion_tokens += info.usage.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        out["total_tokens"] = self.prompt_tokens + self.completion_tokens
        del out["errors"]
        return out


def plan_line(record: PromptRecord, result: Plan | LcfixError) -> dict[str, Any]:
    """The JSON object written for one input record: its id and every Plan field, or an error."""
    if isinstance(result, Plan):
        return {"id": record.id, **result.model_dump(mode="json")}
    return {"id": record.id, "prompt": record.prompt, "error": str(result)}


def complete_lines(path: Path) -> list[tuple[int, str]]:
    """The non-blank lines of an append-only JSONL file, with their 1-based numbers.

    A run killed mid-write can leave a torn last line; it is cut off the file here, so the
    next append starts on a clean line and the unfinished record is done again.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("r+b") as fh:
            fh.truncate(end)
        data = data[:end]
    text = data.decode("utf-8", errors="replace")
    return [(n, raw) for n, raw in enumerate(text.splitlines(), start=1) if raw.strip()]


def load_done_ids(path: Path) -> set[str]:
    """Ids already written to ``path`` by an earlier run.

    A run killed mid-write can leave a partial last line; it is cut off here so appending
    starts on a clean line. Any other unreadable line is an InputError naming it.
    """
    done: set[str] = set()
    for n, raw in complete_lines(path):
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"cannot resume: not valid JSON ({exc.msg})", path=path, line=n
            ) from exc
        if not isinstance(obj, dict) or "id" not in obj:
            raise InputError("cannot resume: line has no 'id'", path=path, line=n, field="id")
        done.add(str(obj["id"]))
    return done


class JsonlSink:
    """Appends one JSON object per line and flushes each, so a kill loses at most one line."""

    def __init__(self, stream: TextIO, *, fsync: bool = False) -> None:
        self._stream = stream
        self._fsync = fsync

    def write(self, obj: dict[str, Any]) -> None:
        self._stream.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._stream.flush()
        if self._fsync:
            os.fsync(self._stream.fileno())


def _chunks(items: Sequence[PromptRecord], size: int) -> Iterable[Sequence[PromptRecord]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def plan_records(
    records: Sequence[PromptRecord],
    planner: Planner,
    emit: Callable[[PromptRecord, Plan | LcfixError], None],
    *,
    done_ids: set[str] | None = None,
    chunk_size: int = 1024,
    progress: Callable[[int], None] | None = None,
) -> RunSummary:
    """Plan every record not in ``done_ids``, calling ``emit`` in input order.

    Records go to the planner in chunks (the LLM planner runs a chunk concurrently); a prompt
    that fails is emitted as its error and the run goes on.
    """
    started = time.perf_counter()
    summary = RunSummary(total=len(records))
    done = done_ids or set()
    todo = [r for r in records if str(r.id) not in done]
    summary.skipped = len(records) - len(todo)
    if progress and summary.skipped:
        progress(summary.skipped)
    for chunk in _chunks(todo, max(1, chunk_size)):
        results = planner.plan_many([r.prompt for r in chunk])
        for record, result in zip(chunk, results, strict=True):
            emit(record, result)
            if isinstance(result, Plan):
                summary.add(result)
            else:
                summary.failed += 1
                summary.errors.append(f"{record.source}:{record.line}: {result}")
        if progress:
            progress(len(chunk))
    summary.seconds = time.perf_counter() - started
    return summary
