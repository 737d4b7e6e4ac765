"""``Client`` and ``AsyncClient``: the documented entry point to lcfix.

    >>> with lcfix.Client("openai:gpt-image-1") as client:
    ...     plan = client.plan("a tea cup of iced coke")
    ...     result = client.generate("a tea cup of iced coke", seed=7, out_dir="out")
    >>> result.prompt_sent, result.extra["files"]

A client holds one planner and, optionally, one backend, both built (and their settings and
credentials checked) when the client is built. ``generate`` plans the prompt (or takes a
Plan), generates on the backend, and saves the images with JSON sidecars when ``out_dir`` is
given. Prompts written in A1111 prompt-editing syntax (``[from:to:when]``) keep the schedule
their author wrote instead of being planned. The two classes are twins over shared code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from lcfix.a1111 import parse_if_edited
from lcfix.adapters.base import GenerationResult, ImageAdapter, StagingMode
from lcfix.errors import ConfigError
from lcfix.planner import Planner, PlannerKind, check_prompt
from lcfix.plans import Plan


class _ClientBase:
    """Construction, configuration and the no-I/O steps shared by both clients."""

    def __init__(
        self,
        backend: str | ImageAdapter | None = None,
        *,
        planner: PlannerKind | Planner = "auto",
        model: str | None = None,
        llm_api_base: str | None = None,
        api_base: str | None = None,
        backend_options: Mapping[str, Any] | None = None,
        cache: bool | str = True,
        a1111: bool = True,
    ) -> None:
        from lcfix.planner import get_planner

        if not isinstance(backend, str) and (backend_options or api_base):
            raise ConfigError(
                "api_base and backend_options configure a backend given by name; "
                "set them on the adapter object instead"
            )
        self._own_planner = isinstance(planner, str)
        self.planner: Planner = (
            get_planner(planner, model=model, api_base=llm_api_base, cache=cache)
            if isinstance(planner, str)
            else planner
        )
        self._own_adapter = isinstance(backend, str)
        self.adapter: ImageAdapter | None
        if isinstance(backend, str):
            from lcfix.adapters import load_adapter

            kwargs: dict[str, Any] = {"options": dict(backend_options or {})}
            if api_base is not None:
                kwargs["api_base"] = api_base
            try:
                self.adapter = load_adapter(backend, **kwargs)
            except BaseException:
                self._close_planner()
                raise
        else:
            self.adapter = backend
        self.a1111 = a1111
        self.closed = False

    def _check_prompt(self, prompt: str) -> str:
        if self.closed:
            raise ConfigError("this client is closed")
        return check_prompt(prompt.strip() if isinstance(prompt, str) else prompt)

    def _edited(self, prompt: str) -> Plan | None:
        return parse_if_edited(prompt) if self.a1111 else None

    def _backend(self) -> ImageAdapter:
        if self.closed:
            raise ConfigError("this client is closed")
        if self.adapter is None:
            raise ConfigError(
                "this client has no backend: build it with one, e.g. "
                "lcfix.Client('openai:gpt-image-1') or lcfix.Client('diffusers:MODEL')"
            )
        return self.adapter

    @staticmethod
    def _saved(result: GenerationResult, out_dir: str | Path | None) -> GenerationResult:
        if out_dir is None:
            return result
        from lcfix.outputs import save_result

        saved = save_result(result, out_dir)
        files = [str(s.path) for s in saved]
        sidecars = [str(s.sidecar) for s in saved]
        return result.model_copy(
            update={"extra": {**result.extra, "files": files, "sidecars": sidecars}}
        )

    def _close_planner(self) -> None:
        if self._own_planner:
            self.planner.close()

    def __repr__(self) -> str:
        backend = f"{self.adapter.name}:{self.adapter.model}" if self.adapter else None
        return f"{type(self).__name__}(backend={backend!r}, planner={self.planner.name!r})"


class Client(_ClientBase):
    """Plan prompts and generate images, blocking.

    ``backend`` is a backend string (``"openai:gpt-image-1"``, ``"diffusers:MODEL"``), an
    adapter object, or None for planning only. ``planner`` is ``"offline"``, ``"llm"``,
    ``"auto"`` (the LLM planner when ``model`` or ``LCFIX_LLM_MODEL`` is set) or a Planner;
    ``model``/``llm_api_base`` configure the LLM planner and ``api_base``/``backend_options``
    the backend. ``cache`` is the LLM plan cache: True, False, or a path.
    """

    def plan(self, prompt: str) -> Plan:
        """Plan one prompt."""
        prompt = self._check_prompt(prompt)
        return self._edited(prompt) or self.planner.plan(prompt)

    def generate(
        self,
        prompt: str | Plan,
        *,
        negative_prompt: str | None = None,
        width: int | None = None,
        height: int | None = None,
        seed: int | None = None,
        num_images: int = 1,
        staging: StagingMode = "auto",
        out_dir: str | Path | None = None,
    ) -> GenerationResult:
        """Plan ``prompt`` (unless it is a Plan already) and generate on the backend.

        With ``out_dir`` the images and their sidecars are saved there, and
        ``result.extra["files"]`` lists them.
        """
        from lcfix.dispatch import generate

        adapter = self._backend()
        plan = prompt if isinstance(prompt, Plan) else self.plan(prompt)
        result = generate(
            plan,
            adapter,
            negative_prompt=negative_prompt,
            width=width,
            height=height,
            seed=seed,
            num_images=num_images,
            staging=staging,
        )
        return self._saved(result, out_dir)

    def close(self) -> None:
        """Close the backend and planner this client built (not ones passed in)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._own_adapter and self.adapter is not None:
                self.adapter.close()
        finally:
            self._close_planner()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient(_ClientBase):
    """The async twin of ``Client``: ``aplan``, ``agenerate``, ``aclose``, ``async with``.

    >>> async with lcfix.AsyncClient("openai:gpt-image-1") as client:
    ...     results = await asyncio.gather(*(client.agenerate(p) for p in prompts))
    """

    async def aplan(self, prompt: str) -> Plan:
        """Plan one prompt."""
        prompt = self._check_prompt(prompt)
        return self._edited(prompt) or await self.planner.aplan(prompt)

    async def agenerate(
        self,
        prompt: str | Plan,
        *,
        negative_prompt: str | None = None,
        width: int | None = None,
        height: int | None = None,
        seed: int | None = None,
        num_images: int = 1,
        staging: StagingMode = "auto",
        out_dir: str | Path | None = None,
    ) -> GenerationResult:
        """Plan ``prompt`` (unless it is a Plan already) and generate on the backend."""
        from lcfix.dispatch import agenerate

        adapter = self._backend()
        plan = prompt if isinstance(prompt, Plan) else await self.aplan(prompt)
        result = await agenerate(
            plan,
            adapter,
            negative_prompt=negative_prompt,
            width=width,
            height=height,
            seed=seed,
            num_images=num_images,
            staging=staging,
        )
        if out_dir is None:
            return result
        return await asyncio.to_thread(self._saved, result, out_dir)

    async def aclose(self) -> None:
        """Close the backend and planner this client built (not ones passed in)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._own_adapter and self.adapter is not None:
                await self.adapter.aclose()
        finally:
            self._close_planner()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
