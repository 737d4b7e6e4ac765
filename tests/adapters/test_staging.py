"""Staging inside sampling: exactness on tiny pipelines of every family.

Each family's staged run is compared with a denoising loop written out by hand here, which
switches the conditioning (and the pooled embedding) at step k. Latents are compared, not
images: random-weight VAEs shrink differences.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback  # noqa: E402

from lcfix.adapters import _tiny  # noqa: E402
from lcfix.adapters.staging import (  # noqa: E402
    StagingCallback,
    denoiser,
    pipeline_family,
)
from lcfix.errors import UnsupportedError  # noqa: E402

STEPS = 6
K = 2
SIZE = 32
GUIDANCE = 5.0
SEED = 11
PROMPTS = ["tea cup", "a tea cup of iced coke"]
FAMILIES = ["sd", "sdxl", "sd3", "flux"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipes() -> dict[str, Any]:
    return {f: _tiny.tiny_pipeline(f) for f in FAMILIES}


def test_unsupported_pipeline_lists_the_supported_ones() -> None:
    class PixArtAlphaPipeline:
        pass

    with pytest.raises(UnsupportedError) as err:
        pipeline_family(PixArtAlphaPipeline())
    for name in ("StableDiffusionPipeline", "StableDiffusionXLPipeline", "FluxPipeline"):
        assert name in str(err.value)


# -- hand-written reference loops ------------------------------------------------------------


def _cfg(neg: Any, pos: Any) -> Any:
    return torch.cat([neg, pos])


@torch.no_grad()
def reference(pipe: Any, family: str, k: int, swap_pooled: bool = True) -> Any:
    """Denoise with PROMPTS[0] for steps < k and PROMPTS[1] after, written out per family."""
    g = torch.Generator().manual_seed(SEED)
    sched = pipe.scheduler
    vsf = pipe.vae_scale_factor
    if family == "sd":
        conds = []
        for p in PROMPTS:
            pos, neg = pipe.encode_prompt(p, "cpu", 1, True)
            conds.append(_cfg(neg, pos))
        sched.set_timesteps(STEPS)
        x = torch.randn((1, 4, SIZE // vsf, SIZE // vsf), generator=g) * sched.init_noise_sigma
        for i, t in enumerate(sched.timesteps):
            inp = sched.scale_model_input(torch.cat([x] * 2), t)
            u, c = pipe.unet(inp, t, encoder_hidden_states=conds[i >= k]).sample.chunk(2)
            x = sched.step(u + GUIDANCE * (c - u), t, x).prev_sample
        return x
    if family == "sdxl":
        conds, pooled = [], []
        for p in PROMPTS:
            pos, neg, pp, npp = pipe.encode_prompt(
                p, device="cpu", do_classifier_free_guidance=True
            )
            conds.append(_cfg(neg, pos))
            pooled.append(_cfg(npp, pp))
        ids = torch.tensor([[SIZE, SIZE, 0, 0, SIZE, SIZE]] * 2, dtype=torch.float32)
        sched.set_timesteps(STEPS)
        x = torch.randn((1, 4, SIZE // vsf, SIZE // vsf), generator=g) * sched.init_noise_sigma
        for i, t in enumerate(sched.timesteps):
            inp = sched.scale_model_input(torch.cat([x] * 2), t)
            added = {"text_embeds": pooled[i >= k], "time_ids": ids}
            out = pipe.unet(inp, t, encoder_hidden_states=conds[i >= k], added_cond_kwargs=added)
            u, c = out.sample.chunk(2)
            x = sched.step(u + GUIDANCE * (c - u), t, x).prev_sample
        return x
    if family == "sd3":
        conds, pooled = [], []
        for p in PROMPTS:
            pos, neg, pp, npp = pipe.encode_prompt(p, None, None, device="cpu")
            conds.append(_cfg(neg, pos))
            pooled.append(_cfg(npp, pp))
        sched.set_timesteps(STEPS)
        x = torch.randn((1, 4, SIZE // vsf, SIZE // vsf), generator=g)
        for i, t in enumerate(sched.timesteps):
            out = pipe.transformer(
                hidden_states=torch.cat([x] * 2), timestep=t.expand(2),
                encoder_hidden_states=conds[i >= k], pooled_projections=pooled[i >= k],
            )  # fmt: skip
            u, c = out.sample.chunk(2)
            x = sched.step(u + GUIDANCE * (c - u), t, x).prev_sample
        return x
    # flux: guidance-distilled, no CFG; latents are packed 2x2 patches
    import numpy as np
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

    embeds = [pipe.encode_prompt(p, None, device="cpu")[:2] for p in PROMPTS]
    channels = pipe.transformer.config.in_channels // 4
    x, img_ids = pipe.prepare_latents(1, channels, SIZE, SIZE, torch.float32, "cpu", g, None)
    cfg = sched.config
    mu = calculate_shift(
        x.shape[1], cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift, cfg.max_shift
    )
    sigmas = np.linspace(1.0, 1 / STEPS, STEPS)
    timesteps, _ = retrieve_timesteps(sched, STEPS, "cpu", sigmas=sigmas, mu=mu)
    sched.set_begin_index(0)
    txt_ids = torch.zeros(embeds[0][0].shape[1], 3)
    for i, t in enumerate(timesteps):
        pe = embeds[i >= k][0]
        pooled = embeds[(i >= k) if swap_pooled else 0][1]
        out = pipe.transformer(
            hidden_states=x, timestep=t.expand(1) / 1000, guidance=None,
            pooled_projections=pooled, encoder_hidden_states=pe, txt_ids=txt_ids,
            img_ids=img_ids,
        )  # fmt: skip
        x = sched.step(out.sample, t, x).prev_sample
    return x


def _count_calls(pipe: Any) -> tuple[list[int], Any]:
    calls: list[int] = []
    handle = denoiser(pipe).register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


def _staged(pipe: Any, cb: Any, **kw: Any) -> Any:
    return pipe(
        generator=torch.Generator().manual_seed(SEED), num_inference_steps=STEPS,
        guidance_scale=GUIDANCE, height=SIZE, width=SIZE, output_type="latent",
        callback_on_step_end=cb, **kw,
    ).images  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES)
def test_staged_equals_the_hand_written_loop(pipes: dict[str, Any], family: str) -> None:
    pipe = pipes[family]
    cb = StagingCallback.from_prompts(pipe, PROMPTS, [K / STEPS, 1.0])
    calls, handle = _count_calls(pipe)
    try:
        staged = _staged(pipe, cb, **cb.pipeline_inputs())
        staged_calls = len(calls)
        calls.clear()
        plain = pipe(
            prompt=PROMPTS[1], generator=torch.Generator().manual_seed(SEED),
            num_inference_steps=STEPS, guidance_scale=GUIDANCE, height=SIZE, width=SIZE,
            output_type="latent",
        ).images  # fmt: skip
    finally:
        handle.remove()
    expected = reference(pipe, family, K)
    assert torch.equal(staged, expected)
    assert not torch.equal(staged, plain)  # the switch did something
    assert staged_calls == len(calls) == STEPS  # staging costs no extra denoiser call
    assert [b.step for b in cb.boundaries] == [K]
    assert cb.boundaries[0].fraction == pytest.approx(K / STEPS)
    assert cb.boundaries[0].sigma_fraction is not None


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_prompt_strings_work_where_the_pipeline_repeats_embeddings(
    pipes: dict[str, Any], family: str
) -> None:
    pipe = pipes[family]
    cb = StagingCallback.from_prompts(pipe, PROMPTS, [K / STEPS, 1.0])
    staged = _staged(pipe, cb, prompt=PROMPTS[0])
    assert torch.equal(staged, reference(pipe, family, K))


def test_flux_pooled_embedding_is_swapped(pipes: dict[str, Any]) -> None:
    pipe = pipes["flux"]
    cb = StagingCallback.from_prompts(pipe, PROMPTS, [K / STEPS, 1.0])
    swapped = reference(pipe, "flux", K, swap_pooled=True)
    kept = reference(pipe, "flux", K, swap_pooled=False)
    assert not torch.equal(swapped, kept)  # the pooled vector matters
    assert torch.equal(_staged(pipe, cb, **cb.pipeline_inputs()), swapped)
    # Without the callback's own pooled tensor, Flux keeps stage 1's pooled vector, and says so.
    cb2 = StagingCallback.from_prompts(pipe, PROMPTS, [K / STEPS, 1.0])
    with pytest.warns(UserWarning, match="pooled embedding was not swapped"):
        out = _staged(
            pipe, cb2, prompt=PROMPTS[0], callback_on_step_end_tensor_inputs=cb2.tensor_inputs
        )
    assert torch.equal(out, kept)


class _Recorder(PipelineCallback):
    tensor_inputs: ClassVar[list[str]] = ["latents"]

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[int] = []

    def callback_fn(self, pipeline: Any, step_index: int, timestep: Any, kw: Any) -> Any:
        self.steps.append(step_index)
        return kw


def test_combines_with_other_callbacks(pipes: dict[str, Any]) -> None:
    pipe = pipes["sd"]
    cb = StagingCallback.from_prompts(pipe, PROMPTS, [K / STEPS, 1.0])
    rec = _Recorder()
    out = _staged(pipe, MultiPipelineCallbacks([cb, rec]), **cb.pipeline_inputs())
    assert torch.equal(out, reference(pipe, "sd", K))
    assert rec.steps == list(range(STEPS))


def test_three_stage_plan_switches_twice(pipes: dict[str, Any]) -> None:
    pipe = pipes["sd"]
    prompts = ["tea cup", "tea cup, hat", "a cat with a hat and a tea cup"]
    cb = StagingCallback.from_prompts(pipe, prompts, [1 / 6, 2 / 6, 1.0])
    seen: list[tuple[int, Any]] = []
    orig = cb.apply

    def spy(pipeline: Any, kw: Any, stage: int) -> None:
        seen.append((stage, pipeline))
        orig(pipeline, kw, stage)

    cb.apply = spy  # type: ignore[method-assign]
    _staged(pipe, cb, **cb.pipeline_inputs())
    assert [s for s, _ in seen] == [1, 2]
    assert [b.step for b in cb.boundaries] == [1, 2]


def test_missing_tensor_inputs_give_a_clear_error(pipes: dict[str, Any]) -> None:
    pipe = pipes["flux"]
    cb = StagingCallback.from_prompts(pipe, PROMPTS, [K / STEPS, 1.0])
    inputs = cb.pipeline_inputs()
    inputs.pop("callback_on_step_end_tensor_inputs")
    with pytest.raises(UnsupportedError, match="callback_on_step_end_tensor_inputs"):
        _staged(pipe, cb, **inputs)


def test_reusing_a_callback_restarts_its_stages(pipes: dict[str, Any]) -> None:
    pipe = pipes["sd3"]
    cb = StagingCallback.from_prompts(pipe, PROMPTS, [K / STEPS, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = _staged(pipe, cb, **cb.pipeline_inputs())
        second = _staged(pipe, cb, **cb.pipeline_inputs())
    assert torch.equal(first, second)
