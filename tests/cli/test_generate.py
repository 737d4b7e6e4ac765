"""``lcfix generate``: the issue's check against a loopback OpenAI imitation, and the options."""

from __future__ import annotations

import base64
import importlib.util
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import lcfix.planner
from lcfix.cli.main import cli
from lcfix.planner import BasePlanner
from lcfix.plans import Plan
from lcfix.testing import FakeAdapter, sample_plan, tiny_png

KEY = "sk-loopback-secret-4242424242"
PROMPT = "a tea cup of iced coke"
PNG = tiny_png()


class LoopbackOpenAI:
    """A threaded HTTP server imitating POST /v1/images/generations with canned replies."""

    def __init__(self, replies: list[tuple[int, dict[str, str], dict[str, Any]]]) -> None:
        self.replies = replies
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "json": json.loads(body),
                        "at": time.monotonic(),
                    }
                )
                status, headers, payload = outer.replies.pop(0)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> LoopbackOpenAI:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _StubPlanner(BasePlanner):
    name = "stub"

    def plan(self, prompt: str) -> Plan:
        return sample_plan(prompt)


@pytest.fixture
def planner(monkeypatch: pytest.MonkeyPatch) -> str:
    """The real offline planner when it exists; a stub with the paper's plan until then."""
    if importlib.util.find_spec("lcfix.offline") is None:
        monkeypatch.setattr(lcfix.planner, "get_planner", lambda *a, **k: _StubPlanner())
    return "offline"


def run(args: list[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def generate_on(server: LoopbackOpenAI, out: Path, planner: str) -> Any:
    """``lcfix generate PROMPT`` on the loopback OpenAI server, with a test key."""
    return run(
        [
            "generate",
            PROMPT,
            "--backend",
            "openai:gpt-image-1",
            "--api-base",
            server.base,
            "--out",
            str(out),
            "--planner",
            planner,
        ],
        env={"OPENAI_API_KEY": KEY},
    )


def test_issue_check_against_a_loopback_openai(tmp_path: Path, planner: str) -> None:
    ok = {
        "created": 1,
        "data": [
            {
                "b64_json": base64.b64encode(PNG).decode(),
                "revised_prompt": "a ceramic tea cup filled with iced coke",
            }
        ],
        "usage": {"total_tokens": 10},
    }
    out = tmp_path / "DIR"
    with LoopbackOpenAI(
        [(429, {"Retry-After": "1"}, {"error": {"message": "slow down"}}), (200, {}, ok)]
    ) as server:
        result = generate_on(server, out, planner)
    assert result.exit_code == 0, result.output
    # The image is saved with its sidecar.
    images, sidecars = sorted(out.glob("*.png")), sorted(out.glob("*.json"))
    assert len(images) == len(sidecars) == 1 and images[0].read_bytes() == PNG
    meta = json.loads(sidecars[0].read_text())
    # The request's prompt is the LC-Mis-aware rewrite.
    sent = server.requests[-1]["json"]["prompt"]
    assert sent == meta["plan"]["rewrites"]["natural"] == meta["prompt_sent"]
    assert meta["plan"]["at_risk"] and sent != PROMPT and "tea cup" in sent.lower()
    assert server.requests[-1]["json"]["model"] == "gpt-image-1"
    # A 429 with Retry-After was retried after the wait it asked for.
    assert len(server.requests) == 2
    assert server.requests[1]["at"] - server.requests[0]["at"] >= 0.95
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    # The key appears nowhere in DIR or in the output.
    for path in out.rglob("*"):
        assert KEY.encode() not in path.read_bytes()
    assert KEY not in result.output
    assert str(images[0]) in result.output


def test_content_policy_400_exits_1_with_a_clear_message(tmp_path: Path, planner: str) -> None:
    refusal = {
        "error": {
            "code": "content_policy_violation",
            "type": "invalid_request_error",
            "message": "Your request was rejected as a result of our safety system.",
        }
    }
    with LoopbackOpenAI([(400, {}, refusal)]) as server:
        result = generate_on(server, tmp_path / "out", planner)
    assert result.exit_code == 1
    assert (
        "Error: [openai] the provider refused the prompt under its content policy" in result.output
    )
    assert "safety system" in result.output and KEY not in result.output
    assert len(server.requests) == 1  # a refusal is not retried
    assert not list((tmp_path / "out").glob("*"))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, planner: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def load(backend: str, **kwargs: Any) -> FakeAdapter:
        seen.update(backend=backend, kwargs=kwargs)
        seen["adapter"] = FakeAdapter(backend.partition(":")[2], **kwargs)
        return seen["adapter"]

    monkeypatch.setattr("lcfix.cli.generate.load_adapter", load)
    return seen


def test_settings_and_options_reach_the_adapter(tmp_path: Path, fake: dict[str, Any]) -> None:
    result = run(
        [
            "generate",
            PROMPT,
            "-b",
            "fake:m",
            "--out",
            str(tmp_path),
            "--seed",
            "9",
            "-n",
            "2",
            "--negative-prompt",
            "blurry",
            "--width",
            "64",
            "--height",
            "32",
            "--staging",
            "off",
            "-o",
            "size=16",
            "--api-base",
            "http://proxy.test",
        ]
    )
    assert result.exit_code == 0, result.output
    assert fake["backend"] == "fake:m"
    assert fake["kwargs"] == {"options": {"size": 16}, "api_base": "http://proxy.test"}
    (request,) = fake["adapter"].requests
    assert (request.seed, request.num_images, request.negative_prompt) == (9, 2, "blurry")
    assert (request.width, request.height, request.staging) == (64, 32, "off")
    assert fake["adapter"].closed
    assert len(list(tmp_path.glob("*.png"))) == 2
    assert "at risk: 'tea cup' <- 'iced coke' (latent: glass)" in result.output


def test_api_base_is_only_passed_when_given(tmp_path: Path, fake: dict[str, Any]) -> None:
    assert run(["generate", PROMPT, "-b", "fake:m", "--out", str(tmp_path)]).exit_code == 0
    assert fake["kwargs"] == {"options": {}}


def test_bad_option_syntax_is_a_usage_error(tmp_path: Path, fake: dict[str, Any]) -> None:
    result = run(["generate", PROMPT, "-b", "fake:m", "--out", str(tmp_path), "-o", "size"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output


def test_unknown_option_and_missing_key_name_the_fix(tmp_path: Path, planner: str) -> None:
    missing = run(["generate", PROMPT, "-b", "openai:gpt-image-1", "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "OPENAI_API_KEY" in missing.output
    bad = run(
        [
            "generate",
            PROMPT,
            "-b",
            "openai:gpt-image-1",
            "--out",
            str(tmp_path),
            "-o",
            "qualty=high",
        ],
        env={"OPENAI_API_KEY": KEY},
    )
    assert bad.exit_code == 2 and "qualty" in bad.output and "quality" in bad.output
    unknown = run(["generate", PROMPT, "-b", "nope:x", "--out", str(tmp_path)])
    assert unknown.exit_code == 1 and "no backend named 'nope'" in unknown.output
