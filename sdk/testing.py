"""Test helpers: a fake adapter, tiny PNGs, and a contract test for adapter plugins.

    from lcfix.testing import AdapterContract

    class TestMyAdapter(AdapterContract):
        adapter_class = MyAdapter
        model = "my-model"

pytest then runs every ``test_*`` method of ``AdapterContract`` against ``MyAdapter``. Override
``backend()`` to return a context manager that mocks your API (e.g. a respx router).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from pydantic import Field

from lcfix.adapters.base import (
    AdapterOptions,
    Capabilities,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    ImageAdapter,
    SentRequest,
    parse_options,
)
from lcfix.compose import compose_plan
from lcfix.plans import ConceptPair, Plan, PlannerInfo

__all__ = ["AdapterContract", "FakeAdapter", "FakeOptions", "sample_plan", "tiny_png"]


def tiny_png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    """A valid solid-colour RGB PNG, built with zlib only."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def sample_plan(prompt: str = "a tea cup of iced coke") -> Plan:
    """The paper's example as an at-risk plan, built without any planner."""
    if prompt != "a tea cup of iced coke":
        return compose_plan(prompt, [], planner=PlannerInfo(name="test", version="0"))
    pair = ConceptPair(
        fragile="tea cup", dominant="iced coke", latent="glass", pattern="beverage-container"
    )
    return compose_plan(
        prompt,
        [pair],
        planner=PlannerInfo(name="test", version="0"),
        descriptions={"tea cup": "small ceramic cup with a handle"},
    )


class FakeOptions(AdapterOptions):
    """Options of the fake backend."""

    size: int = Field(default=8, ge=1, le=256, description="Width and height of each PNG")


class FakeAdapter:
    """An in-memory backend for tests: records every request, returns tiny PNGs.

    ``errors`` is a queue: each call raises the next one until it is empty.
    """

    name: ClassVar[str] = "fake"
    capabilities: ClassVar[Capabilities] = Capabilities(
        staging="emulated", negative_prompt=True, seed=True, max_images=64
    )
    Options: ClassVar[type[AdapterOptions]] = FakeOptions

    def __init__(
        self,
        model: str = "fake",
        *,
        options: AdapterOptions | Mapping[str, Any] | None = None,
        api_base: str | None = None,
        errors: Sequence[Exception] = (),
        revised_prompt: str | None = None,
    ) -> None:
        self.model = model
        self.options = parse_options(FakeOptions, options, adapter=self.name)
        self.api_base = api_base
        self.errors = list(errors)
        self.revised_prompt = revised_prompt
        self.requests: list[GenerationRequest] = []
        self.closed = False

    def generate(self, request: GenerationRequest) -> GenerationResult:
        self.requests.append(request)
        if self.errors:
            raise self.errors.pop(0)
        plan = request.plan
        prompt = plan.rewrites.natural if plan.at_risk else plan.prompt
        staged = plan.at_risk and request.staging in ("auto", "emulate")
        size = self.options.size  # type: ignore[attr-defined]
        images = []
        for i in range(request.num_images):
            digest = hashlib.sha256(f"{prompt}|{request.seed}|{i}".encode()).digest()
            png = tiny_png(size, size, (digest[0], digest[1], digest[2]))
            seed = None if request.seed is None else request.seed + i
            images.append(
                GeneratedImage(data=png, index=i, seed=seed, revised_prompt=self.revised_prompt)
            )
        sent = [SentRequest(kind="generate", prompt=prompt)]
        if staged:
            sent.insert(0, SentRequest(kind="stage", prompt=plan.stages[0].prompt))
        return GenerationResult(
            backend=self.name,
            model=self.model,
            plan=plan,
            images=tuple(images),
            prompt_sent=prompt,
            revised_prompt=self.revised_prompt,
            requests=tuple(sent),
            staging="emulated" if staged else "none",
            seed=request.seed,
        )

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        return self.generate(request)

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


class AdapterContract:
    """Checks that an adapter honours the lcfix adapter Protocol. Subclass it in a test module
    (the subclass name must start with ``Test``); set ``adapter_class`` and ``model``."""

    adapter_class: ClassVar[type[Any]]
    model: ClassVar[str] = "test-model"
    adapter_kwargs: ClassVar[dict[str, Any]] = {}
    entry_point: ClassVar[str | None] = None
    """The name the adapter registers under in ``lcfix.adapters``; checked when set."""
    secret: ClassVar[str | None] = None
    """A credential passed in ``adapter_kwargs`` that must never appear in results or reprs."""

    def make_adapter(self, **kwargs: Any) -> ImageAdapter:
        adapter: ImageAdapter = self.adapter_class(self.model, **{**self.adapter_kwargs, **kwargs})
        return adapter

    def backend(self) -> contextlib.AbstractContextManager[Any]:
        """A context manager that mocks the backend's API while a test generates."""
        return contextlib.nullcontext()

    def plan(self) -> Plan:
        return sample_plan()

    @contextlib.contextmanager
    def _adapter(self, **kwargs: Any) -> Iterator[ImageAdapter]:
        adapter = self.make_adapter(**kwargs)
        try:
            yield adapter
        finally:
            adapter.close()

    def _check_result(self, name: str, result: GenerationResult, n: int) -> None:
        assert isinstance(result, GenerationResult)
        assert result.backend == name
        assert result.plan == self.plan()
        assert result.prompt_sent.strip()
        assert len(result.images) == n, f"asked for {n} images, got {len(result.images)}"
        for image in result.images:
            assert image.data, "an image has no bytes"
            assert image.mime_type.startswith("image/")

    def test_satisfies_protocol(self) -> None:
        with self._adapter() as adapter:
            assert isinstance(adapter, ImageAdapter)
            assert isinstance(adapter.name, str) and adapter.name
            assert isinstance(adapter.capabilities, Capabilities)
            assert issubclass(adapter.Options, AdapterOptions)
            assert adapter.model == self.model

    def test_rejects_unknown_options(self) -> None:
        import pytest

        from lcfix.errors import ConfigError

        with pytest.raises(ConfigError, match="no_such_option"):
            self.make_adapter(options={"no_such_option": 1})

    def test_generate_returns_images(self) -> None:
        with self.backend(), self._adapter() as adapter:
            result = adapter.generate(GenerationRequest(plan=self.plan()))
            self._check_result(adapter.name, result, 1)

    def test_agenerate_returns_images(self) -> None:
        async def run() -> GenerationResult:
            adapter = self.make_adapter()
            try:
                return await adapter.agenerate(GenerationRequest(plan=self.plan()))
            finally:
                await adapter.aclose()

        with self.backend():
            result = asyncio.run(run())
        self._check_result(self.adapter_class.name, result, 1)

    def test_num_images(self) -> None:
        n = min(2, self.adapter_class.capabilities.max_images)
        with self.backend(), self._adapter() as adapter:
            result = adapter.generate(GenerationRequest(plan=self.plan(), num_images=n))
            self._check_result(adapter.name, result, n)

    def test_rewrite_is_sent_for_at_risk_plan(self) -> None:
        with self.backend(), self._adapter() as adapter:
            result = adapter.generate(GenerationRequest(plan=self.plan(), staging="off"))
        assert result.prompt_sent != self.plan().prompt, "an at-risk plan must send a rewrite"

    def test_secret_never_leaks(self) -> None:
        if not self.secret:
            return
        with self.backend(), self._adapter() as adapter:
            result = adapter.generate(GenerationRequest(plan=self.plan()))
            assert self.secret not in repr(adapter)
            dumped = result.model_dump_json(exclude={"images": {"__all__": {"data"}}})
            assert self.secret not in dumped

    def test_entry_point(self) -> None:
        if not self.entry_point:
            return
        from lcfix.adapters import get_adapter_class

        assert get_adapter_class(self.entry_point) is self.adapter_class
