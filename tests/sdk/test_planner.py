from __future__ import annotations

import pytest

from lcfix.errors import ConfigError, InputError
from lcfix.planner import MAX_PROMPT_CHARS, Planner, check_prompt, get_planner


def test_check_prompt_returns_the_prompt_unchanged() -> None:
    assert check_prompt(" a tea cup ") == " a tea cup "


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (3, "a prompt must be a string, got int"),
        ("   ", "empty prompt"),
        ("x" * (MAX_PROMPT_CHARS + 1), f"prompt is {MAX_PROMPT_CHARS + 1} characters"),
    ],
)
def test_check_prompt_refuses_bad_prompts(value: object, needle: str) -> None:
    with pytest.raises(InputError, match=needle) as info:
        check_prompt(value)
    assert info.value.field == "prompt"


def test_check_prompt_takes_a_custom_limit() -> None:
    with pytest.raises(InputError, match="the limit is 5"):
        check_prompt("abcdef", max_chars=5)


def test_auto_is_offline_without_a_model_and_llm_needs_one() -> None:
    planner = get_planner("auto")
    assert isinstance(planner, Planner) and planner.name == "offline"
    with pytest.raises(ConfigError, match="LCFIX_LLM_MODEL"):
        get_planner("llm")
