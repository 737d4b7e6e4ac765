"""``lcfix cache info`` and ``lcfix cache clear``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lcfix.cache import PlanCache, cache_key
from lcfix.cli.main import cli
from lcfix.compose import compose_plan
from lcfix.plans import PlannerInfo


def fill(path: Path, n: int) -> None:
    plan = compose_plan("a red apple", [], planner=PlannerInfo(name="llm", version="prompt-v1"))
    cache = PlanCache(path)
    cache.put_many({cache_key(f"a red apple {i}", "m", "v1"): plan for i in range(n)})
    cache.close()


def test_info_on_a_missing_cache_creates_nothing(tmp_path: Path) -> None:
    where = tmp_path / "none" / "plans.sqlite3"
    result = CliRunner().invoke(cli, ["cache", "info", "--path", str(where)])
    assert result.exit_code == 0, result.output
    assert str(where) in result.output and "no cache file yet" in result.output
    assert not where.parent.exists()


def test_info_counts_entries(tmp_path: Path) -> None:
    where = tmp_path / "plans.sqlite3"
    fill(where, 3)
    result = CliRunner().invoke(cli, ["cache", "info", "--path", str(where), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["path"] == str(where) and data["exists"] is True
    assert data["entries"] == 3 and data["size_bytes"] > 0


def test_default_path_comes_from_env() -> None:
    # conftest points LCFIX_CACHE_DIR at a private tmp dir
    fill(PlanCache().path, 2)
    result = CliRunner().invoke(cli, ["cache", "info"])
    assert result.exit_code == 0, result.output
    assert str(PlanCache().path) in result.output and "entries: 2" in result.output


def test_clear_removes_every_plan(tmp_path: Path) -> None:
    where = tmp_path / "plans.sqlite3"
    fill(where, 4)
    result = CliRunner().invoke(cli, ["cache", "clear", "--path", str(where)])
    assert result.exit_code == 0, result.output
    assert "removed 4 cached plans" in result.output
    assert PlanCache(where).info().entries == 0
    again = CliRunner().invoke(cli, ["cache", "clear", "--path", str(where)])
    assert "removed 0 cached plans" in again.output


def test_corrupt_cache_is_a_clean_error(tmp_path: Path) -> None:
    where = tmp_path / "plans.sqlite3"
    where.write_bytes(b"garbage" * 100)
    result = CliRunner().invoke(cli, ["cache", "info", "--path", str(where)])
    assert result.exit_code == 1
    assert "Error:" in result.output and "plans.sqlite3" in result.output


def test_info_and_clear_cover_the_switch_ratio_cache() -> None:
    from lcfix.adapters.search import RatioCache

    ratios = RatioCache()
    assert ratios.count() == 0 and not ratios.path.exists()
    ratios.put("k1", 5, 20)
    ratios.put("k2", 6, 20)
    runner = CliRunner()
    info = runner.invoke(cli, ["cache", "info", "--json"])
    assert json.loads(info.output)["switch_ratios"]["entries"] == 2
    cleared = runner.invoke(cli, ["cache", "clear"])
    assert "removed 2 cached switch ratios" in cleared.output
    assert ratios.count() == 0
