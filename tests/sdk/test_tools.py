"""lcfix.tools: strict OpenAI tool definitions, the call handler, and the documented chat loop."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from lcfix import tools
from lcfix.adapters.base import GenerationRequest, GenerationResult
from lcfix.errors import RateLimitError
from lcfix.plans import Plan
from lcfix.testing import FakeAdapter, sample_plan

DOCS = Path(__file__).resolve().parents[2] / "docs" / "chat-tools.md"


class FakeClient:
    """Stands in for lcfix.Client: plans with the sample plan, draws with FakeAdapter."""

    def __init__(self, adapter: FakeAdapter | None = None) -> None:
        self.adapter = adapter or FakeAdapter()
        self.generate_kwargs: list[dict[str, Any]] = []

    def plan(self, prompt: str) -> Plan:
        return sample_plan(prompt)

    def generate(self, prompt: str, **kwargs: Any) -> GenerationResult:
        self.generate_kwargs.append(kwargs)
        return self.adapter.generate(GenerationRequest(plan=self.plan(prompt), **kwargs))


class AsyncFakeClient(FakeClient):
    async def aplan(self, prompt: str) -> Plan:
        return self.plan(prompt)

    async def agenerate(self, prompt: str, **kwargs: Any) -> GenerationResult:
        return self.generate(prompt, **kwargs)


def _call(name: str, arguments: Any, call_id: str = "call_1") -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


# --- strict schemas -----------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_definitions_pass_strict_rules(api: str) -> None:
    defs = tools.tool_definitions(api=api)  # type: ignore[arg-type]
    assert [tools.tool_problems(t) for t in defs] == [[], []]
    names = [(t.get("function") or t)["name"] for t in defs]
    assert names == ["lcfix_plan_prompt", "lcfix_generate_image"]
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", n) for n in names)


def test_definitions_match_the_argument_models() -> None:
    by_name = {t["function"]["name"]: t["function"] for t in tools.tool_definitions()}
    for name, model in (
        (tools.PLAN_TOOL, tools.PlanPromptArgs),
        (tools.GENERATE_TOOL, tools.GenerateImageArgs),
    ):
        params = by_name[name]["parameters"]
        assert by_name[name]["strict"] is True
        assert list(params["properties"]) == list(model.model_fields)
        assert params["required"] == list(model.model_fields)
        assert params["additionalProperties"] is False
    gen = by_name[tools.GENERATE_TOOL]["parameters"]["properties"]
    assert gen["seed"]["type"] == ["integer", "null"]
    assert gen["num_images"] == {
        "type": ["integer", "null"],
        "minimum": 1,
        "maximum": 4,
        "description": gen["num_images"]["description"],
    }
    dialect = by_name[tools.PLAN_TOOL]["parameters"]["properties"]["dialect"]
    assert dialect["type"] == ["string", "null"]
    assert dialect["enum"] == ["natural", "weighted", "a1111", None]


def test_plan_only_definitions() -> None:
    defs = tools.tool_definitions(generate=False)
    assert [t["function"]["name"] for t in defs] == [tools.PLAN_TOOL]


def test_tool_problems_checks_the_envelope() -> None:
    good = tools.tool_definitions()[0]
    bad_name = json.loads(json.dumps(good))
    bad_name["function"]["name"] = "plan prompt!"
    not_strict = json.loads(json.dumps(good))
    not_strict["function"]["strict"] = False
    assert any("must match" in p for p in tools.tool_problems(bad_name))
    assert any("strict must be true" in p for p in tools.tool_problems(not_strict))
    assert tools.tool_problems({"type": "web_search"}) == [
        "type must be 'function', got 'web_search'"
    ]


# --- handle: planning ---------------------------------------------------------------------------


def test_handle_plan_returns_the_rewrite() -> None:
    out = json.loads(
        tools.handle(
            _call(tools.PLAN_TOOL, {"prompt": "a tea cup of iced coke", "dialect": None}),
            client=FakeClient(),
        )
    )
    assert out["at_risk"] is True
    assert out["fragile"] == ["tea cup"]
    assert out["pairs"][0]["latent"] == "glass"
    assert out["dialect"] == "natural"
    assert out["rewritten_prompt"] == sample_plan().rewrites.natural
    assert "not a glass" in out["rewritten_prompt"]
    assert out["stages"][0] == {"prompt": "tea cup", "end": 0.25}


def test_handle_plan_in_another_dialect_and_sdk_objects() -> None:
    from openai.types.chat import ChatCompletionMessageToolCall

    call = ChatCompletionMessageToolCall.model_validate(
        _call(tools.PLAN_TOOL, {"prompt": "a tea cup of iced coke", "dialect": "weighted"})
    )
    out = json.loads(tools.handle(call, client=FakeClient()))
    assert out["rewritten_prompt"] == "tea cup::2 a tea cup of iced coke::1 --no glass"
    # A Responses API function_call item, arguments already decoded.
    item = {"type": "function_call", "call_id": "c9", "name": tools.PLAN_TOOL,
            "arguments": {"prompt": "a tea cup of iced coke", "dialect": "a1111"}}  # fmt: skip
    result = tools.run_tool_call(item, client=FakeClient())
    assert result.call_id == "c9" and not result.is_error
    assert json.loads(result.content)["rewritten_prompt"] == sample_plan().rewrites.a1111


def test_handle_plan_without_a_client_uses_the_offline_planner() -> None:
    out = json.loads(tools.handle(_call(tools.PLAN_TOOL, {"prompt": "a tea cup of iced coke"})))
    assert out["at_risk"] is True
    assert "tea cup" in out["fragile"]
    assert out["planner"] == "offline"


# --- handle: bad calls --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "kind", "needle"),
    [
        (_call(tools.PLAN_TOOL, "{not json"), "invalid_arguments", "not valid JSON"),
        (_call(tools.PLAN_TOOL, {"dialect": None}), "invalid_arguments", "prompt: Field required"),
        (_call(tools.PLAN_TOOL, {"prompt": ""}), "invalid_arguments", "prompt"),
        (_call(tools.PLAN_TOOL, {"prompt": "x", "colour": "red"}), "invalid_arguments", "colour"),
        (_call(tools.PLAN_TOOL, {"prompt": "x", "dialect": "klingon"}), "invalid_arguments",
         "dialect"),
        (_call(tools.PLAN_TOOL, {"prompt": 42}), "invalid_arguments", "prompt"),
        (_call(tools.PLAN_TOOL, "[1, 2]"), "invalid_arguments", "JSON object"),
        (_call(tools.GENERATE_TOOL, {"prompt": "x", "num_images": 99}), "invalid_arguments",
         "num_images"),
        (_call("lcfix_delete_everything", {}), "unknown_tool", "lcfix_plan_prompt"),
        ({"id": "c", "type": "function", "function": {}}, "invalid_call", "no function name"),
        ("not a tool call", "invalid_call", "no function name"),
    ],
)  # fmt: skip
def test_bad_calls_become_error_payloads(call: Any, kind: str, needle: str) -> None:
    content = tools.handle(call, client=FakeClient())  # must not raise
    error = json.loads(content)["error"]
    assert error["type"] == kind
    assert needle in error["message"]


def test_generate_without_a_client_is_a_config_error() -> None:
    out = tools.run_tool_call(_call(tools.GENERATE_TOOL, {"prompt": "a tea cup of iced coke"}))
    assert out.is_error
    error = json.loads(out.content)["error"]
    assert error["type"] == "ConfigError" and "client=" in error["message"]


def test_backend_errors_become_payloads() -> None:
    client = FakeClient(FakeAdapter(errors=[RateLimitError("slow down", retry_after=3)]))
    out = json.loads(tools.handle(_call(tools.GENERATE_TOOL, {"prompt": "a tea cup of iced coke"}),
                                  client=client))  # fmt: skip
    assert out["error"]["type"] == "RateLimitError"
    assert "slow down" in out["error"]["message"]


def test_unexpected_exceptions_do_not_escape() -> None:
    class Broken(FakeClient):
        def plan(self, prompt: str) -> Plan:
            raise RuntimeError("boom")

    out = json.loads(tools.handle(_call(tools.PLAN_TOOL, {"prompt": "x"}), client=Broken()))
    assert out["error"] == {"type": "internal_error", "message": "RuntimeError: boom",
                            "tool": tools.PLAN_TOOL}  # fmt: skip


# --- handle: generating -------------------------------------------------------------------------


def test_generate_reports_images_and_saves_them(tmp_path: Path) -> None:
    client = FakeClient()
    args = {"prompt": "a tea cup of iced coke", "num_images": 2, "seed": 7,
            "negative_prompt": None, "width": None, "height": None}  # fmt: skip
    out = tools.run_tool_call(_call(tools.GENERATE_TOOL, args, "call/../x"), client=client,
                              image_dir=tmp_path)  # fmt: skip
    assert client.generate_kwargs == [{"num_images": 2, "seed": 7}]
    payload = json.loads(out.content)
    assert payload["plan"]["fragile"] == ["tea cup"]
    assert payload["staging"] == "emulated"
    assert payload["prompt_sent"] == sample_plan().rewrites.natural
    assert len(out.images) == 2 and len(payload["images"]) == 2
    for entry, image in zip(payload["images"], out.images, strict=True):
        saved = Path(entry["path"])
        assert saved.parent == tmp_path and saved.name.startswith("call_")
        assert saved.read_bytes() == image.data
        assert entry["sha256"] == hashlib.sha256(image.data).hexdigest()
        assert entry["bytes"] == len(image.data)
    assert "b64" not in out.content and "iVBOR" not in out.content


async def test_ahandle_matches_handle() -> None:
    call = _call(tools.PLAN_TOOL, {"prompt": "a tea cup of iced coke", "dialect": "weighted"})
    assert await tools.ahandle(call, client=AsyncFakeClient()) == tools.handle(
        call, client=FakeClient()
    )
    gen = _call(tools.GENERATE_TOOL, {"prompt": "a tea cup of iced coke", "seed": 1})
    out = await tools.arun_tool_call(gen, client=AsyncFakeClient())
    assert not out.is_error and len(out.images) == 1
    bad = await tools.ahandle(_call(tools.GENERATE_TOOL, "{"), client=AsyncFakeClient())
    assert json.loads(bad)["error"]["type"] == "invalid_arguments"


# --- the documented chat loop -------------------------------------------------------------------


def _doc_example() -> dict[str, Any]:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)
    code = next(b for b in blocks if b.startswith("# example: chat loop"))
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOCS), "exec"), namespace)
    return namespace


def _completion(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4.1-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }


def test_documented_chat_loop(tmp_path: Path) -> None:
    run_chat = _doc_example()["run_chat"]
    requests: list[dict[str, Any]] = []

    def chat(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        requests.append(body)
        if len(requests) == 1:
            call = _call(tools.GENERATE_TOOL, {"prompt": "a tea cup of iced coke", "num_images": 1,
                                               "seed": 3, "negative_prompt": None, "width": None,
                                               "height": None})  # fmt: skip
            msg = {"role": "assistant", "content": None, "tool_calls": [call]}
            return httpx.Response(200, json=_completion(msg, "tool_calls"))
        tool_msg = body["messages"][-1]
        result = json.loads(tool_msg["content"])
        text = f"Here is your {result['plan']['fragile'][0]} ({len(result['images'])} image)."
        return httpx.Response(200, json=_completion({"role": "assistant", "content": text}, "stop"))

    with respx.mock(assert_all_mocked=True, assert_all_called=True) as mock:
        mock.post("https://api.test/v1/chat/completions").mock(side_effect=chat)
        with httpx.Client(base_url="https://api.test/v1") as http:
            answer = run_chat(http, FakeClient(), "Draw a tea cup of iced coke",
                              image_dir=tmp_path)  # fmt: skip

    assert answer == "Here is your tea cup (1 image)."
    assert len(requests) == 2
    first, second = requests
    assert [t["function"]["name"] for t in first["tools"]] == [tools.PLAN_TOOL, tools.GENERATE_TOOL]
    assert all(t["function"]["strict"] is True for t in first["tools"])
    # The second request carries the assistant's tool call and lcfix's answer to it.
    assistant, tool_msg = second["messages"][-2:]
    assert assistant["tool_calls"][0]["id"] == "call_1"
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "call_1"
    result = json.loads(tool_msg["content"])
    assert result["plan"]["at_risk"] is True
    assert result["seed"] == 3
    assert Path(result["images"][0]["path"]).is_file()
