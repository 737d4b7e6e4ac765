"""Reading prompt files: ``.txt``, ``.jsonl`` and ``.csv``, or ``-`` for stdin.

Every problem is an ``InputError`` naming the file, the line and the field. The whole input is
read and checked before any planning starts, so a bad line never costs finished work.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from lcfix.errors import InputError
from lcfix.planner import MAX_PROMPT_CHARS, check_prompt

InputFormat = Literal["txt", "jsonl", "csv"]
RecordId = str | int

_EXTENSIONS: dict[str, InputFormat] = {
    ".txt": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}


@dataclass(frozen=True)
class PromptRecord:
    """One prompt of an input file. ``id`` is the input's id, else the 1-based line number."""

    id: RecordId
    prompt: str
    line: int
    source: str


_FILE_SUFFIXES = (".txt", ".jsonl", ".ndjson", ".csv", ".json")


def looks_like_file(source: str, *, as_text: bool = False) -> bool:
    """Whether a CLI argument names a prompt file (or ``-``) rather than being a prompt.

    An existing path is a file; so is a missing name with a prompt-file suffix and no spaces
    ("prompts.txt" is a missing file, not a prompt about prompts.txt).
    """
    if as_text:
        return False
    if source == "-" or Path(source).exists():
        return True
    return " " not in source.strip() and source.lower().endswith(_FILE_SUFFIXES)


def detect_format(path: str) -> InputFormat:
    """The input format implied by a file name (``.txt`` for stdin and unknown suffixes)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        raise InputError(
            "JSON arrays are not read; write one JSON object per line (.jsonl)",
            path=path,
        )
    return _EXTENSIONS.get(suffix, "txt")


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start : exc.start + 4]
        raise InputError(
            f"undecodable bytes (not UTF-8) at byte {exc.start}: {bad!r}",
            path=source,
            line=line,
        ) from exc


def _read_text(source: str, stdin: TextIO | None) -> str:
    if source == "-":
        stream = stdin if stdin is not None else sys.stdin
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            return _decode(buffer.read(), "<stdin>")
        return stream.read()
    path = Path(source)
    if not path.exists():
        raise InputError("no such file", path=source)
    if path.is_dir():
        raise InputError("is a directory, not a prompt file", path=source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=source) from exc
    return _decode(data, source)


def _check_prompt(value: object, source: str, line: int, max_chars: int) -> str:
    prompt = value.strip() if isinstance(value, str) else value
    try:
        return check_prompt(prompt, max_chars=max_chars)
    except InputError as exc:
        raise InputError(exc.reason, path=source, line=line, field="prompt") from None


def _check_id(value: object, source: str, line: int) -> RecordId:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputError(
            f"must be a string or an integer, got {type(value).__name__}",
            path=source,
            line=line,
            field="id",
        )
    if isinstance(value, str) and not value.strip():
        raise InputError("empty id", path=source, line=line, field="id")
    return value


def _txt(text: str, source: str, max_chars: int) -> Iterator[PromptRecord]:
    for n, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        yield PromptRecord(n, _check_prompt(stripped, source, n, max_chars), n, source)


def json_objects(text: str, source: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of JSONL ``text`` read from ``source``.

    A line that is not JSON, or not a JSON object, is an InputError naming the file and line.
    """
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc.msg}", path=source, line=n) from exc
        if not isinstance(obj, dict):
            raise InputError(
                f"each line must be a JSON object, got {type(obj).__name__}", path=source, line=n
            )
        yield n, obj


def _jsonl(text: str, source: str, max_chars: int) -> Iterator[PromptRecord]:
    for n, obj in json_objects(text, source):
        if "prompt" not in obj:
            raise InputError("missing", path=source, line=n, field="prompt")
        prompt = _check_prompt(obj["prompt"], source, n, max_chars)
        rid = _check_id(obj["id"], source, n) if obj.get("id") is not None else n
        yield PromptRecord(rid, prompt, n, source)


def _csv(text: str, source: str, max_chars: int) -> Iterator[PromptRecord]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fields = reader.fieldnames
    except csv.Error as exc:
        raise InputError(f"bad CSV header: {exc}", path=source, line=1) from exc
    names = [f.strip() for f in (fields or [])]
    if "prompt" not in names:
        found = ", ".join(repr(f) for f in names) or "none"
        raise InputError(
            f"the CSV header has no 'prompt' column (columns: {found})",
            path=source,
            line=1,
            field="prompt",
        )
    reader.fieldnames = names
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"bad CSV: {exc}", path=source, line=reader.line_num) from exc
        line = reader.line_num  # the row's last physical line (its only one, usually)
        if not any((v or "").strip() for k, v in row.items() if k is not None):
            continue
        prompt = _check_prompt(row.get("prompt") or "", source, line, max_chars)
        raw_id = (row.get("id") or "").strip()
        yield PromptRecord(raw_id or line, prompt, line, source)


_READERS = {"txt": _txt, "jsonl": _jsonl, "csv": _csv}


def read_prompts(
    source: str | Path,
    *,
    fmt: InputFormat | None = None,
    stdin: TextIO | None = None,
    max_chars: int = MAX_PROMPT_CHARS,
) -> list[PromptRecord]:
    """Read and check every prompt of ``source`` (a path, or ``-`` for stdin).

    Raises InputError at the first bad line; ids must be unique.
    """
    src = str(source)
    fmt = fmt or ("txt" if src == "-" else detect_format(src))
    text = _read_text(src, stdin)
    name = "<stdin>" if src == "-" else src
    records = list(_READERS[fmt](text, name, max_chars))
    seen: dict[str, int] = {}
    for rec in records:
        key = str(rec.id)
        if key in seen:
            raise InputError(
                f"duplicate id {rec.id!r} (first on line {seen[key]})",
                path=name,
                line=rec.line,
                field="id",
            )
        seen[key] = rec.line
    return records
