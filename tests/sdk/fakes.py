"""Fakes shared by the sdk tests: a planner with a fixed rule and a loopback images server."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lcfix.compose import compose_plan
from lcfix.errors import PlannerError
from lcfix.planner import BasePlanner
from lcfix.plans import ConceptPair, Plan, PlannerInfo
from lcfix.testing import tiny_png
from lcfix.text import content_words, words


class FakePlanner(BasePlanner):
    """Marks every prompt at risk: fragile = its first content word, dominant = its last."""

    name = "fake"

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.calls = 0

    def plan(self, prompt: str) -> Plan:
        self.calls += 1
        if self.fail_on and self.fail_on in prompt:
            raise PlannerError(f"cannot plan {prompt!r}")
        if "fox" in prompt:  # not at risk
            return compose_plan(prompt, [], planner=PlannerInfo(name="fake", version="0"))
        content = [w for w in words(prompt) if content_words(w)]
        pair = ConceptPair(fragile=content[0], dominant=content[-1], latent="glass")
        return compose_plan(prompt, [pair], planner=PlannerInfo(name="fake", version="0"))


class FakeImagesServer(ThreadingHTTPServer):
    """An OpenAI-images-like loopback server that counts the prompts it was sent."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.prompts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # a client killed mid-request breaks the pipe: expected here


class _Handler(BaseHTTPRequestHandler):
    server: FakeImagesServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.prompts[body["prompt"]] += 1
        time.sleep(0.15)
        png = base64.b64encode(tiny_png(8, 8, (10, 200, 30))).decode()
        data = json.dumps({"created": 1, "data": [{"b64_json": png}] * body.get("n", 1)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        return None
