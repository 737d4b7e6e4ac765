"""``lcfix mcp``: serve lcfix to chat assistants over MCP (stdio or streamable HTTP)."""

from __future__ import annotations

import click

from lcfix.cli.options import planner_option
from lcfix.mcp_server import BACKEND_ENV, DEFAULT_PORT, MCPConfig, serve


@click.command("mcp")
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio for desktop clients; http serves streamable HTTP at http://HOST:PORT/mcp.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP bind address.")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="HTTP port.")
@click.option(
    "--backend",
    default=None,
    metavar="NAME:MODEL",
    help=f"Default backend for generate_image, e.g. openai:gpt-image-1 (or {BACKEND_ENV}).",
)
@click.option("--api-base", default=None, metavar="URL", help="Endpoint of the default backend.")
@planner_option("auto uses the LLM planner when a model is configured.")
@click.option("--model", default=None, help="LLM planner model (or LCFIX_LLM_MODEL).")
@click.option("--llm-api-base", default=None, metavar="URL", help="LLM planner endpoint.")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default="WARNING",
    show_default=True,
    help="Server log level (logs go to stderr).",
)
def mcp_cmd(
    transport: str,
    host: str,
    port: int,
    backend: str | None,
    api_base: str | None,
    planner: str,
    model: str | None,
    llm_api_base: str | None,
    log_level: str,
) -> None:
    """Serve lcfix to chat assistants over MCP.

    \b
    Tools: plan_prompt, rewrite_prompt (natural|weighted|a1111), generate_image.
    lcfix mcp
    lcfix mcp --transport http --port 8765 --backend openai:gpt-image-1
    """
    config = MCPConfig.from_env(
        backend=backend,
        api_base=api_base,
        planner=planner,
        model=model,
        llm_api_base=llm_api_base,
        log_level=log_level,
    )
    serve(config, transport="http" if transport == "http" else "stdio", host=host, port=port)
