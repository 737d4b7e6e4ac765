"""Click options that several commands share, so their choices come from one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from lcfix.planner import PLANNER_KINDS

F = TypeVar("F", bound=Callable[..., Any])


def planner_option(help: str | None = None, *, dest: str = "planner") -> Callable[[F], F]:
    """``--planner offline|llm|auto`` (default auto), stored as ``dest``."""
    return click.option(
        "--planner",
        dest,
        type=click.Choice(PLANNER_KINDS),
        default="auto",
        show_default=True,
        help=help,
    )
