from __future__ import annotations

import json
from pathlib import Path

import pytest

import lcfix
from lcfix.client import AsyncClient, Client
from lcfix.errors import ConfigError, InputError
from lcfix.testing import FakeAdapter
from tests.sdk.fakes import FakeImagesServer, FakePlanner

TEA = "a tea cup of iced coke"


def test_exported_from_the_package() -> None:
    assert lcfix.Client is Client and lcfix.AsyncClient is AsyncClient


def test_plan_and_generate_with_an_adapter(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    with Client(adapter, planner=FakePlanner()) as client:
        plan = client.plan(TEA)
        assert plan.at_risk
        result = client.generate(TEA, seed=7, num_images=2, out_dir=tmp_path)
    assert result.plan == plan and result.seed == 7 and len(result.images) == 2
    request = adapter.requests[-1]
    assert request.plan == plan and request.seed == 7 and request.staging == "auto"
    files = [Path(f) for f in result.extra["files"]]
    assert len(files) == 2 and all(f.exists() and f.parent == tmp_path for f in files)
    side = json.loads(Path(result.extra["sidecars"][0]).read_text())
    assert side["plan"]["prompt"] == TEA and side["seed"] == 7
    assert not adapter.closed  # a passed-in adapter belongs to the caller


def test_generate_takes_a_plan_and_options() -> None:
    adapter = FakeAdapter()
    client = Client(adapter, planner=FakePlanner())
    plan = client.plan(TEA)
    client.generate(plan, negative_prompt="blurry", width=64, height=32, staging="off")
    req = adapter.requests[-1]
    assert (req.negative_prompt, req.width, req.height, req.staging) == ("blurry", 64, 32, "off")
    with pytest.raises(InputError, match="num_images"):
        client.generate(plan, num_images=0)


def test_a1111_prompts_keep_their_schedule() -> None:
    planner = FakePlanner()
    client = Client(planner=planner)
    plan = client.plan("[tea cup:a tea cup of iced coke:0.3]")
    assert plan.planner.name == "a1111" and plan.switch_points == [0.3] and planner.calls == 0
    raw = Client(planner=planner, a1111=False).plan("[tea cup:a tea cup of iced coke:0.3]")
    assert raw.planner.name == "fake"


def test_errors_say_what_to_do() -> None:
    client = Client(planner=FakePlanner())
    with pytest.raises(ConfigError, match="no backend"):
        client.generate(TEA)
    with pytest.raises(InputError, match="empty prompt"):
        client.plan("  ")
    client.close()
    with pytest.raises(ConfigError, match="closed"):
        client.plan(TEA)
    with pytest.raises(ConfigError, match="adapter object"):
        Client(FakeAdapter(), api_base="http://x")


def test_backend_by_name_checks_credentials_when_built() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        Client("openai:gpt-image-1", planner=FakePlanner())


def test_backend_by_name_end_to_end(
    server: FakeImagesServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-client-key")
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    with Client("openai:gpt-image-1", planner=FakePlanner(), api_base=url) as client:
        result = client.generate(TEA, out_dir=tmp_path)
        adapter = client.adapter
    assert result.backend == "openai" and result.prompt_sent == result.plan.rewrites.natural
    assert server.prompts == {result.plan.rewrites.natural: 1}
    assert getattr(adapter, "_sync", None) is None  # closed with the client
    for f in tmp_path.iterdir():
        assert b"sk-test-client-key" not in f.read_bytes()


async def test_async_client(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    async with AsyncClient(adapter, planner=FakePlanner()) as client:
        plan = await client.aplan(TEA)
        result = await client.agenerate(TEA, seed=3, out_dir=tmp_path)
        again = await client.agenerate(plan)
    assert result.plan == plan == again.plan and result.extra["files"]
    assert [r.seed for r in adapter.requests] == [3, None]
    assert client.closed
    with pytest.raises(ConfigError, match="closed"):
        await client.aplan(TEA)


def test_default_planner_is_offline_without_a_model() -> None:
    pytest.importorskip("lcfix.offline")
    with Client() as client:
        assert client.planner.name == "offline"
        assert client.plan(TEA).at_risk
