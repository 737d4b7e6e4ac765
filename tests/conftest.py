"""Test-wide settings: no network, no real keys, no user cache directories."""

from __future__ import annotations

import os

# Set before anything imports litellm or huggingface_hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DISABLE_AIOHTTP_TRANSPORT", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Iterator
from pathlib import Path

import pytest

_PROVIDER_KEYS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "STABILITY_API_KEY",
    "REPLICATE_API_TOKEN",
    "FAL_KEY",
    "MJ_API_SECRET",
    "GEMINI_API_KEY",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts with no LCFIX_* settings, no provider keys and a private cache dir."""
    for key in list(os.environ):
        if key.startswith("LCFIX_") or key in _PROVIDER_KEYS:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("LCFIX_CACHE_DIR", str(tmp_path / "lcfix-cache"))
    # The MiniLM model takes seconds to load: tests opt in explicitly.
    monkeypatch.setenv("LCFIX_EMBEDDINGS", "0")
    yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LCFIX_RUN_INTEGRATION") == "1":
        return
    skip = pytest.mark.skip(reason="opt-in: set LCFIX_RUN_INTEGRATION=1 (see docs/testing.md)")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)
