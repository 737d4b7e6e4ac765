"""``lcfix cache``: inspect or clear the LLM planner's plan cache."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lcfix.adapters.search import RatioCache
from lcfix.cache import PlanCache

_PATH_HELP = (
    "The cache file (or a directory holding plans.sqlite3). "
    "Default: $LCFIX_CACHE_DIR/plans.sqlite3, else the user cache directory."
)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


@click.group("cache")
def cache_group() -> None:
    """Inspect or clear the plan cache and the switch-point cache.

    The LLM planner stores each plan it makes, keyed by the normalised prompt, the model and
    the prompt-template version; a cached prompt is planned again without any HTTP call.
    The local diffusers backend stores each switch step its search finds, keyed by model,
    scheduler, steps and concept pair, so a repeat search costs nothing.
    """


@cache_group.command("info")
@click.option("--path", type=click.Path(path_type=Path), default=None, help=_PATH_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info_cmd(path: Path | None, as_json: bool) -> None:
    """Show where the cache lives, how many plans it holds and its size on disk."""
    info = PlanCache(path).info()
    ratios = RatioCache()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "path": str(info.path),
                    "exists": info.exists,
                    "entries": info.entries,
                    "size_bytes": info.size_bytes,
                    "switch_ratios": {"path": str(ratios.path), "entries": ratios.count()},
                }
            )
        )
        return
    click.echo(f"path:    {info.path}")
    if not info.exists:
        click.echo("entries: 0 (no cache file yet)")
    else:
        click.echo(f"entries: {info.entries}")
        click.echo(f"size:    {_human(info.size_bytes)} ({info.size_bytes} bytes)")
    click.echo(f"switch ratios: {ratios.count()} in {ratios.path}")


@cache_group.command("clear")
@click.option("--path", type=click.Path(path_type=Path), default=None, help=_PATH_HELP)
def clear_cmd(path: Path | None) -> None:
    """Remove every cached plan and every cached switch ratio."""
    cache = PlanCache(path)
    removed = cache.clear()
    cache.close()
    noun = "plan" if removed == 1 else "plans"
    click.echo(f"removed {removed} cached {noun} from {cache.path}")
    ratios = RatioCache()
    dropped = ratios.clear()
    click.echo(f"removed {dropped} cached switch ratios from {ratios.path}")
