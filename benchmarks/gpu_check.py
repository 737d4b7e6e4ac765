"""Full-size SDXL and SD3 architectures with random weights on a GPU: time per step for plain
sampling, staging and the switch search, and peak memory; prints JSON.

    python benchmarks/gpu_check.py                       # CUDA, fp16, 1024x1024, 20 steps
    python benchmarks/gpu_check.py --tiny --device cpu   # smoke test: tiny models, CPU, fp32

Nothing is downloaded: the configs below are those of stabilityai/stable-diffusion-xl-base-1.0
and stable-diffusion-3-medium (T5 left out, as the pipeline allows), built with random
weights directly on the device. Random weights make the images noise; only time and memory
mean anything. The search uses the synthetic scorer (no CLIP download) with one image.

Per family it reports the denoiser's own time per step (CUDA events around every denoiser
call, so VAE and text encoders are excluded), the wall time of each run, the denoiser calls
the adapter counted, and the peak allocated memory. Goal: staging costs no more per step
than plain sampling, and the whole script stays under 5 minutes on one H100.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

PROMPT = "a tea cup of iced coke"


def _plans() -> tuple[Any, Any]:
    from lcfix.compose import compose_plan
    from lcfix.plans import ConceptPair, PlannerInfo

    info = PlannerInfo(name="gpu-check", version="1")
    staged = compose_plan(
        PROMPT, [ConceptPair(fragile="tea cup", dominant="iced coke")], planner=info,
        descriptions={"tea cup": "small ceramic cup", "iced coke": "dark liquid with ice"},
    )  # fmt: skip
    return compose_plan(PROMPT, [], planner=info), staged


def _clip_config(hidden: int, layers: int, heads: int, inter: int, act: str) -> Any:
    from transformers import CLIPTextConfig

    # bos/eos/pad match the tiny in-code tokenizer; ids stay below the real vocab size.
    return CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, max_position_embeddings=77, hidden_act=act,
        projection_dim=hidden, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )  # fmt: skip


def build_sdxl(device: str, dtype: Any) -> Any:
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from lcfix.adapters._tiny import tiny_clip_tokenizer

    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(320, 640, 1280), attention_head_dim=(5, 10, 20),
            transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
        )  # fmt: skip
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            sample_size=1024, scaling_factor=0.13025, force_upcast=True,
        )  # fmt: skip
        te = CLIPTextModel(_clip_config(768, 12, 12, 3072, "quick_gelu"))
        te2 = CLIPTextModelWithProjection(_clip_config(1280, 32, 20, 5120, "gelu"))
    sched = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading",
    )  # fmt: skip
    pipe = StableDiffusionXLPipeline(
        unet=unet, vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=tiny_clip_tokenizer(),
        tokenizer_2=tiny_clip_tokenizer(), scheduler=sched,
    )  # fmt: skip
    return pipe.to(device, dtype)


def build_sd3(device: str, dtype: Any) -> Any:
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection

    from lcfix.adapters._tiny import tiny_clip_tokenizer

    with torch.device(device):
        transformer = SD3Transformer2DModel(
            sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
            attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
            caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=192,
        )  # fmt: skip
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), latent_channels=16, layers_per_block=2,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
            scaling_factor=1.5305,
        )  # fmt: skip
        te = CLIPTextModelWithProjection(_clip_config(768, 12, 12, 3072, "quick_gelu"))
        te2 = CLIPTextModelWithProjection(_clip_config(1280, 32, 20, 5120, "gelu"))
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        text_encoder=te, tokenizer=tiny_clip_tokenizer(), text_encoder_2=te2,
        tokenizer_2=tiny_clip_tokenizer(), text_encoder_3=None, tokenizer_3=None,
    )  # fmt: skip
    return pipe.to(device, dtype)


class StepTimer:
    """Sums the device time of every denoiser call (CUDA events; wall clock elsewhere)."""

    def __init__(self, module: Any, device: str) -> None:
        import torch

        self.torch = torch
        self.cuda = device.startswith("cuda")
        self.times: list[float] = []
        self._start: Any = None
        self._handles = [
            module.register_forward_pre_hook(self._pre),
            module.register_forward_hook(self._post),
        ]

    def _pre(self, *_: Any) -> None:
        if self.cuda:
            self._start = self.torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def _post(self, *_: Any) -> None:
        if self.cuda:
            end = self.torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            self.times.append(self._start.elapsed_time(end) / 1000.0)
        else:
            self.times.append(time.perf_counter() - self._start)

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def measure(family: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from lcfix.adapters import _tiny
    from lcfix.adapters.base import GenerationRequest
    from lcfix.adapters.local import DiffusersAdapter
    from lcfix.adapters.scorer import SyntheticScorer
    from lcfix.adapters.staging import denoiser

    dtype = getattr(torch, args.dtype)
    cuda = args.device.startswith("cuda")
    t0 = time.perf_counter()
    if args.tiny:
        pipe = _tiny.tiny_pipeline(family).to(args.device, dtype)
    else:
        pipe = build_sdxl(args.device, dtype) if family == "sdxl" else build_sd3(args.device, dtype)
    if cuda:
        torch.cuda.synchronize()
    out: dict[str, Any] = {
        "build_s": round(time.perf_counter() - t0, 2),
        "denoiser_params_m": round(sum(p.numel() for p in denoiser(pipe).parameters()) / 1e6, 1),
    }
    plain_plan, staged_plan = _plans()
    size = args.size
    runs = {
        "warmup": (plain_plan, {"num_inference_steps": 2}),
        "plain": (plain_plan, {}),
        "staged": (staged_plan, {}),
        "search": (staged_plan, {"search": "prompt", "search_images": 1, "search_cache": False}),
    }
    timer = StepTimer(denoiser(pipe), args.device)
    try:
        for name, (plan, extra) in runs.items():
            opts = {"num_inference_steps": args.steps, **extra}
            ad = DiffusersAdapter(
                pipeline=pipe, options=opts, scorer=SyntheticScorer.for_plan(staged_plan)
            )
            req = GenerationRequest(plan=plan, seed=0, width=size, height=size)
            timer.times.clear()
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            res = ad.generate(req)
            if cuda:
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
            if name == "warmup":
                continue
            steps = res.extra["denoiser_calls"]
            out[name] = {
                "wall_s": round(wall, 3),
                "denoiser_calls": steps,
                "image_steps": res.extra["denoiser_image_steps"],
                "ms_per_step": round(1000 * sum(timer.times) / max(1, len(timer.times)), 2),
                "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                if cuda
                else None,
            }
            if name == "search":
                group = res.extra["search"]["groups"][0]
                out[name].update(
                    ratio=round(steps / out["plain"]["denoiser_calls"], 3),
                    probes=[p["step"] for p in group["probes"]],
                    switch_step=group["step"],
                )
    finally:
        timer.close()
    plain, staged = out["plain"]["ms_per_step"], out["staged"]["ms_per_step"]
    out["staged_step_overhead_pct"] = round(100 * (staged - plain) / plain, 2) if plain else None
    del pipe
    if cuda:
        torch.cuda.empty_cache()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny in-code models (smoke test)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default=None, help="float16 (default on CUDA) or float32")
    parser.add_argument("--size", type=int, default=None, help="1024 (32 with --tiny)")
    parser.add_argument("--steps", type=int, default=None, help="20 (8 with --tiny)")
    parser.add_argument("--families", nargs="+", default=["sdxl", "sd3"])
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    args.dtype = args.dtype or ("float16" if cuda else "float32")
    args.size = args.size or (32 if args.tiny else 1024)
    args.steps = args.steps or (8 if args.tiny else 20)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LCFIX_CACHE_DIR", tempfile.mkdtemp(prefix="lcfix-gpu-"))

    import warnings

    import diffusers
    import torch

    # Random weights: fp16 overflow to NaN and "keep in float32" notices are expected noise.
    diffusers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    if not cuda:
        torch.set_num_threads(1)
    if cuda and not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device; use --device cpu --tiny for a smoke test"}))
        return 2
    started = time.perf_counter()
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cuda else args.device,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "dtype": args.dtype,
        "size": args.size,
        "steps": args.steps,
        "tiny": args.tiny,
        "families": {},
    }
    for family in args.families:
        try:
            result["families"][family] = measure(family, args)
        except Exception as exc:  # report and go on to the next family
            result["families"][family] = {"error": f"{type(exc).__name__}: {exc}"}
    result["total_s"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
