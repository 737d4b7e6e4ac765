from __future__ import annotations

import json
import subprocess
import sys

import lcfix


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert lcfix.__all__ == sorted(lcfix.__all__)
    for name in lcfix.__all__:
        assert getattr(lcfix, name) is not None, name


def test_import_lcfix_pulls_in_no_heavy_dependency() -> None:
    code = (
        "import sys, json, lcfix, lcfix.adapters, lcfix.cli.main;"
        "print(json.dumps(sorted(m for m in ('torch', 'diffusers', 'transformers', 'litellm',"
        " 'sentence_transformers', 'mcp') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        lcfix.nope  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
