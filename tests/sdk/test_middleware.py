from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lcfix.errors import ConfigError, UnsupportedError
from lcfix.middleware import WrappedClient, WrappedPipeline, intercept, plan_of, wrap
from tests.sdk.fakes import FakeImagesServer, FakePlanner

TEA = "a tea cup of iced coke"
FOX = "a red fox in the snow"  # FakePlanner: not at risk


def _url(srv: FakeImagesServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/v1"


# --- any callable ----------------------------------------------------------------------


def test_intercept_rewrites_keyword_and_positional_prompts() -> None:
    planner = FakePlanner()
    seen: list[str] = []

    @intercept(prompt_arg="text", planner=planner)
    def draw(text: str, steps: int = 30) -> dict[str, Any]:
        seen.append(text)
        return {"text": text, "steps": steps}

    out = draw(TEA, steps=5)
    assert type(out) is dict and out["steps"] == 5
    plan = plan_of(out)
    assert plan is not None and plan.at_risk
    assert seen[-1] == plan.rewrites.natural != TEA
    draw(text=TEA)
    assert seen[-1] == plan.rewrites.natural
    assert draw.__name__ == "draw"  # functools.wraps keeps the identity


def test_intercept_leaves_safe_prompts_and_off_mode_alone() -> None:
    planner = FakePlanner()
    fn = intercept(lambda prompt: prompt, planner=planner)
    assert fn(FOX) == FOX
    off = intercept(lambda prompt: prompt, planner=planner, mode="off")
    calls = planner.calls
    assert off(TEA) == TEA and planner.calls == calls  # off: not even planned


def test_a1111_prompts_keep_their_schedule_and_loose_brackets_still_work() -> None:
    planner = FakePlanner()
    fn = intercept(lambda prompt: prompt, planner=planner)
    out = fn("[tea cup:a tea cup of iced coke:0.3]")
    plan = plan_of(out)
    assert plan is not None and plan.planner.name == "a1111" and planner.calls == 0
    assert "[" not in out  # the natural rewrite of the final text
    assert fn("a tea cup [photo: iced coke]") != ""  # not valid syntax: planned as written
    assert planner.calls == 1


def test_intercept_a1111_dialect_stages_in_stage_mode() -> None:
    fn = intercept(lambda prompt: prompt, planner=FakePlanner(), mode="stage", dialect="a1111")
    assert fn(TEA).startswith("[")


async def test_intercept_async_function() -> None:
    @intercept(planner=FakePlanner())
    async def draw(prompt: str) -> list[str]:
        await asyncio.sleep(0)
        return [prompt]

    out = await draw(TEA)
    assert out != [TEA] and plan_of(out) is not None


def test_plan_of_unknown_object_is_none() -> None:
    assert plan_of(object()) is None and plan_of({"a": 1}) is None


def test_wrap_rejects_what_it_cannot_wrap() -> None:
    with pytest.raises(UnsupportedError, match="cannot wrap int"):
        wrap(3)
    with pytest.raises(ConfigError, match="wrap mode"):
        wrap(lambda prompt: prompt, mode="sometimes")  # type: ignore[arg-type]


def test_importing_submodules_never_shadows_the_public_functions() -> None:
    import lcfix.middleware
    import lcfix.plans

    assert callable(lcfix.wrap) and callable(lcfix.plan)
    assert lcfix.wrap(lambda prompt: prompt, planner=FakePlanner())(FOX) == FOX
    assert lcfix.middleware.wrap is lcfix.wrap


# --- OpenAI-style clients --------------------------------------------------------------


def test_openai_client_returns_its_own_types(server: FakeImagesServer) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key="sk-test", base_url=_url(server), max_retries=0)
    plain = client.images.generate(model="gpt-image-1", prompt=TEA)
    before = dict(vars(client)), dict(vars(client.images)), client.images.generate
    wrapped = wrap(client, planner=FakePlanner())
    assert isinstance(wrapped, WrappedClient) and wrapped.wrapped is client

    fixed = wrapped.images.generate(model="gpt-image-1", prompt=TEA)
    assert type(fixed) is type(plain)
    assert type(fixed.data[0]) is type(plain.data[0])
    plan = plan_of(fixed)
    assert plan is not None and plan_of(plain) is None
    assert server.prompts == {TEA: 1, plan.rewrites.natural: 1}
    assert "_lcfix_plan" not in fixed.model_dump()
    # Nothing of the user's client changed; other attributes pass through.
    assert (dict(vars(client)), dict(vars(client.images)), client.images.generate) == before
    assert wrapped.base_url == client.base_url
    with wrapped as inside:
        assert inside is wrapped
    assert isinstance(wrapped.with_options(timeout=5), WrappedClient)


async def test_async_openai_client(server: FakeImagesServer) -> None:
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(api_key="sk-test", base_url=_url(server), max_retries=0)
    wrapped = wrap(client, planner=FakePlanner())
    plain = await client.images.generate(model="gpt-image-1", prompt=TEA)
    fixed = await wrapped.images.generate(model="gpt-image-1", prompt=TEA)
    assert type(fixed) is type(plain)
    assert plan_of(fixed) is not None
    await client.close()


# --- litellm ---------------------------------------------------------------------------


def test_litellm_image_generation(server: FakeImagesServer) -> None:
    litellm = pytest.importorskip("litellm")
    kw = {
        "model": "openai/gpt-image-1",
        "api_base": _url(server),
        "api_key": "sk-test",
        "max_retries": 0,
    }
    plain = litellm.image_generation(prompt=TEA, **kw)
    fn = wrap(litellm.image_generation, planner=FakePlanner())
    fixed = fn(prompt=TEA, **kw)
    assert type(fixed) is type(plain)
    plan = plan_of(fixed)
    assert plan is not None and server.prompts[plan.rewrites.natural] == 1
    module = wrap(litellm, planner=FakePlanner())
    again = module.image_generation(prompt=TEA, **kw)
    assert type(again) is type(plain) and server.prompts[plan.rewrites.natural] == 2
    assert module.completion is litellm.completion  # the rest of litellm passes through


# --- diffusers pipelines ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> Any:
    pytest.importorskip("diffusers")
    from lcfix.adapters._tiny import tiny_sd

    return tiny_sd("ddim")


def _run(pipe: Any, **kw: Any) -> Any:
    import torch

    return pipe(
        num_inference_steps=2,
        guidance_scale=5.0,
        output_type="latent",
        generator=torch.Generator().manual_seed(3),
        **kw,
    )


def test_pipeline_runs_staged_and_returns_its_own_type(tiny: Any) -> None:
    import torch

    from lcfix.adapters.staging import StagingCallback

    planner = FakePlanner()
    wrapped = wrap(tiny, planner=planner)
    assert isinstance(wrapped, WrappedPipeline)
    assert wrapped.to("cpu") is wrapped
    plain = _run(tiny, prompt=TEA)
    fixed = _run(wrapped, prompt=TEA)
    assert type(fixed) is type(plain)
    plan = plan_of(fixed)
    assert plan is not None and len(plan.stages) == 2
    # The same as staging by hand with lcfix's callback.
    cb = StagingCallback.from_plan(tiny, plan)
    by_hand = _run(tiny, **cb.pipeline_inputs(1), callback_on_step_end=cb)
    assert torch.equal(fixed.images, by_hand.images)
    assert not torch.equal(fixed.images, plain.images)


def test_pipeline_keeps_user_callbacks_and_passes_kwargs(tiny: Any) -> None:
    steps: list[int] = []

    def mine(pipe: Any, i: int, t: Any, kw: dict[str, Any]) -> dict[str, Any]:
        steps.append(i)
        assert "latents" in kw
        return kw

    wrapped = wrap(tiny, planner=FakePlanner())
    out = _run(
        wrapped,
        prompt=TEA,
        callback_on_step_end=mine,
        num_images_per_prompt=2,
        negative_prompt="blurry",
    )
    assert steps == [0, 1]
    assert out.images.shape[0] == 2


def test_pipeline_rewrite_and_off_modes(tiny: Any) -> None:
    import torch

    rewritten = _run(wrap(tiny, planner=FakePlanner(), mode="rewrite"), prompt=TEA)
    plan = plan_of(rewritten)
    assert plan is not None
    expected = _run(tiny, prompt=plan.rewrites.natural)
    assert torch.equal(rewritten.images, expected.images)
    planner = FakePlanner()
    off = _run(wrap(tiny, planner=planner, mode="off"), prompt=TEA)
    assert planner.calls == 0 and plan_of(off) is None
    with pytest.warns(UserWarning, match="batch"):
        _run(wrap(tiny, planner=FakePlanner()), prompt=[TEA, FOX])
