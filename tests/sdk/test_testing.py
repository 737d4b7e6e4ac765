"""lcfix.testing: the fake adapter, tiny PNGs, and the contract (run on the docs' plugin)."""

from __future__ import annotations

import asyncio
import inspect
import re
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from lcfix.adapters import ImageAdapter, get_adapter_class
from lcfix.adapters.base import GenerationRequest
from lcfix.errors import ConfigError, RateLimitError
from lcfix.testing import AdapterContract, FakeAdapter, sample_plan, tiny_png

DOC = Path(__file__).parents[2] / "docs" / "writing-an-adapter.md"


def test_tiny_png_is_a_valid_png() -> None:
    png = tiny_png(3, 2, (10, 20, 30))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
    idat = png.index(b"IDAT")
    length = int.from_bytes(png[idat - 4 : idat], "big")
    raw = zlib.decompress(png[idat + 4 : idat + 4 + length])
    assert raw == (b"\x00" + bytes([10, 20, 30]) * 3) * 2
    pil = pytest.importorskip("PIL.Image")
    import io

    with pil.open(io.BytesIO(png)) as image:
        image.load()
        assert image.size == (3, 2) and image.getpixel((0, 0)) == (10, 20, 30)


def test_fake_adapter_records_requests_and_replays_errors() -> None:
    fake = FakeAdapter(errors=[RateLimitError("slow", retry_after=1)], options={"size": 4})
    request = GenerationRequest(plan=sample_plan(), seed=2, num_images=3)
    with pytest.raises(RateLimitError):
        fake.generate(request)
    result = fake.generate(request)
    assert fake.requests == [request, request]
    assert [i.seed for i in result.images] == [2, 3, 4]
    assert len({i.data for i in result.images}) == 3  # distinct images per index
    assert result.prompt_sent == sample_plan().rewrites.natural
    assert asyncio.run(fake.agenerate(request)).images[0].data == result.images[0].data
    with pytest.raises(ConfigError, match="colour"):
        FakeAdapter(options={"colour": "red"})


class TestFakeAdapterContract(AdapterContract):
    adapter_class = FakeAdapter
    model = "fake"


class _Sloppy(FakeAdapter):
    """Accepts anything as options: the contract must catch it."""

    def __init__(self, model: str = "fake", **kwargs: Any) -> None:
        kwargs.pop("options", None)
        super().__init__(model, **kwargs)


def test_the_contract_fails_for_an_adapter_that_breaks_it() -> None:
    class Check(AdapterContract):
        adapter_class = _Sloppy
        model = "fake"

    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        Check().test_rejects_unknown_options()


def _blocks(text: str) -> dict[str, str]:
    """The documentation's python code blocks, keyed by their first-line file name."""
    out = {}
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        first = block.splitlines()[0]
        if first.startswith("# ") and first.endswith(".py"):
            out[first[2:]] = block
    return out


def test_the_documented_plugin_passes_the_contract_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = _blocks(DOC.read_text(encoding="utf-8"))
    assert set(blocks) == {"lcfix_tinyserver.py", "test_tinyserver.py"}
    for name, code in blocks.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    # An installed distribution, as pip would leave it, declaring the entry point.
    dist = tmp_path / "lcfix_tinyserver-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lcfix-tinyserver\nVersion: 0.1.0\n"
    )
    toml = re.search(
        r'```toml\n\[project.entry-points."lcfix.adapters"\]\n(.*?)```',
        DOC.read_text(encoding="utf-8"),
        flags=re.S,
    )
    assert toml is not None
    # TOML quotes the value; entry_points.txt (INI) does not.
    (dist / "entry_points.txt").write_text("[lcfix.adapters]\n" + toml.group(1).replace('"', ""))
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in ("lcfix_tinyserver", "test_tinyserver"):
        monkeypatch.delitem(sys.modules, mod, raising=False)

    import test_tinyserver  # type: ignore[import-not-found]

    cls = get_adapter_class("tinyserver")
    assert cls.__module__ == "lcfix_tinyserver"
    contract = test_tinyserver.TestTinyServer()
    checks = [name for name, _ in inspect.getmembers(AdapterContract) if name.startswith("test_")]
    assert len(checks) >= 7
    for name in checks:
        getattr(contract, name)()  # each raises on a broken contract
    adapter = cls("sdxl")
    try:
        assert isinstance(adapter, ImageAdapter)
    finally:
        adapter.close()
