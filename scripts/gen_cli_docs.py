"""Write docs/cli.md from the ``--help`` of every lcfix command (checked by a test).

python scripts/gen_cli_docs.py          # rewrite docs/cli.md
python scripts/gen_cli_docs.py --check  # exit 1 if docs/cli.md is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"

HEADER = """# CLI reference

Generated from `--help` by `scripts/gen_cli_docs.py`; a test keeps it in step with the code.

Exit status for every command: 0 on success, 1 when some work failed (a prompt, an image),
2 for a usage or input error (the message names the file, line and field). Set
`LCFIX_DEBUG=1` to see tracebacks.

Limits: a prompt is at most 4,000 characters (longer is an input error).
"""


def _help(args: list[str]) -> str:
    from lcfix.cli.main import cli

    result = CliRunner().invoke(cli, [*args, "--help"], prog_name="lcfix", terminal_width=100)
    if result.exit_code != 0:
        raise SystemExit(f"lcfix {' '.join(args)} --help failed: {result.output}")
    return result.output.rstrip()


def _walk(cmd: click.Command, path: list[str]) -> list[list[str]]:
    out = [path]
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                out.extend(_walk(sub, [*path, name]))
    return out


def render() -> str:
    from lcfix.cli.main import cli

    parts = [HEADER]
    for path in _walk(cli, []):
        title = " ".join(["lcfix", *path])
        parts.append(f"## `{title}`\n\n```text\n{_help(path)}\n```\n")
    return "\n".join(parts)


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not DOC.exists() or DOC.read_text() != text:
            sys.stderr.write("docs/cli.md is stale: run python scripts/gen_cli_docs.py\n")
            return 1
        return 0
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
