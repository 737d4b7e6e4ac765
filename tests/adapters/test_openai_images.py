"""OpenAI images over respx: every response shape of /images/generations and /images/edits."""

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
from lcfix.adapters.openai_images import OpenAIImagesAdapter
from lcfix.errors import (
    AuthenticationError,
    BackendServerError,
    ConfigError,
    ContentPolicyError,
    RateLimitError,
    UnsupportedError,
)
from lcfix.testing import AdapterContract, sample_plan, tiny_png
from tests.adapters.fakes import Clock

BASE = "https://api.openai.com/v1"
KEY = "sk-test-0123456789abcdef"
PNG = tiny_png()
B64 = base64.b64encode(PNG).decode()
PLAN = sample_plan()
CLOCK = Clock()
SLEEPS = CLOCK.sleeps
FAST = CLOCK.policy()


def ok(n: int = 1, revised: str | None = None, **extra: Any) -> httpx.Response:
    data = [{"b64_json": B64, "revised_prompt": revised, **extra} for _ in range(n)]
    usage = {"input_tokens": 50, "output_tokens": 4160, "total_tokens": 4210}
    return httpx.Response(200, json={"created": 1, "data": data, "usage": usage})


def images_reply(request: httpx.Request) -> httpx.Response:
    n = json.loads(request.content).get("n", 1) if request.content[:1] == b"{" else 1
    return ok(n)


def adapter(**kw: Any) -> OpenAIImagesAdapter:
    kw.setdefault("retry", FAST)
    return OpenAIImagesAdapter("gpt-image-1", api_key=KEY, **kw)


@pytest.fixture(autouse=True)
def _no_sleeps_yet() -> None:
    SLEEPS.clear()


class TestOpenAIContract(AdapterContract):
    adapter_class = OpenAIImagesAdapter
    model = "gpt-image-1"
    adapter_kwargs: ClassVar[dict[str, Any]] = {"api_key": KEY, "retry": FAST}
    entry_point = "openai"
    secret = KEY

    def backend(self) -> respx.MockRouter:
        router = respx.mock(assert_all_mocked=True)
        router.post(f"{BASE}/images/generations").mock(side_effect=images_reply)
        return router


def test_sends_the_natural_rewrite_and_returns_images_usage_and_revised_prompt(
    mock: respx.MockRouter,
) -> None:
    revised = "A ceramic tea cup with a handle, filled with iced coke"
    route = mock.post(f"{BASE}/images/generations").mock(return_value=ok(revised=revised))
    result = adapter(options={"quality": "high", "background": "opaque"}).generate(
        GenerationRequest(plan=PLAN, width=1536, height=1024)
    )
    sent = json.loads(route.calls.last.request.content)
    assert sent["prompt"] == PLAN.rewrites.natural != PLAN.prompt
    assert sent == {
        "model": "gpt-image-1",
        "n": 1,
        "size": "1536x1024",
        "quality": "high",
        "background": "opaque",
        "prompt": PLAN.rewrites.natural,
    }
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"
    assert result.images[0].data == PNG and result.images[0].mime_type == "image/png"
    assert result.revised_prompt == revised and result.warnings == ()
    assert result.usage is not None and result.usage["total_tokens"] == 4210
    assert result.prompt_sent == PLAN.rewrites.natural and result.staging == "none"
    assert [r.kind for r in result.requests] == ["generate"]


def test_prompt_not_at_risk_is_sent_unchanged(mock: respx.MockRouter) -> None:
    route = mock.post(f"{BASE}/images/generations").mock(return_value=ok())
    plan = sample_plan("a red bicycle")
    adapter().generate(GenerationRequest(plan=plan))
    assert json.loads(route.calls.last.request.content)["prompt"] == "a red bicycle"


def test_warns_when_the_revised_prompt_drops_a_planned_concept(mock: respx.MockRouter) -> None:
    mock.post(f"{BASE}/images/generations").mock(return_value=ok(revised="a tall glass of cola"))
    result = adapter().generate(GenerationRequest(plan=PLAN))
    assert len(result.warnings) == 1
    assert "'tea cup'" in result.warnings[0] and "'iced coke'" in result.warnings[0]


def test_url_images_are_downloaded_without_credentials(mock: respx.MockRouter) -> None:
    mock.post(f"{BASE}/images/generations").mock(
        return_value=httpx.Response(200, json={"data": [{"url": "https://cdn.test/a.png"}]})
    )
    cdn = mock.get("https://cdn.test/a.png").mock(
        return_value=httpx.Response(200, content=PNG, headers={"content-type": "image/png"})
    )
    result = adapter().generate(GenerationRequest(plan=PLAN))
    assert result.images[0].data == PNG
    assert "authorization" not in cdn.calls.last.request.headers


def test_staging_emulation_generates_stage_one_then_edits_with_the_full_prompt(
    mock: respx.MockRouter,
) -> None:
    stage_png = tiny_png(rgb=(1, 2, 3))
    gen = mock.post(f"{BASE}/images/generations").mock(
        return_value=httpx.Response(
            200, json={"data": [{"b64_json": base64.b64encode(stage_png).decode()}]}
        )
    )
    edit = mock.post(f"{BASE}/images/edits").mock(return_value=ok(2))
    result = adapter(options={"input_fidelity": "high"}).generate(
        GenerationRequest(plan=PLAN, num_images=2, staging="emulate")
    )
    order = [c.request.url.path for c in mock.calls]
    assert order == ["/v1/images/generations", "/v1/images/edits"]
    assert json.loads(gen.calls.last.request.content) == {
        "model": "gpt-image-1",
        "n": 1,
        "prompt": "tea cup",
    }
    form = edit.calls.last.request
    assert form.headers["content-type"].startswith("multipart/form-data")
    assert stage_png in form.content
    assert PLAN.rewrites.natural.encode() in form.content
    assert b'name="input_fidelity"\r\n\r\nhigh' in form.content
    assert b'name="n"\r\n\r\n2' in form.content
    assert result.staging == "emulated" and len(result.images) == 2
    assert [r.kind for r in result.requests] == ["stage", "edit"]
    assert result.requests[0].extra["stage_end"] == PLAN.stages[0].end


def test_auto_staging_emulates_only_when_the_option_says_so(mock: respx.MockRouter) -> None:
    mock.post(f"{BASE}/images/generations").mock(return_value=ok())
    edit = mock.post(f"{BASE}/images/edits").mock(return_value=ok())
    assert adapter().generate(GenerationRequest(plan=PLAN)).staging == "none"
    assert not edit.called
    staged = adapter(options={"emulate_staging": True}).generate(GenerationRequest(plan=PLAN))
    assert staged.staging == "emulated" and edit.called


def test_retries_429_honouring_retry_after(mock: respx.MockRouter) -> None:
    route = mock.post(f"{BASE}/images/generations").mock(
        side_effect=[httpx.Response(429, headers={"retry-after": "3"}, json={"error": {}}), ok()]
    )
    result = adapter().generate(GenerationRequest(plan=PLAN))
    assert route.call_count == 2 and SLEEPS == [3.0]
    assert result.requests[0].extra["attempts"] == 2


@pytest.mark.parametrize(
    ("status", "body", "cls", "text"),
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
            "content policy",
        ),
        (
            401,
            {"error": {"message": "Incorrect API key provided"}},
            AuthenticationError,
            "OPENAI_API_KEY",
        ),
        (
            429,
            {"error": {"code": "insufficient_quota", "message": "quota"}},
            RateLimitError,
            "quota",
        ),
        (500, {"error": {"message": "server error"}}, BackendServerError, "HTTP 500"),
    ],
)
def test_errors(mock: respx.MockRouter, status: int, body: Any, cls: type, text: str) -> None:
    route = mock.post(f"{BASE}/images/generations").mock(
        return_value=httpx.Response(status, json=body)
    )
    with pytest.raises(cls, match=text) as info:
        adapter(retry=RetryPolicy(sleep=SLEEPS.append, attempts=2)).generate(
            GenerationRequest(plan=PLAN)
        )
    assert KEY not in str(info.value)
    assert route.call_count == (2 if status == 500 else 1)


def test_retired_models_get_a_clear_message() -> None:
    with pytest.raises(UnsupportedError, match=r"retired.*May 12, 2026.*gpt-image-1\.5"):
        OpenAIImagesAdapter("dall-e-3", api_key=KEY)


def test_missing_key_names_the_variable_at_construction() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIImagesAdapter("gpt-image-1")


def test_key_and_base_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, mock: respx.MockRouter
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    route = mock.post("http://127.0.0.1:9/v1/images/generations").mock(return_value=ok())
    a = OpenAIImagesAdapter("gpt-image-1", api_base="http://127.0.0.1:9/v1/", retry=FAST)
    a.generate(GenerationRequest(plan=PLAN))
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(a) and KEY not in str(vars(a))


def test_bad_options_are_rejected_with_the_field_named() -> None:
    with pytest.raises(ConfigError, match="quality"):
        adapter(options={"quality": "ultra"})


def test_unsupported_sizes_map_to_the_nearest_with_a_warning(mock: respx.MockRouter) -> None:
    route = mock.post(f"{BASE}/images/generations").mock(return_value=ok())
    result = adapter().generate(GenerationRequest(plan=PLAN, width=512, height=900, seed=3))
    assert json.loads(route.calls.last.request.content)["size"] == "1024x1536"
    assert any("1024x1536" in w for w in result.warnings)
    assert any("seed" in w for w in result.warnings)


def test_negative_prompt_is_folded_into_the_prompt(mock: respx.MockRouter) -> None:
    route = mock.post(f"{BASE}/images/generations").mock(return_value=ok())
    adapter().generate(GenerationRequest(plan=PLAN, negative_prompt="straws"))
    assert json.loads(route.calls.last.request.content)["prompt"].endswith("Avoid: straws.")


def test_native_staging_is_refused() -> None:
    with pytest.raises(UnsupportedError, match="inside sampling"):
        adapter().generate(GenerationRequest(plan=PLAN, staging="native"))


def test_agenerate_matches_generate(mock: respx.MockRouter) -> None:
    route = mock.post(f"{BASE}/images/generations").mock(side_effect=[httpx.Response(503), ok()])

    async def go() -> Any:
        a = adapter()
        try:
            return await a.agenerate(GenerationRequest(plan=PLAN))
        finally:
            await a.aclose()

    result = asyncio.run(go())
    assert route.call_count == 2 and result.images[0].data == PNG and SLEEPS == [0.5]
    assert result.timings["total_s"] >= result.timings["generate_s"] >= 0
