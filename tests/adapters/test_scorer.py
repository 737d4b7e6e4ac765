"""Scorers: CLIPScore as the paper computes it (on a tiny random CLIP), the concept rule, and
the synthetic scorer the benchmarks use."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lcfix.adapters.scorer import (
    INFO_SEED,
    INFO_STEP,
    INFO_TOTAL,
    Scorer,
    SyntheticScorer,
    concept_scores,
)
from lcfix.compose import compose_plan
from lcfix.errors import AdapterError, ConfigError
from lcfix.plans import Concept, ConceptPair, PlannerInfo


class TableScorer:
    name = "table"

    def __init__(self, table: list[list[float]]) -> None:
        self.table = table
        self.texts: list[str] = []

    def score(self, images: Sequence[Any], texts: Sequence[str]) -> list[list[float]]:
        self.texts = list(texts)
        return self.table


def test_concept_score_is_the_max_of_name_and_description_set_means() -> None:
    # columns: cup, cup description, coke (no description)
    scorer = TableScorer([[0.9, 0.1, 0.5], [0.1, 0.6, 0.7]])
    concepts = [Concept(name="tea cup", description="small ceramic cup"), Concept(name="coke")]
    scores = concept_scores(scorer, ["img1", "img2"], concepts)
    assert scorer.texts == ["tea cup", "small ceramic cup", "coke"]
    # name mean 0.5, description mean 0.35: the max of the means, not the mean of the maxes
    assert scores == {"tea cup": pytest.approx(0.5), "coke": pytest.approx(0.6)}
    assert isinstance(scorer, Scorer)


def test_wrong_table_shape_is_an_error() -> None:
    with pytest.raises(AdapterError, match="wrong shape"):
        concept_scores(TableScorer([[0.1]]), ["a", "b"], [Concept(name="x")])


def _image(step: int | None, seed: int = 0, total: int = 20) -> Any:
    from PIL import Image

    im = Image.new("RGB", (8, 8))
    if step is not None:
        im.info.update({INFO_STEP: step, INFO_TOTAL: total, INFO_SEED: seed})
    return im


def test_synthetic_balance_grows_with_the_switch_step() -> None:
    plan = compose_plan(
        "a tea cup of iced coke", [ConceptPair(fragile="tea cup", dominant="iced coke")],
        planner=PlannerInfo(name="t", version="1"), descriptions={"tea cup": "ceramic cup"},
    )  # fmt: skip
    scorer = SyntheticScorer.for_plan(plan)
    balances = []
    for k in range(1, 20):
        s = concept_scores(scorer, [_image(k, seed=4)], plan.concepts)
        balances.append(s["tea cup"] - s["iced coke"])
    assert all(b > a for a, b in itertools.pairwise(balances))
    assert balances[0] < 0 < balances[-1]
    zero = scorer.target_for(4) * 20
    assert balances[round(zero) - 1] == pytest.approx(2 * (round(zero) - zero) / 20, abs=1e-9)
    assert scorer.target_for(4) != scorer.target_for(5)  # per-seed balance points


# -- CLIP, on a tiny random model ------------------------------------------------------------

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from lcfix.adapters import _tiny  # noqa: E402
from lcfix.adapters.scorer import CLIPScorer  # noqa: E402


@pytest.fixture(scope="module")
def clip() -> tuple[Any, Any]:
    return _tiny.tiny_clip()


def _images() -> list[Any]:
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    return [
        Image.fromarray((torch.rand(40, 48, 3, generator=g) * 255).byte().numpy()) for _ in range(3)
    ]


def test_clip_score_is_two_and_a_half_times_the_clipped_cosine(clip: tuple[Any, Any]) -> None:
    model, proc = clip
    scorer = CLIPScorer(clip_model=model, processor=proc, device="cpu")
    images, texts = _images(), ["tea cup", "iced coke", "a red cat"]
    got = scorer.score(images, texts)
    # Recompute by hand: the prefix, unit vectors, 2.5 * max(cos, 0).
    with torch.no_grad():
        t = proc(text=["A photo depicts " + x for x in texts], return_tensors="pt", padding=True)
        tf = model.get_text_features(**t).pooler_output
        i = proc(images=images, return_tensors="pt")
        imf = model.get_image_features(pixel_values=i["pixel_values"]).pooler_output
    cos = torch.nn.functional.cosine_similarity(imf[:, None, :], tf[None, :, :], dim=-1)
    want = (2.5 * cos.clamp(min=0)).tolist()
    assert len(got) == 3 and all(len(row) == 3 for row in got)
    for row_got, row_want in zip(got, want, strict=True):
        assert row_got == pytest.approx(row_want, abs=1e-5)
    assert all(v >= 0 for row in got for v in row)


def test_clip_scorer_loads_a_local_directory(clip: tuple[Any, Any], tmp_path: Path) -> None:
    model, proc = clip
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    loaded = CLIPScorer(str(tmp_path), device="cpu")
    direct = CLIPScorer(clip_model=model, processor=proc, device="cpu")
    images = _images()[:1]
    assert loaded.score(images, ["tea cup"])[0] == pytest.approx(
        direct.score(images, ["tea cup"])[0]
    )
    assert loaded.name == f"clip:{tmp_path}"


def test_unreachable_clip_model_gives_a_clear_error() -> None:
    with pytest.raises(ConfigError) as err:
        CLIPScorer("lcfix-tests/no-such-clip", device="cpu")
    assert "lcfix-tests/no-such-clip" in str(err.value) and "local directory" in str(err.value)


def test_search_through_the_real_clip_code_path(clip: tuple[Any, Any]) -> None:
    from lcfix.adapters.base import GenerationRequest
    from lcfix.adapters.local import DiffusersAdapter

    model, proc = clip
    plan = compose_plan(
        "a tea cup of iced coke", [ConceptPair(fragile="tea cup", dominant="iced coke")],
        planner=PlannerInfo(name="t", version="1"), descriptions={"tea cup": "ceramic cup"},
    )  # fmt: skip
    ad = DiffusersAdapter(
        pipeline=_tiny.tiny_pipeline("sd3"),
        options={"num_inference_steps": 8, "search": "prompt", "search_cache": False},
        scorer=CLIPScorer(clip_model=model, processor=proc, device="cpu"),
    )
    result = ad.generate(GenerationRequest(plan=plan, width=32, height=32, seed=1))
    probes = result.extra["search"]["groups"][0]["probes"]
    assert probes and all(0 <= p["fragile"] <= 2.5 and 0 <= p["dominant"] <= 2.5 for p in probes)
    assert result.extra["denoiser_image_steps"] <= 2 * 8
