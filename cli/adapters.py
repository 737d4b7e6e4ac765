"""``lcfix adapters``: the registered backends, built-in and plugins alike."""

from __future__ import annotations

import json

import click

from lcfix.adapters import AdapterInfo, available_adapters


def _row(info: AdapterInfo) -> list[str]:
    caps = info.capabilities
    if caps is None:
        return [info.name, info.origin, info.version, f"unavailable: {info.error}"]
    features = [
        f"staging={caps.staging}",
        f"dialect={caps.dialect}",
        f"max_images={caps.max_images}",
    ]
    features += [
        flag
        for flag, on in (
            ("negative_prompt", caps.negative_prompt),
            ("seed", caps.seed),
            ("revised_prompt", caps.revised_prompt),
            ("switch_search", caps.switch_search),
        )
        if on
    ]
    return [info.name, info.origin, info.version, " ".join(features)]


@click.group("adapters")
def adapters_group() -> None:
    """List the registered backends (the ``lcfix.adapters`` entry-point group)."""


@adapters_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(as_json: bool) -> None:
    """Show each backend's name, origin (package and version) and capabilities."""
    infos = available_adapters()
    if as_json:
        rows = [
            {
                "name": i.name,
                "origin": i.origin,
                "version": i.version,
                "target": i.target,
                "capabilities": i.capabilities.model_dump() if i.capabilities else None,
                "error": i.error,
            }
            for i in infos
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    table = [["NAME", "ORIGIN", "VERSION", "CAPABILITIES"], *(_row(i) for i in infos)]
    widths = [max(len(r[c]) for r in table) for c in range(3)]
    for r in table:
        click.echo("  ".join(r[c].ljust(widths[c]) for c in range(3)) + "  " + r[3])
