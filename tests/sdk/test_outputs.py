"""Saving results: image + sidecar pairs, stable names, atomic writes, no secrets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lcfix.adapters.base import GenerationRequest, GenerationResult
from lcfix.errors import InputError
from lcfix.outputs import default_stem, save_result
from lcfix.testing import FakeAdapter, sample_plan


def result(seed: int | None = 1, n: int = 2, **kw: object) -> GenerationResult:
    out = FakeAdapter().generate(GenerationRequest(plan=sample_plan(), seed=seed, num_images=n))
    return out.model_copy(update=kw) if kw else out


def test_each_image_gets_a_sidecar_with_the_audit_trail(tmp_path: Path) -> None:
    res = result(revised_prompt="a cup", warnings=("dropped x",), timings={"total_s": 0.5})
    saved = save_result(res, tmp_path / "out")
    assert [s.index for s in saved] == [0, 1]
    for item, image in zip(saved, res.images, strict=True):
        assert item.path.read_bytes() == image.data and item.path.suffix == ".png"
        assert item.sidecar == item.path.with_suffix(".json")
        meta = json.loads(item.sidecar.read_text())
        assert meta["image"] == item.path.name
        assert meta["backend"] == "fake" and meta["model"] == "fake"
        assert meta["seed"] == image.seed
        assert meta["prompt"] == "a tea cup of iced coke"
        assert meta["prompt_sent"] == res.prompt_sent == res.plan.rewrites.natural
        assert meta["revised_prompt"] == "a cup"
        assert meta["warnings"] == ["dropped x"] and meta["timings"] == {"total_s": 0.5}
        assert meta["plan"]["pairs"][0]["fragile"] == "tea cup"
        assert [r["kind"] for r in meta["requests"]] == ["stage", "generate"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [s.path.name for s in saved] + [s.sidecar.name for s in saved]
    )


def test_names_are_stable_and_collision_free(tmp_path: Path) -> None:
    assert default_stem(result(seed=1)) == default_stem(result(seed=1))
    assert default_stem(result(seed=1)) != default_stem(result(seed=2))
    assert default_stem(result(seed=1)).startswith("a-tea-cup-of-iced-coke-")
    first = save_result(result(seed=1), tmp_path)
    again = save_result(result(seed=1), tmp_path)
    other = save_result(result(seed=2), tmp_path)
    assert [s.path for s in first] == [s.path for s in again]
    assert not {s.path for s in first} & {s.path for s in other}
    assert len(list(tmp_path.iterdir())) == 8


def test_given_stem_and_bad_stems(tmp_path: Path) -> None:
    saved = save_result(result(n=1), tmp_path, stem="job-7", metadata={"job_key": "abc"})
    assert saved[0].path.name == "job-7-0.png"
    assert json.loads(saved[0].sidecar.read_text())["job_key"] == "abc"
    for bad in ("../evil", "a/b", ".hidden", ""):
        if bad:
            with pytest.raises(InputError, match="stem"):
                save_result(result(n=1), tmp_path, stem=bad)


def test_secrets_in_the_environment_never_reach_a_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-leaky-0123456789")
    res = result(n=1, warnings=("provider said: key sk-leaky-0123456789 is bad",))
    saved = save_result(res, tmp_path, secrets=["extra-secret-value"])
    text = saved[0].sidecar.read_text()
    assert "sk-leaky-0123456789" not in text and "***" in text
    json.loads(text)


def test_a_crash_mid_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_result(result(n=1), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_overwrites_keep_the_old_file_until_the_new_one_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = save_result(result(n=1), tmp_path, stem="x")
    before = saved[0].path.read_bytes()
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("io error")))
    with pytest.raises(OSError):
        save_result(result(n=1, seed=5), tmp_path, stem="x")
    assert saved[0].path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x-0.json", "x-0.png"]
