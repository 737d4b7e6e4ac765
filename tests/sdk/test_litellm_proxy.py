"""lcfix.litellm_proxy: the rewrite hook and the lcfix/<backend> provider, run in-process."""

from __future__ import annotations

import base64
import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import litellm
import pytest
import respx
import yaml
from pydantic import SecretStr

from lcfix import litellm_proxy as lp
from lcfix.adapters.base import ImageAdapter
from lcfix.errors import ConfigError, PlannerError, RateLimitError
from lcfix.planner import BasePlanner
from lcfix.plans import Plan
from lcfix.testing import FakeAdapter, sample_plan, tiny_png

TEA = "a tea cup of iced coke"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "litellm-proxy.md"


class SamplePlanner(BasePlanner):
    name = "test"

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.prompts: list[str] = []

    def plan(self, prompt: str) -> Plan:
        self.prompts.append(prompt)
        if self.error is not None:
            raise self.error
        return sample_plan(prompt)


class Backends:
    """An adapter factory handing out FakeAdapters; records the kwargs each was built with."""

    def __init__(self, errors: list[Exception] | None = None) -> None:
        self.built: list[tuple[str, dict[str, Any], FakeAdapter]] = []
        self.errors = errors or []

    def __call__(self, backend: str, kwargs: dict[str, Any]) -> ImageAdapter:
        name, _, model = backend.partition(":")
        assert name == "fake", backend
        options = {k: v for k, v in kwargs.get("options", {}).items() if k == "size"}
        adapter = FakeAdapter(model, api_base=kwargs.get("api_base"), options=options,
                              errors=self.errors)  # fmt: skip
        self.built.append((backend, kwargs, adapter))
        return adapter

    @property
    def last(self) -> FakeAdapter:
        return self.built[-1][2]


def _data(model: str = "gpt-image-1", **extra: Any) -> dict[str, Any]:
    # The body the proxy's /images/generations endpoint hands to pre-call hooks.
    return {
        "model": model,
        "prompt": TEA,
        "messages": [{"role": "user", "content": TEA}],
        "metadata": {},
        **extra,
    }


# --- rewrite-only hook --------------------------------------------------------------------------


async def test_hook_rewrites_the_prompt_in_place() -> None:
    hook = lp.LcfixRewriteHook(planner=SamplePlanner())
    data = _data(n=1)
    out = await hook.async_pre_call_hook(None, None, data, "image_generation")
    natural = sample_plan().rewrites.natural
    assert out is data
    assert data["prompt"] == natural
    # The proxy reads the prompt back from `messages` after the hooks.
    assert data["messages"] == [{"role": "user", "content": natural}]
    assert data["metadata"]["lcfix"] == {
        "original_prompt": TEA,
        "at_risk": True,
        "fragile": ["tea cup"],
        "dialect": "natural",
        "planner": "test",
    }
    assert data["n"] == 1 and data["model"] == "gpt-image-1"


async def test_hook_with_the_offline_planner() -> None:
    hook = lp.LcfixRewriteHook(planner_kind="offline")
    data = _data("midjourney-v7")
    await hook.async_pre_call_hook(None, None, data, "image_generation")
    hook.close()
    assert data["metadata"]["lcfix"]["fragile"] == ["tea cup"]
    assert data["metadata"]["lcfix"]["planner"] == "offline"
    assert data["prompt"].startswith("tea cup::") and "--no glass" in data["prompt"]


@pytest.mark.parametrize(
    ("model", "dialect"),
    [
        ("midjourney-v7", "weighted"),
        ("my-niji-6", "weighted"),
        ("sd-webui/sdxl", "a1111"),
        ("dall-e-3", "natural"),
        ("vertex_ai/imagen-4.0-generate-001", "natural"),
    ],
)
async def test_hook_picks_the_dialect_from_the_model(model: str, dialect: str) -> None:
    data = _data(model)
    await lp.LcfixRewriteHook(planner=SamplePlanner()).async_pre_call_hook(
        None, None, data, "image_generation"
    )
    assert data["prompt"] == getattr(sample_plan().rewrites, dialect)
    assert lp.dialect_for_model(model) == dialect


async def test_hook_dialect_rules_and_request_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LCFIX_PROXY_DIALECTS", "house-*=a1111")
    hook = lp.LcfixRewriteHook(planner=SamplePlanner(), dialects={"gw/*": "weighted"})
    plan = sample_plan()
    custom, env, forced = (
        _data("gw/flux"),
        _data("house-xl"),
        _data("dall-e-3", lcfix_dialect="a1111"),
    )
    for data in (custom, env, forced):
        await hook.async_pre_call_hook(None, None, data, "aimage_generation")
    assert custom["prompt"] == plan.rewrites.weighted
    assert env["prompt"] == plan.rewrites.a1111
    assert forced["prompt"] == plan.rewrites.a1111 and "lcfix_dialect" not in forced
    off = _data(lcfix_rewrite=False)
    await hook.async_pre_call_hook(None, None, off, "image_generation")
    assert off["prompt"] == TEA and "lcfix_rewrite" not in off
    with pytest.raises(ValueError, match="lcfix_dialect must be one of"):
        await hook.async_pre_call_hook(None, None, _data(lcfix_dialect="x"), "image_generation")
    monkeypatch.setenv("LCFIX_PROXY_DIALECTS", "no-equals-sign")
    with pytest.raises(ConfigError, match="PATTERN=DIALECT"):
        lp.LcfixRewriteHook(planner=SamplePlanner())


async def test_hook_leaves_other_calls_alone() -> None:
    planner = SamplePlanner()
    hook = lp.LcfixRewriteHook(planner=planner)
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": TEA}]}
    await hook.async_pre_call_hook(None, None, chat, "acompletion")
    own = _data("lcfix-gpt-image-1", lcfix_staging="off")
    await hook.async_pre_call_hook(None, None, own, "image_generation")
    assert chat["messages"][0]["content"] == TEA
    assert own["prompt"] == TEA and own["lcfix_staging"] == "off"
    assert planner.prompts == []


async def test_hook_fails_open_or_closed() -> None:
    failing = SamplePlanner(error=PlannerError("LLM down"))
    data = _data()
    await lp.LcfixRewriteHook(planner=failing).async_pre_call_hook(
        None, None, data, "image_generation"
    )
    assert data["prompt"] == TEA and "lcfix" not in data["metadata"]
    closed = lp.LcfixRewriteHook(planner=failing, fail_open=False)
    with pytest.raises(PlannerError, match="LLM down"):
        await closed.async_pre_call_hook(None, None, _data(), "image_generation")


def test_hook_is_defined_on_the_leaf_class() -> None:
    # litellm's proxy only calls async_pre_call_hook when the class itself defines it.
    assert "async_pre_call_hook" in vars(lp.LcfixRewriteHook)
    assert isinstance(lp.rewrite_hook, litellm.integrations.custom_logger.CustomLogger)


# --- full-plan provider -------------------------------------------------------------------------


@pytest.fixture
def backends() -> Iterator[Backends]:
    saved = list(litellm.custom_provider_map)
    made = Backends()
    lp.register(lp.LcfixImageProvider(planner=SamplePlanner(), adapter_factory=made))
    yield made
    litellm.custom_provider_map = saved


def test_provider_runs_the_whole_plan(backends: Backends) -> None:
    response = litellm.image_generation(
        model="lcfix/fake:tiny", prompt=TEA, n=2, size="512x768", seed=3, quality="high",
        api_key="sk-secret-123", api_base="http://127.0.0.1:9/v1",
    )  # fmt: skip
    backend, kwargs, adapter = backends.built[-1]
    assert backend == "fake:tiny"
    assert isinstance(kwargs["api_key"], SecretStr)
    assert kwargs["api_key"].get_secret_value() == "sk-secret-123"
    assert kwargs["api_base"] == "http://127.0.0.1:9/v1"
    assert kwargs["options"] == {"quality": "high"}
    request = adapter.requests[-1]
    assert request.plan == sample_plan()
    assert (request.num_images, request.width, request.height, request.seed) == (2, 512, 768, 3)
    assert request.staging == "auto"
    assert len(response.data) == 2
    for item in response.data:
        assert base64.b64decode(item.b64_json).startswith(b"\x89PNG")
        assert item.revised_prompt == sample_plan().rewrites.natural
    lcfix_info = response._hidden_params["lcfix"]
    assert lcfix_info["staging"] == "emulated" and lcfix_info["upstream_calls"] == 2
    assert "sk-secret-123" not in response.model_dump_json()


async def test_provider_async_with_request_switches(backends: Backends) -> None:
    response = await litellm.aimage_generation(
        model="lcfix/fake:tiny", prompt=TEA, extra_body={"lcfix_staging": "off", "seed": 9}
    )
    request = backends.last.requests[-1]
    assert request.staging == "off" and request.seed == 9
    assert response._hidden_params["lcfix"]["staging"] == "none"
    assert len(response.data) == 1
    # The same backend, endpoint and key reuse one adapter (its connection pool).
    await litellm.aimage_generation(model="lcfix/fake:tiny", prompt=TEA)
    assert len(backends.built) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"size": "huge"}, litellm.BadRequestError, "WIDTHxHEIGHT"),
        ({"lcfix_staging": "sometimes"}, litellm.BadRequestError, "lcfix_staging"),
        ({"n": 500}, litellm.BadRequestError, "num_images"),
    ],
)
def test_provider_rejects_bad_requests(
    backends: Backends, kwargs: dict[str, Any], error: type[Exception], needle: str
) -> None:
    with pytest.raises(error, match=needle):
        litellm.image_generation(model="lcfix/fake:tiny", prompt=TEA, **kwargs)


def test_provider_maps_backend_errors(backends: Backends) -> None:
    backends.errors.append(RateLimitError("slow down", retry_after=2))
    with pytest.raises(litellm.RateLimitError, match="slow down"):
        litellm.image_generation(model="lcfix/fake:tiny", prompt=TEA)
    # The next request goes through.
    assert len(litellm.image_generation(model="lcfix/fake:tiny", prompt=TEA).data) == 1


def test_provider_with_the_openai_adapter_and_offline_planner() -> None:
    saved = list(litellm.custom_provider_map)
    provider = lp.register(lp.LcfixImageProvider(planner_kind="offline"))
    png = base64.b64encode(tiny_png()).decode()
    try:
        with respx.mock(assert_all_mocked=True, assert_all_called=True) as mock:
            route = mock.post("https://images.test/v1/images/generations").respond(
                200, json={"created": 1, "data": [{"b64_json": png}]}
            )
            response = litellm.image_generation(
                model="lcfix/openai:gpt-image-1", prompt=TEA, size="1024x1024", quality="high",
                user="u-1", style="vivid", api_key="sk-secret-456",
                api_base="https://images.test/v1",
            )  # fmt: skip
    finally:
        provider.close()
        litellm.custom_provider_map = saved
    sent = json.loads(route.calls.last.request.content)
    assert route.calls.last.request.headers["Authorization"] == "Bearer sk-secret-456"
    assert "tea cup" in sent["prompt"] and "not a glass" in sent["prompt"]
    # size/quality/user reach OpenAI; style, which the adapter has no option for, is dropped.
    assert {k: sent.get(k) for k in ("model", "size", "quality", "user", "style")} == {
        "model": "gpt-image-1", "size": "1024x1024", "quality": "high", "user": "u-1",
        "style": None,
    }  # fmt: skip
    assert base64.b64decode(response.data[0].b64_json) == tiny_png()
    assert response.data[0].revised_prompt == sent["prompt"]
    assert "sk-secret-456" not in response.model_dump_json()


# --- the documented config.yaml -----------------------------------------------------------------


def _doc_config() -> dict[str, Any]:
    text = DOCS.read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S) if "model_list" in b)
    return dict(yaml.safe_load(block))


def _resolve(path: str) -> Any:
    module, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module), attr)


async def test_documented_config_runs_through_a_router(backends: Backends) -> None:
    config = _doc_config()
    settings = config["litellm_settings"]
    assert isinstance(_resolve(settings["callbacks"]), lp.LcfixRewriteHook)
    (entry,) = settings["custom_provider_map"]
    assert entry["provider"] == lp.PROVIDER
    assert isinstance(_resolve(entry["custom_handler"]), lp.LcfixImageProvider)
    # The proxy builds a Router from model_list; the lcfix deployments must route to the
    # provider with their lcfix_* settings (api keys replaced: no environment here).
    model_list = []
    for deployment in config["model_list"]:
        params = dict(deployment["litellm_params"])
        if not params["model"].startswith("lcfix/"):
            continue
        params["model"] = "lcfix/fake:" + params["model"].split(":", 1)[1]
        params["api_key"] = "sk-test"
        model_list.append({"model_name": deployment["model_name"], "litellm_params": params})
    assert [m["model_name"] for m in model_list] == ["lcfix-gpt-image-1", "lcfix-sd3.5-large"]
    router = litellm.Router(model_list=model_list, num_retries=0)
    response = await router.aimage_generation(model="lcfix-gpt-image-1", prompt=TEA)
    assert len(response.data) == 1
    request = backends.last.requests[-1]
    assert request.staging == "emulate"  # from the deployment's lcfix_staging
    assert backends.built[-1][0] == "fake:gpt-image-1"
