"""lcfix.mcp_server: the MCP tools in-process, then `lcfix mcp` over stdio with the SDK's own
client and with a raw newline-delimited JSON-RPC client."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lcfix.adapters.base import ImageAdapter
from lcfix.errors import AdapterNotFoundError, RateLimitError
from lcfix.mcp_server import MCPConfig, build_server
from lcfix.planner import BasePlanner
from lcfix.plans import Plan
from lcfix.testing import FakeAdapter, sample_plan

mcp = pytest.importorskip("mcp")
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

TEA = "a tea cup of iced coke"


class SamplePlanner(BasePlanner):
    name = "test"

    def __init__(self) -> None:
        self.closed = False

    def plan(self, prompt: str) -> Plan:
        return sample_plan(prompt)

    def close(self) -> None:
        self.closed = True


class Backends:
    """An adapter factory that hands out FakeAdapters and remembers them."""

    def __init__(self, errors: list[Exception] | None = None) -> None:
        self.made: dict[str, FakeAdapter] = {}
        self.errors = errors or []

    def __call__(self, backend: str, config: MCPConfig) -> ImageAdapter:
        name, _, model = backend.partition(":")
        if name != "fake":
            raise AdapterNotFoundError(f"no backend named {name!r}; registered backends: fake")
        api_base = config.api_base if backend == config.backend else None
        adapter = FakeAdapter(model, api_base=api_base, errors=self.errors)
        self.made[backend] = adapter
        return adapter


def _text(result: Any) -> str:
    return str(result.content[0].text)


# --- in-process ---------------------------------------------------------------------------------


async def test_lists_three_tools_with_their_arguments() -> None:
    async with Client(build_server(MCPConfig(), planner=SamplePlanner())) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
    assert set(listed) == {"plan_prompt", "rewrite_prompt", "generate_image"}
    dialect = listed["rewrite_prompt"].input_schema["properties"]["dialect"]
    assert dialect["enum"] == ["natural", "weighted", "a1111"]
    gen = listed["generate_image"].input_schema
    assert gen["required"] == ["prompt"]
    assert {"backend", "num_images", "seed", "negative_prompt", "width", "height"} <= set(
        gen["properties"]
    )
    assert listed["plan_prompt"].annotations.read_only_hint is True
    assert listed["generate_image"].annotations.read_only_hint is False


async def test_plan_and_rewrite_in_each_dialect() -> None:
    plan = sample_plan()
    async with Client(build_server(MCPConfig(), planner=SamplePlanner())) as client:
        planned = await client.call_tool("plan_prompt", {"prompt": TEA, "include_plan": True})
        rewrites = {
            d: await client.call_tool("rewrite_prompt", {"prompt": TEA, "dialect": d})
            for d in ("natural", "weighted", "a1111")
        }
    assert not planned.is_error
    assert planned.structured_content["fragile"] == ["tea cup"]
    assert json.loads(_text(planned)) == planned.structured_content
    assert Plan.model_validate(planned.structured_content["plan"]) == plan
    for dialect, result in rewrites.items():
        assert not result.is_error
        assert result.structured_content["rewritten_prompt"] == getattr(plan.rewrites, dialect)
        assert result.structured_content["dialect"] == dialect


async def test_generate_returns_image_content(tmp_path: Path) -> None:
    backends = Backends()
    server = build_server(
        MCPConfig(backend="fake:one", api_base="http://127.0.0.1:9/v1"),
        planner=SamplePlanner(),
        adapter_factory=backends,
    )
    async with Client(server) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": TEA, "num_images": 2, "seed": 5}
        )
        other = await client.call_tool("generate_image", {"prompt": TEA, "backend": "fake:two"})
    assert not result.is_error, _text(result)
    text, *images = result.content
    assert len(images) == 2
    summary = json.loads(text.text)
    assert summary["backend"] == "fake" and summary["model"] == "one"
    assert summary["staging"] == "emulated"
    assert summary["prompt_sent"] == sample_plan().rewrites.natural
    one = backends.made["fake:one"]
    assert one.api_base == "http://127.0.0.1:9/v1"
    assert one.requests[0].seed == 5 and one.requests[0].num_images == 2
    for i, image in enumerate(images):
        # The wire form clients render: type image, base64 data, camelCase mimeType.
        wire = image.model_dump(mode="json", by_alias=True, exclude_none=True)
        assert set(wire) == {"type", "data", "mimeType"}
        assert wire["type"] == "image" and wire["mimeType"] == "image/png"
        png = base64.b64decode(wire["data"])
        assert png.startswith(b"\x89PNG") and summary["images"][i]["bytes"] == len(png)
    # An explicit backend argument wins over the server default, without its endpoint.
    assert not other.is_error
    assert backends.made["fake:two"].api_base is None
    assert json.loads(_text(other))["model"] == "two"
    # Shutting the server down closes every adapter it opened.
    assert all(a.closed for a in backends.made.values())


async def test_tool_errors_keep_the_server_running() -> None:
    backends = Backends(errors=[RateLimitError("slow down", retry_after=1)])
    server = build_server(MCPConfig(), planner=SamplePlanner(), adapter_factory=backends)
    async with Client(server) as client:
        no_backend = await client.call_tool("generate_image", {"prompt": TEA})
        unknown = await client.call_tool("generate_image", {"prompt": TEA, "backend": "nope:x"})
        limited = await client.call_tool("generate_image", {"prompt": TEA, "backend": "fake:x"})
        bad_dialect = await client.call_tool("rewrite_prompt", {"prompt": TEA, "dialect": "x"})
        too_many = await client.call_tool(
            "generate_image", {"prompt": TEA, "backend": "fake:x", "num_images": 50}
        )
        empty = await client.call_tool("plan_prompt", {"prompt": ""})
        after = await client.call_tool("generate_image", {"prompt": TEA, "backend": "fake:x"})
    assert no_backend.is_error and "LCFIX_MCP_BACKEND" in _text(no_backend)
    assert unknown.is_error and "no backend named 'nope'" in _text(unknown)
    assert limited.is_error and "slow down" in _text(limited)
    assert bad_dialect.is_error and "dialect" in _text(bad_dialect)
    assert too_many.is_error and "num_images" in _text(too_many)
    assert empty.is_error and "prompt" in _text(empty)
    assert not after.is_error and len(after.content) == 2


def test_config_reads_the_backend_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LCFIX_MCP_BACKEND", "openai:gpt-image-1")
    assert MCPConfig.from_env().backend == "openai:gpt-image-1"
    assert MCPConfig.from_env(backend="stability:sd3.5-large").backend == "stability:sd3.5-large"


# --- over stdio ---------------------------------------------------------------------------------


def _server_env() -> dict[str, str]:
    # The autouse fixture already cleared LCFIX_* and keys; keep the run offline and private.
    keep = ("LCFIX_CACHE_DIR", "LCFIX_EMBEDDINGS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return {k: os.environ[k] for k in keep if k in os.environ}


async def test_sdk_client_over_stdio() -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lcfix.cli.main", "mcp", "--planner", "offline"],
        env=_server_env(),
    )
    async with Client(params, read_timeout_seconds=30) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        planned = await client.call_tool("plan_prompt", {"prompt": TEA})
        bad = await client.call_tool("plan_prompt", {"promt": TEA})
        again = await client.call_tool("rewrite_prompt", {"prompt": TEA, "dialect": "weighted"})
    assert names == {"plan_prompt", "rewrite_prompt", "generate_image"}
    assert not planned.is_error, _text(planned)
    assert planned.structured_content["at_risk"] is True
    assert planned.structured_content["fragile"][0] == "tea cup"
    assert bad.is_error and "prompt" in _text(bad)
    assert not again.is_error and "tea cup::" in again.structured_content["rewritten_prompt"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_streamable_http_transport(tmp_path: Path) -> None:
    port = _free_port()
    argv = [sys.executable, "-m", "lcfix.cli.main", "mcp", "--transport", "http"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--planner", "offline"]
    with (tmp_path / "stderr.log").open("wb") as err:
        proc = subprocess.Popen(argv, stdout=err, stderr=err, env={**os.environ})
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert proc.poll() is None, (tmp_path / "stderr.log").read_text()
                    assert time.monotonic() < deadline, "the HTTP server did not start"
                    await asyncio.sleep(0.1)
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                names = {t.name for t in (await client.list_tools()).tools}
                planned = await client.call_tool("plan_prompt", {"prompt": TEA})
                bad = await client.call_tool("rewrite_prompt", {"prompt": TEA, "dialect": 3})
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert names == {"plan_prompt", "rewrite_prompt", "generate_image"}
    assert not planned.is_error and planned.structured_content["fragile"][0] == "tea cup"
    assert bad.is_error


class RawClient:
    """Newline-delimited JSON-RPC over a subprocess's stdin/stdout, with a read deadline."""

    def __init__(self, argv: list[str], env: dict[str, str], stderr: Path) -> None:
        self._err = stderr.open("wb")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, env=env
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self._next = 0

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self._send(msg)

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next, "method": method}
        if params is not None:
            msg["params"] = params
        self._send(msg)
        while True:
            reply = json.loads(self._lines.get(timeout=30))
            if reply.get("id") == self._next:  # skip server notifications (logs, progress)
                return dict(reply)

    def _send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self.proc.stdin.flush()

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._err.close()


@pytest.fixture
def raw_server(tmp_path: Path) -> Iterator[RawClient]:
    script = Path(sys.executable).with_name("lcfix")
    argv = (
        [str(script), "mcp"] if script.exists() else [sys.executable, "-m", "lcfix.cli.main", "mcp"]
    )
    client = RawClient(argv, {**os.environ}, tmp_path / "stderr.log")
    yield client
    if client.proc.poll() is None:
        client.close()


def test_raw_json_rpc_over_stdio(raw_server: RawClient, tmp_path: Path) -> None:
    init = raw_server.request(
        "initialize",
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "0"},
        },
    )
    assert init["result"]["serverInfo"]["name"] == "lcfix", init
    assert init["result"]["protocolVersion"] == "2025-06-18"
    assert "tools" in init["result"]["capabilities"]
    raw_server.notify("notifications/initialized")

    listed = raw_server.request("tools/list")["result"]["tools"]
    by_name = {t["name"]: t for t in listed}
    assert set(by_name) == {"plan_prompt", "rewrite_prompt", "generate_image"}
    assert by_name["plan_prompt"]["inputSchema"]["required"] == ["prompt"]

    called = raw_server.request("tools/call", {"name": "plan_prompt", "arguments": {"prompt": TEA}})
    result = called["result"]
    assert result["isError"] is False, result
    plan = result["structuredContent"]
    assert plan["at_risk"] is True
    assert plan["fragile"][0] == "tea cup"
    assert plan["pairs"][0]["fragile"] == "tea cup"
    assert json.loads(result["content"][0]["text"]) == plan

    # Invalid arguments: a tool error in the result, not a JSON-RPC error, and no crash.
    for args in ({"prompt": 7}, {}, {"prompt": TEA, "dialect": "klingon"}):
        name = "rewrite_prompt" if "dialect" in args else "plan_prompt"
        bad = raw_server.request("tools/call", {"name": name, "arguments": args})
        assert bad["result"]["isError"] is True, bad
        assert bad["result"]["content"][0]["type"] == "text"
    unknown = raw_server.request("tools/call", {"name": "draw_a_cat", "arguments": {}})
    assert unknown["result"]["isError"] is True

    still = raw_server.request("tools/call", {"name": "plan_prompt", "arguments": {"prompt": TEA}})
    assert still["result"]["isError"] is False
    assert raw_server.close() == 0
    assert b"Traceback" not in (tmp_path / "stderr.log").read_bytes()
