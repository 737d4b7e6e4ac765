"""A persistent plan cache: one sqlite file, safe under concurrent writers.

    >>> cache = PlanCache()                        # $LCFIX_CACHE_DIR or the user cache dir
    >>> key = cache_key("a tea cup of iced coke", "openai/gpt-4o-mini", "llm-v1")
    >>> cache.get(key) is None
    True

The file runs in WAL mode with a busy timeout, so several threads or processes can read and
write it at once. Read-only operations (``get``, ``info``) never create the file or its
directory. Every sqlite failure becomes a ``CacheError``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from lcfix.config import cache_dir
from lcfix.errors import CacheError
from lcfix.plans import Plan
from lcfix.text import normalize_prompt

CACHE_FILE = "plans.sqlite3"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
_CHUNK = 500  # stays under sqlite's host-parameter limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS plans (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    template TEXT NOT NULL,
    plan TEXT NOT NULL,
    created REAL NOT NULL
);
"""


def cache_key(prompt: str, model: str, template_version: str) -> str:
    """sha256 of the normalised prompt, the model and the prompt-template version."""
    raw = json.dumps([normalize_prompt(prompt), model, template_version], ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def default_cache_path() -> Path:
    """``$LCFIX_CACHE_DIR/plans.sqlite3``, else the same file in the user cache directory."""
    return cache_dir() / CACHE_FILE


@dataclass(frozen=True)
class CacheInfo:
    """What ``lcfix cache info`` shows."""

    path: Path
    exists: bool
    entries: int
    size_bytes: int


class PlanCache:
    """sqlite-backed plans keyed by ``cache_key``.

    ``path`` may be a file, or a directory to hold ``plans.sqlite3``. One instance may be
    shared between threads.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            resolved = default_cache_path()
        else:
            resolved = Path(path).expanduser()
            if resolved.is_dir():
                resolved = resolved / CACHE_FILE
        self.path = resolved
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PlanCache({str(self.path)!r})"

    def _connect(self, *, create: bool) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if not create and not self.path.exists():
            return None
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise CacheError(f"cannot open the plan cache {self.path}: {exc}") from exc
        self._conn = conn
        return conn

    @staticmethod
    def _enable_wal(conn: sqlite3.Connection) -> None:
        # Switching to WAL needs a moment of exclusive access; a concurrent opener may hold
        # it, and the busy handler does not cover this pragma on every sqlite build.
        for delay in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8):
            time.sleep(delay)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
        conn.execute("PRAGMA journal_mode = WAL")

    def get(self, key: str) -> Plan | None:
        """The cached plan, or None (also when the entry no longer validates)."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, Plan]:
        """Every cached plan among ``keys``, in one pass."""
        out: dict[str, Plan] = {}
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return out
            try:
                for start in range(0, len(keys), _CHUNK):
                    chunk = list(keys[start : start + _CHUNK])
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        f"SELECT key, plan FROM plans WHERE key IN ({marks})", chunk
                    ).fetchall()
                    for key, text in rows:
                        try:
                            out[key] = Plan.model_validate_json(text)
                        except ValidationError:
                            continue  # written by an older plan format: a miss
            except sqlite3.Error as exc:
                raise CacheError(f"cannot read the plan cache {self.path}: {exc}") from exc
        return out

    def put(self, key: str, plan: Plan, *, model: str = "", template: str = "") -> None:
        """Store ``plan`` under ``key``, replacing any older entry."""
        self.put_many({key: plan}, model=model, template=template)

    def put_many(self, plans: Mapping[str, Plan], *, model: str = "", template: str = "") -> None:
        """Store several plans in one transaction."""
        if not plans:
            return
        now = time.time()
        rows = [(k, model, template, p.model_dump_json(), now) for k, p in plans.items()]
        with self._lock:
            conn = self._connect(create=True)
            assert conn is not None
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(
                        "INSERT OR REPLACE INTO plans (key, model, template, plan, created) "
                        "VALUES (?, ?, ?, ?, ?)",
                        rows,
                    )
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise CacheError(f"cannot write the plan cache {self.path}: {exc}") from exc

    def delete(self, keys: Iterable[str]) -> None:
        """Forget the given keys."""
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return
            try:
                conn.executemany("DELETE FROM plans WHERE key = ?", [(k,) for k in keys])
            except sqlite3.Error as exc:
                raise CacheError(f"cannot write the plan cache {self.path}: {exc}") from exc

    def info(self) -> CacheInfo:
        """Path, entry count and bytes on disk (the file plus its WAL)."""
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return CacheInfo(path=self.path, exists=False, entries=0, size_bytes=0)
            try:
                (entries,) = conn.execute("SELECT COUNT(*) FROM plans").fetchone()
            except sqlite3.Error as exc:
                raise CacheError(f"cannot read the plan cache {self.path}: {exc}") from exc
        return CacheInfo(path=self.path, exists=True, entries=int(entries), size_bytes=self._size())

    def clear(self) -> int:
        """Remove every entry and shrink the file; returns how many entries were removed."""
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return 0
            try:
                removed = conn.execute("DELETE FROM plans").rowcount
            except sqlite3.Error as exc:
                raise CacheError(f"cannot clear the plan cache {self.path}: {exc}") from exc
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("VACUUM")
            except sqlite3.Error:
                pass  # another process is reading; the space is reclaimed later
        return max(int(removed), 0)

    def _size(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            f = self.path.with_name(self.path.name + suffix)
            if f.exists():
                total += f.stat().st_size
        return total

    def close(self) -> None:
        """Close the connection; the cache reopens on next use."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
