"""The diffusers backend end to end on tiny random-weight pipelines."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from PIL import Image  # noqa: E402

from lcfix.adapters import _tiny, load_adapter  # noqa: E402
from lcfix.adapters.base import GenerationRequest  # noqa: E402
from lcfix.adapters.local import DiffusersAdapter  # noqa: E402
from lcfix.compose import compose_plan  # noqa: E402
from lcfix.errors import (  # noqa: E402
    AdapterError,
    ConfigError,
    ExtraNotInstalledError,
    UnsupportedError,
)
from lcfix.plans import ConceptPair, Plan, PlannerInfo  # noqa: E402

STEPS = 6
SIZE = 32
INFO = PlannerInfo(name="test", version="1")


def plan_for(prompt: str, *pairs: tuple[str, str], stage1_end: float | None = None) -> Plan:
    cps = [ConceptPair(fragile=f, dominant=d) for f, d in pairs]
    return compose_plan(prompt, cps, planner=INFO, stage1_end=stage1_end)


COKE = plan_for("a tea cup of iced coke", ("tea cup", "iced coke"), stage1_end=0.34)
PLAIN = plan_for("a tea cup of iced coke")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipes() -> dict[str, Any]:
    return {f: _tiny.tiny_pipeline(f) for f in ("sd", "sdxl", "sd3", "flux")}


def adapter(pipe: Any, **options: Any) -> DiffusersAdapter:
    opts = {"num_inference_steps": STEPS, "guidance_scale": 5.0, **options}
    return DiffusersAdapter(pipeline=pipe, options=opts)


def request(plan: Plan = COKE, **kw: Any) -> GenerationRequest:
    return GenerationRequest(plan=plan, width=SIZE, height=SIZE, **{"seed": 5, **kw})


def gens(*seeds: int) -> list[Any]:
    return [torch.Generator().manual_seed(s) for s in seeds]


# -- errors ----------------------------------------------------------------------------------


def test_unknown_options_are_rejected_with_the_allowed_list(pipes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as err:
        DiffusersAdapter(pipeline=pipes["sd"], options={"stepz": 3})
    assert "stepz" in str(err.value) and "num_inference_steps" in str(err.value)
    with pytest.raises(ConfigError, match="search_range"):
        DiffusersAdapter(pipeline=pipes["sd"], options={"search_range": (0.5, 0.2)})


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(ExtraNotInstalledError) as err:
        DiffusersAdapter("stabilityai/sdxl-turbo")
    assert "pip install 'lcfix[diffusion]'" in str(err.value)


def test_unsupported_pipeline_lists_the_supported_classes() -> None:
    class KandinskyPipeline:
        pass

    with pytest.raises(UnsupportedError) as err:
        DiffusersAdapter(pipeline=KandinskyPipeline())
    assert "StableDiffusion3Pipeline" in str(err.value) and "FluxPipeline" in str(err.value)


def test_unloadable_model_id_gives_a_clear_error() -> None:
    with pytest.raises(ConfigError) as err:
        DiffusersAdapter("lcfix-tests/no-such-model", device="cpu")
    assert "lcfix-tests/no-such-model" in str(err.value) and "pipeline=" in str(err.value)


def test_bad_dtype_and_cpu_offload_without_gpu(pipes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="dtype"):
        DiffusersAdapter(pipeline=pipes["sd"], device="cpu", dtype="float8")
    with pytest.raises(ConfigError, match="cpu_offload"):
        DiffusersAdapter(pipeline=pipes["sd"], device="cpu", cpu_offload=True)


def test_refiner_mode_needs_sdxl(pipes: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedError, match="SDXL"):
        adapter(pipes["sd"], mode="refiner")


# -- exactness -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3", "flux"])
def test_one_stage_plan_equals_the_plain_pipeline(pipes: dict[str, Any], family: str) -> None:
    pipe = pipes[family]
    result = adapter(pipe, output_type="latent").generate(request(PLAIN, num_images=2))
    plain = pipe(
        prompt=PLAIN.prompt, num_images_per_prompt=2, generator=gens(5, 6), height=SIZE,
        width=SIZE, num_inference_steps=STEPS, guidance_scale=5.0, output_type="latent",
    ).images  # fmt: skip
    assert torch.equal(result.extra["latents"], plain)
    assert result.staging == "none" and result.extra["switch_steps"] == []
    assert result.extra["denoiser_calls"] == STEPS


def test_each_image_can_be_regenerated_alone_from_its_seed(pipes: dict[str, Any]) -> None:
    ad = adapter(pipes["sdxl"], output_type="latent")
    both = ad.generate(request(num_images=2)).extra["latents"]
    second = ad.generate(request(seed=6)).extra["latents"]
    # Same noise, same steps; only batched versus single kernels differ, in the last bits.
    assert torch.allclose(both[1], second[0], atol=1e-3)
    assert not torch.allclose(both[0], both[1], atol=1e-1)


def test_refiner_mode_splits_exactly_where_single_model_staging_switches(
    pipes: dict[str, Any],
) -> None:
    base = pipes["sdxl"]
    single = adapter(base, output_type="latent").generate(request())
    paper = DiffusersAdapter(
        pipeline=base,
        refiner=_tiny.tiny_sdxl_refiner(base),
        options={"num_inference_steps": STEPS, "guidance_scale": 5.0, "mode": "refiner",
                 "output_type": "latent"},
    ).generate(request())  # fmt: skip
    # With the refiner sharing the base's modules, the two runs must agree bit for bit: only
    # a split at exactly the staged step does that.
    assert torch.equal(paper.extra["latents"], single.extra["latents"])
    assert paper.extra["mode"] == "refiner"
    assert paper.extra["switch_steps"] == single.extra["switch_steps"] == [2]
    assert paper.extra["sigma_fractions"] == single.extra["sigma_fractions"]
    assert paper.extra["denoiser_calls"] == 2 * 1 + (STEPS - 2) * 1  # base k, refiner N - k


# -- the result --------------------------------------------------------------------------------


def test_result_carries_pngs_seeds_and_the_staging_record(pipes: dict[str, Any]) -> None:
    result = adapter(pipes["sd"]).generate(request(num_images=2, seed=7))
    assert [im.seed for im in result.images] == [7, 8]
    for im in result.images:
        assert Image.open(io.BytesIO(im.data)).size == (SIZE, SIZE)
    extra = result.extra
    assert extra["switch_steps"] == [2] and extra["fractions"] == [pytest.approx(2 / STEPS)]
    assert 0 < extra["sigma_fractions"][0] < 1
    assert extra["denoiser_calls"] == STEPS and extra["denoiser_image_steps"] == 2 * STEPS
    assert [r.prompt for r in result.requests] == ["tea cup", COKE.prompt]
    assert result.prompt_sent == COKE.prompt and result.staging == "native"
    assert result.backend == "diffusers" and result.seed == 7


def test_negative_prompt_and_guidance_reach_the_pipeline(pipes: dict[str, Any]) -> None:
    ad = adapter(pipes["sd3"], output_type="latent")
    base = ad.generate(request()).extra["latents"]
    neg = ad.generate(request(negative_prompt="blue dog")).extra["latents"]
    low = adapter(pipes["sd3"], output_type="latent", guidance_scale=1.5).generate(request())
    assert not torch.equal(base, neg) and not torch.equal(base, low.extra["latents"])


def test_too_few_steps_clamp_and_warn(pipes: dict[str, Any]) -> None:
    plan = plan_for("a cat with a hat and a tea cup", ("tea cup", "cat"), ("hat", "cat"))
    assert len(plan.stages) == 3
    result = adapter(pipes["sd"], num_inference_steps=2).generate(request(plan))
    assert result.warnings and "dropped" in result.warnings[0]
    assert len(result.extra["switch_steps"]) == 1 and len(result.images) == 1


def test_three_stage_plan_switches_twice(pipes: dict[str, Any]) -> None:
    plan = plan_for("a cat with a hat and a tea cup", ("tea cup", "cat"), ("hat", "cat"))
    result = adapter(pipes["sd"], num_inference_steps=8).generate(request(plan))
    assert result.extra["switch_steps"] == [1, 2] and not result.warnings
    assert len(result.extra["stage_prompts"]) == 3


def test_staging_off_sends_the_full_prompt_only(pipes: dict[str, Any]) -> None:
    result = adapter(pipes["sd"]).generate(request(staging="off"))
    assert result.staging == "none" and len(result.requests) == 1


def test_scheduler_option_leaves_the_callers_pipeline_alone(pipes: dict[str, Any]) -> None:
    pipe = pipes["sd"]
    ad = adapter(pipe, scheduler="EulerDiscreteScheduler")
    assert type(ad.pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and ad.pipe.unet is pipe.unet
    assert len(ad.generate(request()).images) == 1
    with pytest.raises(ConfigError, match="scheduler"):
        adapter(pipe, scheduler="NoSuchScheduler")


def test_registered_under_the_entry_point(pipes: dict[str, Any]) -> None:
    ad = load_adapter("diffusers:my-tiny-sd", pipeline=pipes["sd"])
    assert isinstance(ad, DiffusersAdapter) and ad.model == "my-tiny-sd"
    assert ad.capabilities.staging == "native" and ad.capabilities.switch_search


async def test_agenerate_and_aclose(pipes: dict[str, Any]) -> None:
    ad = adapter(pipes["flux"])
    result = await ad.agenerate(request(seed=None))
    assert isinstance(result.seed, int) and len(result.images) == 1
    await ad.aclose()
    with pytest.raises(AdapterError, match="closed"):
        ad.generate(request())
