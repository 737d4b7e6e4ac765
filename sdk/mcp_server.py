"""lcfix as an MCP server, built on the official ``mcp`` SDK (v2, ``MCPServer``).

    $ lcfix mcp                                   # stdio, for Claude Desktop, Cursor, ...
    $ lcfix mcp --transport http --port 8765      # streamable HTTP at http://127.0.0.1:8765/mcp

Tools: ``plan_prompt`` (the plan, summarised), ``rewrite_prompt`` (the prompt in one backend
dialect: natural, weighted or a1111) and ``generate_image`` (plan, stage and draw; returns
MCP image content so clients render the images). ``generate_image`` draws on the backend its
``backend`` argument names, else the server's (``--backend`` or ``LCFIX_MCP_BACKEND``).

Bad arguments and lcfix errors come back as tool errors (``isError: true``); the server
keeps running. The ``mcp`` package is the ``lcfix[mcp]`` extra and loads only here.
"""

# No `from __future__ import annotations` here: MCPServer reads the tool functions' annotations
# at registration, and the closures' names (CallToolResult) live in build_server's scope.

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from lcfix import __version__
from lcfix.adapters.base import ImageAdapter
from lcfix.dispatch import agenerate
from lcfix.errors import ConfigError, ExtraNotInstalledError, LcfixError
from lcfix.planner import MAX_PROMPT_CHARS, Planner, PlannerKind
from lcfix.plans import RewriteDialect
from lcfix.tools import MAX_TOOL_IMAGES, generation_payload, plan_payload

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from mcp_types import CallToolResult

__all__ = ["DEFAULT_PORT", "MCPConfig", "build_server", "serve"]

DEFAULT_PORT = 8765
BACKEND_ENV = "LCFIX_MCP_BACKEND"

AdapterFactory = Callable[[str, "MCPConfig"], ImageAdapter]
"""Builds the adapter for one backend string: ``(backend, config) -> ImageAdapter``."""

_INSTRUCTIONS = (
    "lcfix finds concepts a text-to-image model is likely to lose (latent concept "
    "misalignment: 'a tea cup of iced coke' comes out as a glass) and stages them back in. "
    "Call plan_prompt or rewrite_prompt before drawing a prompt that combines objects, "
    "containers or materials; call generate_image to draw with staging."
)

Prompt = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="The image prompt exactly as the user wants it drawn",
    ),
]


@dataclass(frozen=True)
class MCPConfig:
    """How the server plans and where it draws; resolved once, when the server is built."""

    backend: str | None = None
    """Default backend for generate_image, e.g. ``openai:gpt-image-1``."""
    api_base: str | None = None
    """Endpoint of the default backend (a proxy, a gateway, a loopback test server)."""
    planner: PlannerKind = "auto"
    model: str | None = None
    """LLM planner model (``--model`` / ``LCFIX_LLM_MODEL``)."""
    llm_api_base: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING"

    @classmethod
    def from_env(cls, **overrides: Any) -> "MCPConfig":
        """A config from explicit values, then ``LCFIX_MCP_BACKEND``."""
        values = {k: v for k, v in overrides.items() if v is not None}
        values.setdefault("backend", os.environ.get(BACKEND_ENV) or None)
        return cls(**values)


def _require_mcp() -> None:
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ImportError as exc:
        raise ExtraNotInstalledError("the MCP server", "mcp", "mcp>=2.3,<3") from exc


def _default_adapter_factory(backend: str, config: MCPConfig) -> ImageAdapter:
    from lcfix.adapters import load_adapter

    # The configured endpoint belongs to the configured backend only.
    if config.api_base and backend == config.backend:
        return load_adapter(backend, api_base=config.api_base)
    return load_adapter(backend)


class _State:
    """The planner and per-backend adapters, built on first use and closed at shutdown."""

    def __init__(
        self, config: MCPConfig, planner: Planner | None, adapter_factory: AdapterFactory | None
    ) -> None:
        self.config = config
        self._planner = planner
        self._owns_planner = planner is None
        self._factory = adapter_factory or _default_adapter_factory
        self._adapters: dict[str, ImageAdapter] = {}
        self._lock = asyncio.Lock()

    async def planner(self) -> Planner:
        async with self._lock:
            if self._planner is None:
                from lcfix.planner import get_planner

                cfg = self.config
                # Building the offline planner loads its knowledge base: keep the loop free.
                self._planner = await asyncio.to_thread(
                    get_planner, cfg.planner, model=cfg.model, api_base=cfg.llm_api_base
                )
            return self._planner

    async def adapter(self, backend: str) -> ImageAdapter:
        async with self._lock:
            if backend not in self._adapters:
                # A local backend may load a pipeline here: keep the loop free.
                self._adapters[backend] = await asyncio.to_thread(
                    self._factory, backend, self.config
                )
            return self._adapters[backend]

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()
        self._adapters.clear()
        if self._planner is not None and self._owns_planner:
            self._planner.close()


def _result(payload: dict[str, Any], images: list[Any] | None = None) -> "CallToolResult":
    from mcp_types import CallToolResult, TextContent

    # The spec asks tools that return structured content to repeat it as JSON text.
    content: list[Any] = [TextContent(type="text", text=json.dumps(payload, ensure_ascii=False))]
    content.extend(images or [])
    return CallToolResult(content=content, structured_content=payload)


def _tool_error(exc: LcfixError) -> Exception:
    from mcp.server.mcpserver.exceptions import ToolError

    return ToolError(str(exc))


def build_server(
    config: MCPConfig | None = None,
    *,
    planner: Planner | None = None,
    adapter_factory: AdapterFactory | None = None,
) -> "MCPServer[Any]":
    """The lcfix MCP server, ready to ``run()`` or to hand to ``mcp.Client`` in tests.

    ``planner`` replaces the configured planner; ``adapter_factory(backend, config)``
    replaces the adapter registry for generate_image (tests pass a fake backend here).
    """
    _require_mcp()
    from mcp.server.mcpserver import MCPServer
    from mcp_types import CallToolResult, ImageContent, ToolAnnotations

    cfg = config or MCPConfig.from_env()
    state = _State(cfg, planner, adapter_factory)

    @asynccontextmanager
    async def lifespan(_: "MCPServer[Any]") -> AsyncIterator[None]:
        try:
            yield None
        finally:
            await state.aclose()

    server: MCPServer[Any] = MCPServer(
        "lcfix",
        title="lcfix",
        version=__version__,
        instructions=_INSTRUCTIONS,
        lifespan=lifespan,
        log_level=cfg.log_level,
    )
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    @server.tool(
        title="Plan an image prompt",
        description=(
            "Find the concept an image model is likely to lose in a prompt (e.g. the tea cup "
            "in 'a tea cup of iced coke', drawn as a glass) and how to stage it back in. "
            "Returns at_risk, the fragile/dominant pairs, the stages and a rewritten prompt."
        ),
        annotations=read_only,
    )
    async def plan_prompt(
        prompt: Prompt,
        include_plan: Annotated[
            bool, Field(description="Also return the full lcfix Plan (JSON) under 'plan'")
        ] = False,
    ) -> CallToolResult:
        try:
            plan = await (await state.planner()).aplan(prompt)
        except LcfixError as exc:
            raise _tool_error(exc) from exc
        payload = plan_payload(plan)
        if include_plan:
            payload["plan"] = plan.model_dump(mode="json")
        return _result(payload)

    @server.tool(
        title="Rewrite an image prompt",
        description=(
            "Rewrite a prompt so the image model keeps its fragile concept, in the dialect of "
            "the target backend: natural (gpt-image, DALL-E, Imagen, Flux, most APIs), "
            "weighted (Midjourney '::' weights and --no), a1111 (Stable Diffusion web UI "
            "[from:to:when] prompt editing, which stages natively)."
        ),
        annotations=read_only,
    )
    async def rewrite_prompt(
        prompt: Prompt,
        dialect: Annotated[
            RewriteDialect, Field(description="The target backend's prompt dialect")
        ] = "natural",
    ) -> CallToolResult:
        try:
            plan = await (await state.planner()).aplan(prompt)
        except LcfixError as exc:
            raise _tool_error(exc) from exc
        full = plan_payload(plan, dialect)
        keys = ("prompt", "dialect", "rewritten_prompt", "at_risk", "fragile", "advice")
        return _result({k: full[k] for k in keys})

    @server.tool(
        title="Generate an image with lcfix",
        description=(
            "Plan a prompt, draw its fragile concept first where the backend allows it, and "
            "return the images. Pass the user's prompt unchanged; lcfix rewrites it."
        ),
        annotations=ToolAnnotations(read_only_hint=False, open_world_hint=True),
    )
    async def generate_image(
        prompt: Prompt,
        backend: Annotated[
            str | None,
            Field(
                description=(
                    "Backend as NAME:MODEL, e.g. openai:gpt-image-1 or stability:sd3.5-large; "
                    "omit for the server's default"
                )
            ),
        ] = None,
        num_images: Annotated[
            int, Field(ge=1, le=MAX_TOOL_IMAGES, description="How many images")
        ] = 1,
        seed: Annotated[
            int | None, Field(ge=0, le=4294967294, description="Seed for reproducible images")
        ] = None,
        negative_prompt: Annotated[
            str | None, Field(description="What the image must not show")
        ] = None,
        width: Annotated[int | None, Field(ge=64, le=4096, description="Width in pixels")] = None,
        height: Annotated[int | None, Field(ge=64, le=4096, description="Height in pixels")] = None,
    ) -> CallToolResult:
        chosen = backend or cfg.backend
        try:
            if not chosen:
                raise ConfigError(
                    "no backend: pass backend (e.g. openai:gpt-image-1), or start the server "
                    f"with --backend or {BACKEND_ENV}"
                )
            adapter = await state.adapter(chosen)
            plan = await (await state.planner()).aplan(prompt)
            result = await agenerate(
                plan,
                adapter,
                negative_prompt=negative_prompt,
                width=width,
                height=height,
                seed=seed,
                num_images=num_images,
            )
        except LcfixError as exc:
            raise _tool_error(exc) from exc
        images = [
            ImageContent(
                type="image",
                data=base64.b64encode(image.data).decode("ascii"),
                mime_type=image.mime_type,
            )
            for image in result.images
        ]
        return _result(generation_payload(result), images)

    return server


def serve(
    config: MCPConfig | None = None,
    *,
    transport: Literal["stdio", "http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
) -> None:
    """Run the server until the client disconnects (stdio) or the process is stopped (http).

    Over HTTP the endpoint is ``http://HOST:PORT/mcp`` (streamable HTTP). The planner is
    built first, so a bad planner setting fails here rather than on the first tool call.
    """
    if transport not in ("stdio", "http"):
        raise ConfigError(f"unknown MCP transport {transport!r}; choose stdio or http")
    from lcfix.planner import get_planner

    cfg = config or MCPConfig.from_env()
    _require_mcp()
    planner = get_planner(cfg.planner, model=cfg.model, api_base=cfg.llm_api_base)
    try:
        server = build_server(cfg, planner=planner)
        if transport == "stdio":
            server.run("stdio")
        else:
            server.run("streamable-http", host=host, port=port)
    finally:
        planner.close()
