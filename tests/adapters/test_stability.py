"""Stability v2beta stable-image over respx: multipart text-to-image and img2img staging."""

from __future__ import annotations

import asyncio
import base64
from typing import Any, ClassVar

import httpx
import pytest
import respx

from lcfix.adapters._http import RetryPolicy
from lcfix.adapters.base import GenerationRequest
from lcfix.adapters.stability import StabilityAdapter
from lcfix.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContentPolicyError,
    RateLimitError,
    UnsupportedError,
)
from lcfix.testing import AdapterContract, sample_plan, tiny_png
from tests.adapters.fakes import Clock

URL = "https://api.stability.ai/v2beta/stable-image/generate/sd3"
KEY = "sk-stab-0123456789"
PNG = tiny_png()
PLAN = sample_plan()


FAST = Clock().policy()


def ok(seed: int = 42, png: bytes = PNG) -> httpx.Response:
    body = {"image": base64.b64encode(png).decode(), "finish_reason": "SUCCESS", "seed": seed}
    return httpx.Response(200, json=body)


def fields(request: httpx.Request) -> dict[str, str]:
    """The text fields of a multipart request."""
    out: dict[str, str] = {}
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    for part in request.content.split(b"--" + boundary):
        head, _, body = part.partition(b"\r\n\r\n")
        if b"name=" in head and b"filename=" not in head:
            name = head.split(b'name="')[1].split(b'"')[0].decode()
            out[name] = body.rstrip(b"\r\n").decode()
    return out


def adapter(model: str = "sd3.5-large", **kw: Any) -> StabilityAdapter:
    kw.setdefault("retry", FAST)
    return StabilityAdapter(model, api_key=KEY, **kw)


class TestStabilityContract(AdapterContract):
    adapter_class = StabilityAdapter
    model = "sd3.5-large"
    adapter_kwargs: ClassVar[dict[str, Any]] = {"api_key": KEY, "retry": FAST}
    entry_point = "stability"
    secret = KEY

    def backend(self) -> respx.MockRouter:
        router = respx.mock(assert_all_mocked=True)
        router.post(URL).mock(side_effect=lambda request: ok())
        return router


def test_text_to_image_sends_rewrite_negative_and_seed(mock: respx.MockRouter) -> None:
    route = mock.post(URL).mock(return_value=ok(seed=7))
    result = adapter().generate(
        GenerationRequest(
            plan=PLAN, negative_prompt="blurry", seed=7, width=1344, height=768, staging="off"
        )
    )
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert fields(request) == {
        "prompt": PLAN.rewrites.natural,
        "negative_prompt": "blurry, glass",
        "seed": "7",
        "output_format": "png",
        "model": "sd3.5-large",
        "mode": "text-to-image",
        "aspect_ratio": "16:9",
    }
    assert result.images[0].seed == 7 and result.staging == "none"
    assert any("16:9" in w for w in result.warnings)


def test_staging_emulation_is_text_to_image_then_img2img_with_the_same_seed(
    mock: respx.MockRouter,
) -> None:
    stage_png = tiny_png(rgb=(9, 9, 9))
    route = mock.post(URL).mock(side_effect=[ok(seed=5, png=stage_png), ok(seed=5)])
    result = adapter().generate(GenerationRequest(plan=PLAN, seed=5))
    first, second = (c.request for c in route.calls)
    r = PLAN.stages[0].end
    assert fields(first)["prompt"] == "tea cup" and fields(first)["mode"] == "text-to-image"
    assert fields(first)["seed"] == fields(second)["seed"] == "5"
    f2 = fields(second)
    assert f2["mode"] == "image-to-image" and f2["prompt"] == PLAN.rewrites.natural
    assert float(f2["strength"]) == pytest.approx(1 - r)
    assert "aspect_ratio" not in f2
    assert stage_png in second.content and b'name="image"; filename="stage1.png"' in second.content
    assert result.staging == "emulated"
    assert [q.kind for q in result.requests] == ["stage", "img2img"]
    assert result.extra["strength"] == pytest.approx(1 - r)


def test_each_image_gets_its_own_pair_of_requests(mock: respx.MockRouter) -> None:
    route = mock.post(URL).mock(side_effect=lambda request: ok(seed=int(fields(request)["seed"])))
    result = adapter().generate(GenerationRequest(plan=PLAN, seed=10, num_images=2))
    seeds = [fields(c.request)["seed"] for c in route.calls]
    assert seeds == ["10", "10", "11", "11"]
    assert [i.seed for i in result.images] == [10, 11]


def test_strength_option_overrides_one_minus_r(mock: respx.MockRouter) -> None:
    route = mock.post(URL).mock(side_effect=[ok(), ok()])
    adapter(options={"strength": 0.6}).generate(GenerationRequest(plan=PLAN, seed=1))
    assert fields(route.calls[1].request)["strength"] == "0.6"


def test_content_filtered_is_a_content_policy_error(mock: respx.MockRouter) -> None:
    mock.post(URL).mock(
        return_value=httpx.Response(200, json={"image": "", "finish_reason": "CONTENT_FILTERED"})
    )
    with pytest.raises(ContentPolicyError, match="CONTENT_FILTERED"):
        adapter().generate(GenerationRequest(plan=PLAN, staging="off"))


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (
            403,
            {"name": "content_moderation", "errors": ["Your request was flagged"]},
            ContentPolicyError,
        ),
        (401, {"name": "unauthorized", "errors": ["bad key"]}, AuthenticationError),
        (400, {"name": "bad_request", "errors": ["aspect_ratio: invalid"]}, BadRequestError),
        (429, {"name": "rate_limit_exceeded", "errors": ["slow down"]}, RateLimitError),
    ],
)
def test_error_shapes(mock: respx.MockRouter, status: int, body: Any, cls: type) -> None:
    mock.post(URL).mock(return_value=httpx.Response(status, json=body))
    a = adapter(retry=RetryPolicy(attempts=1))
    with pytest.raises(cls) as info:
        a.generate(GenerationRequest(plan=PLAN, staging="off"))
    assert KEY not in str(info.value)


def test_ultra_and_core_endpoints(mock: respx.MockRouter) -> None:
    ultra = mock.post("https://api.stability.ai/v2beta/stable-image/generate/ultra").mock(
        side_effect=[ok(), ok()]
    )
    core = mock.post("https://api.stability.ai/v2beta/stable-image/generate/core").mock(
        return_value=ok()
    )
    adapter("ultra").generate(GenerationRequest(plan=PLAN, seed=1))
    assert ultra.call_count == 2 and "mode" not in fields(ultra.calls[1].request)
    result = adapter("core").generate(GenerationRequest(plan=PLAN, seed=1))
    assert core.call_count == 1 and result.staging == "none"
    assert any("image-to-image" in w for w in result.warnings)
    with pytest.raises(UnsupportedError, match="core"):
        adapter("core").generate(GenerationRequest(plan=PLAN, staging="emulate"))


def test_unknown_model_and_missing_key() -> None:
    with pytest.raises(UnsupportedError, match=r"sd3\.5-large"):
        StabilityAdapter("sdxl-turbo", api_key=KEY)
    with pytest.raises(ConfigError, match="STABILITY_API_KEY"):
        StabilityAdapter("sd3.5-large")


def test_agenerate_emulates_staging_too(mock: respx.MockRouter) -> None:
    route = mock.post(URL).mock(side_effect=[ok(), ok()])

    async def go() -> Any:
        a = adapter()
        try:
            return await a.agenerate(GenerationRequest(plan=PLAN, seed=3))
        finally:
            await a.aclose()

    result = asyncio.run(go())
    assert route.call_count == 2 and result.staging == "emulated"
