"""The sqlite plan cache: keys, round trips, read-only info, clear, concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lcfix.cache import CACHE_FILE, PlanCache, cache_key, default_cache_path
from lcfix.compose import compose_plan
from lcfix.errors import CacheError
from lcfix.plans import ConceptPair, Plan, PlannerInfo

INFO = PlannerInfo(name="llm", model="openai/m", version="prompt-v1")


def make_plan(prompt: str = "A tea cup of iced coke") -> Plan:
    pairs = [ConceptPair(fragile="tea cup", dominant="iced coke", latent="glass")]
    return compose_plan(prompt, pairs if "tea cup" in prompt else [], planner=INFO)


def test_key_normalises_prompt_and_separates_model_and_template() -> None:
    base = cache_key("A tea cup of iced coke", "m", "v1")
    assert cache_key("  a TEA cup   of iced coke ", "m", "v1") == base
    assert cache_key("A tea cup of iced coke", "other", "v1") != base
    assert cache_key("A tea cup of iced coke", "m", "v2") != base
    assert cache_key("A tea cup of hot coke", "m", "v1") != base


def test_round_trip(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path / "c.sqlite3")
    plan = make_plan()
    key = cache_key(plan.prompt, "m", "v1")
    assert cache.get(key) is None
    cache.put(key, plan, model="m", template="v1")
    assert cache.get(key) == plan
    assert cache.get_many([key, "missing"]) == {key: plan}
    cache.delete([key])
    assert cache.get(key) is None


def test_read_only_operations_create_nothing(tmp_path: Path) -> None:
    where = tmp_path / "nested" / "dir" / "plans.sqlite3"
    cache = PlanCache(where)
    assert cache.get("k") is None
    info = cache.info()
    assert (info.exists, info.entries, info.size_bytes) == (False, 0, 0)
    assert cache.clear() == 0
    assert not (tmp_path / "nested").exists()


def test_default_path_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LCFIX_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_path() == tmp_path / "here" / CACHE_FILE
    assert PlanCache().path == tmp_path / "here" / CACHE_FILE


def test_directory_path_holds_the_default_file(tmp_path: Path) -> None:
    assert PlanCache(tmp_path).path == tmp_path / CACHE_FILE


def test_info_and_clear(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path / "c.sqlite3")
    plans = {cache_key(f"a tea cup number {i}", "m", "v1"): make_plan() for i in range(5)}
    cache.put_many(plans)
    info = cache.info()
    assert info.exists and info.entries == 5 and info.size_bytes > 0
    assert cache.clear() == 5
    assert cache.info().entries == 0
    assert cache.get(next(iter(plans))) is None


def test_uses_wal_mode(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path / "c.sqlite3")
    cache.put("k", make_plan())
    conn = sqlite3.connect(cache.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_entry_in_an_old_format_is_a_miss(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path / "c.sqlite3")
    cache.put("k", make_plan())
    conn = sqlite3.connect(cache.path)
    conn.execute("UPDATE plans SET plan = '{\"version\": 0}'")
    conn.commit()
    conn.close()
    assert cache.get("k") is None


def test_corrupt_file_raises_cache_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CacheError, match=r"bad\.sqlite3"):
        PlanCache(bad).get("k")


def test_unwritable_location_raises_cache_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CacheError):
        PlanCache(blocker / "sub" / "c.sqlite3").put("k", make_plan())


def test_concurrent_writers_in_threads(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    plan = make_plan()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        cache = PlanCache(path)  # one connection per writer, as separate processes would have
        try:
            for i in range(40):
                cache.put(f"{n}-{i}", plan)
                cache.get(f"{n}-{i}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            cache.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert PlanCache(path).info().entries == 240


def test_concurrent_writer_processes(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    plan_json = make_plan().model_dump_json()
    code = (
        "import sys\n"
        "from lcfix.cache import PlanCache\n"
        "from lcfix.plans import Plan\n"
        "plan = Plan.model_validate_json(sys.argv[3])\n"
        "cache = PlanCache(sys.argv[1])\n"
        "for i in range(60):\n"
        "    cache.put(f'{sys.argv[2]}-{i}', plan)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), str(n), plan_json])
        for n in range(3)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert PlanCache(path).info().entries == 180
