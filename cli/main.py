"""The ``lcfix`` command. Subcommands load lazily so ``lcfix --help`` stays fast.

Errors: an ``InputError`` or a usage mistake exits 2; any other ``LcfixError`` exits 1 with
its message; ``LCFIX_DEBUG=1`` shows tracebacks instead.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from lcfix import __version__
from lcfix.errors import ConfigError, InputError, LcfixError

# name -> (module, attribute, one-line help)
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "plan": (
        "lcfix.cli.plan",
        "plan_cmd",
        "Plan prompts: detect LC-Mis pairs, write staging plans.",
    ),
    "schema": ("lcfix.cli.plan", "schema_cmd", "Print the Plan JSON Schema."),
    "generate": ("lcfix.cli.generate", "generate_cmd", "Plan and generate images on a backend."),
    "adapters": ("lcfix.cli.adapters", "adapters_group", "List the registered backends."),
    "cache": ("lcfix.cli.cache", "cache_group", "Inspect or clear the plan and switch caches."),
    "export": ("lcfix.cli.export", "export_cmd", "Export plans as A1111 prompts or ComfyUI nodes."),
    "mcp": ("lcfix.cli.mcp", "mcp_cmd", "Serve lcfix to chat assistants over MCP."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = _COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module, attr, _ = spec
        try:
            cmd = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise click.ClickException(f"command {cmd_name!r} is not available: {exc}") from exc
        if not isinstance(cmd, click.Command):
            raise TypeError(f"{module}.{attr} is not a click command")
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Uses the static help lines so that `lcfix --help` imports nothing.
        rows = [(name, _COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except LcfixError as exc:
            if os.environ.get("LCFIX_DEBUG"):
                raise
            code = 2 if isinstance(exc, (InputError, ConfigError)) else 1
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lcfix")
def cli() -> None:
    """lcfix: find concepts a text-to-image model is likely to drop, and stage them back in.

    \b
    lcfix plan "a tea cup of iced coke"
    lcfix plan prompts.txt -o plans.jsonl
    lcfix generate "a tea cup of iced coke" --backend openai:gpt-image-1 --out out/
    """


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="lcfix")


if __name__ == "__main__":  # pragma: no cover
    main()
