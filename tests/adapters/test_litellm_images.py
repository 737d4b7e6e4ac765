"""litellm images over respx (DISABLE_AIOHTTP_TRANSPORT=True lets respx see async calls too)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, ClassVar

import httpx
import pytest
import respx

from lcfix.adapters._http import RetryPolicy
from lcfix.adapters.base import GenerationRequest
from lcfix.adapters.litellm_images import LiteLLMImagesAdapter, dialect_for, takes_sd_params
from lcfix.errors import (
    AuthenticationError,
    BackendServerError,
    ConfigError,
    ContentPolicyError,
    UnsupportedError,
)
from lcfix.testing import AdapterContract, sample_plan, tiny_png
from tests.adapters.fakes import Clock

OPENAI = "https://api.openai.com/v1/images/generations"
STABILITY = "https://api.stability.ai/v2beta/stable-image/generate/sd3"
KEY = "sk-litellm-0123456789"
PNG = tiny_png()
B64 = base64.b64encode(PNG).decode()
PLAN = sample_plan()
CLOCK = Clock()
SLEEPS = CLOCK.sleeps
FAST = CLOCK.policy()


def ok(revised: str | None = None, n: int = 1) -> httpx.Response:
    data = [{"b64_json": B64, "revised_prompt": revised} for _ in range(n)]
    return httpx.Response(200, json={"created": 1, "data": data})


def adapter(model: str = "openai/gpt-image-1", **kw: Any) -> LiteLLMImagesAdapter:
    kw.setdefault("retry", FAST)
    return LiteLLMImagesAdapter(model, api_key=KEY, **kw)


@pytest.fixture(autouse=True)
def _no_sleeps_yet() -> None:
    SLEEPS.clear()


class TestLiteLLMContract(AdapterContract):
    adapter_class = LiteLLMImagesAdapter
    model = "openai/gpt-image-1"
    adapter_kwargs: ClassVar[dict[str, Any]] = {"api_key": KEY, "retry": FAST}
    entry_point = "litellm"
    secret = KEY

    def backend(self) -> respx.MockRouter:
        router = respx.mock(assert_all_mocked=True)
        router.post(OPENAI).mock(
            side_effect=lambda request: ok(n=json.loads(request.content).get("n", 1))
        )
        return router


@pytest.mark.parametrize(
    ("model", "dialect", "sd"),
    [
        ("openai/gpt-image-1", "natural", False),
        ("gpt-image-1", "natural", False),
        ("vertex_ai/imagen-4.0-generate-001", "natural", False),
        ("stability/sd3.5-large", "natural", True),
        ("bedrock/stability.sd3-5-large-v1:0", "natural", True),
        ("bedrock/amazon.nova-canvas-v1:0", "natural", False),
        ("my_midjourney/imagine", "weighted", False),
        ("sdwebui/sdxl", "a1111", False),
    ],
)
def test_dialect_per_provider(model: str, dialect: str, sd: bool) -> None:
    assert dialect_for(model) == dialect and takes_sd_params(model) is sd


def test_openai_through_litellm_sends_the_rewrite(mock: respx.MockRouter) -> None:
    route = mock.post(OPENAI).mock(return_value=ok(revised="a glass of soda"))
    result = adapter(options={"size": "1024x1024", "quality": "high"}).generate(
        GenerationRequest(plan=PLAN)
    )
    request = route.calls.last.request
    body = json.loads(request.content)
    assert body["prompt"] == PLAN.rewrites.natural
    assert body["model"] == "gpt-image-1" and body["size"] == "1024x1024"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert result.images[0].data == PNG and result.revised_prompt == "a glass of soda"
    assert len(result.warnings) == 1 and "'tea cup'" in result.warnings[0]
    assert KEY not in result.model_dump_json(exclude={"images"})


def test_stability_through_litellm_gets_negative_prompt_with_latents_and_seed(
    mock: respx.MockRouter,
) -> None:
    route = mock.post(STABILITY).mock(
        return_value=httpx.Response(200, json={"image": B64, "finish_reason": "SUCCESS", "seed": 5})
    )
    result = adapter("stability/sd3.5-large").generate(
        GenerationRequest(plan=PLAN, seed=5, negative_prompt="blurry")
    )
    content = route.calls.last.request.content
    assert b"blurry, glass" in content and PLAN.rewrites.natural.encode() in content
    assert b"5" in content and result.images[0].data == PNG
    assert result.requests[0].extra["negative_prompt"] == "blurry, glass"


def test_a1111_backed_provider_gets_prompt_editing_syntax(mock: respx.MockRouter) -> None:
    route = mock.post("http://127.0.0.1:7860/v1/images/generations").mock(return_value=ok())
    a = adapter("openai/sdxl", api_base="http://127.0.0.1:7860/v1", options={"dialect": "a1111"})
    result = a.generate(GenerationRequest(plan=PLAN))
    assert json.loads(route.calls.last.request.content)["prompt"] == PLAN.rewrites.a1111
    assert result.staging == "native"
    off = a.generate(GenerationRequest(plan=PLAN, staging="off"))
    assert off.prompt_sent == PLAN.rewrites.natural and off.staging == "none"


def test_retries_are_lcfix_own_and_honour_retry_after(mock: respx.MockRouter) -> None:
    route = mock.post(OPENAI).mock(
        side_effect=[
            httpx.Response(429, headers={"retry-after": "2"}, json={"error": {"message": "slow"}}),
            httpx.Response(503, json={"error": {"message": "busy"}}),
            ok(),
        ]
    )
    adapter().generate(GenerationRequest(plan=PLAN))
    assert route.call_count == 3  # litellm's own retries are off: one HTTP call per attempt
    assert SLEEPS == [2.0, 1.0]  # Retry-After from the 429, then back-off after the 503


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (
            400,
            {
                "error": {
                    "code": "content_policy_violation",
                    "message": "Your request was rejected as a result of our safety system.",
                }
            },
            ContentPolicyError,
        ),
        (401, {"error": {"message": "Incorrect API key provided"}}, AuthenticationError),
        (500, {"error": {"message": "oops"}}, BackendServerError),
    ],
)
def test_litellm_errors_become_lcfix_errors(
    mock: respx.MockRouter, status: int, body: Any, cls: type
) -> None:
    mock.post(OPENAI).mock(return_value=httpx.Response(status, json=body))
    with pytest.raises(cls) as info:
        adapter(retry=RetryPolicy(attempts=1)).generate(GenerationRequest(plan=PLAN))
    assert KEY not in str(info.value)
    assert info.value.__cause__ is not None


def test_url_images_are_downloaded(mock: respx.MockRouter) -> None:
    mock.post(OPENAI).mock(
        return_value=httpx.Response(
            200, json={"created": 1, "data": [{"url": "https://cdn.test/a"}]}
        )
    )
    mock.get("https://cdn.test/a").mock(
        return_value=httpx.Response(200, content=PNG, headers={"content-type": "image/png"})
    )
    assert adapter().generate(GenerationRequest(plan=PLAN)).images[0].data == PNG


def test_emulated_staging_is_refused_and_options_are_checked() -> None:
    with pytest.raises(UnsupportedError, match="staging 'emulate'"):
        adapter().generate(GenerationRequest(plan=PLAN, staging="emulate"))
    with pytest.raises(ConfigError, match="response_format"):
        adapter(options={"response_format": "png"})


def test_aimage_generation(mock: respx.MockRouter) -> None:
    route = mock.post(OPENAI).mock(return_value=ok())

    async def go() -> Any:
        a = adapter()
        try:
            return await a.agenerate(GenerationRequest(plan=PLAN))
        finally:
            await a.aclose()

    result = asyncio.run(go())
    assert route.called and result.images[0].data == PNG
