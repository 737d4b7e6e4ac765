from __future__ import annotations

from typing import get_args

import click
from click.testing import CliRunner

from lcfix.cli.options import planner_option
from lcfix.planner import PlannerKind


@click.command()
@planner_option("which planner", dest="kind")
def _cmd(kind: str) -> None:
    click.echo(kind)


def test_planner_option_offers_the_planner_kinds_and_defaults_to_auto() -> None:
    assert CliRunner().invoke(_cmd, []).output == "auto\n"
    assert CliRunner().invoke(_cmd, ["--planner", "offline"]).output == "offline\n"
    bad = CliRunner().invoke(_cmd, ["--planner", "bogus"])
    assert bad.exit_code == 2
    assert all(kind in bad.output for kind in get_args(PlannerKind))
