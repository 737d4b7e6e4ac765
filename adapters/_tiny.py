# mypy: disable-error-code="no-untyped-call"
"""Tiny random-weight pipelines of every supported family, built fully offline.

For tests and benchmarks: nothing is downloaded, every module is built in code from a fixed
seed, so two builds give identical weights. Images are 32x32 for every family, and ten
steps take a fraction of a second on one CPU core.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

SchedulerName = Literal["ddim", "euler", "euler_a", "dpmpp_2m"]

WORDS = (
    "a", "of", "with", "and", "the", "on", "in", "photo", "depicts", "tea", "cup", "iced", "coke",
    "glass", "cat", "dog", "red", "blue", "hat", "bowl", "soup", "small", "ceramic", "handle",
    "dark", "brown", "liquid", "ice", "cubes", "vessel", "wooden", "table",
)  # fmt: skip


def _bytes_to_unicode() -> list[str]:
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def tiny_clip_tokenizer(words: tuple[str, ...] = WORDS) -> Any:
    """A byte-level BPE CLIP tokenizer with a few whole-word merges (ids < 1000)."""
    chars = _bytes_to_unicode()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for c in chars:
        vocab.setdefault(c + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for w in words:
        cur = w[0]
        for i, ch in enumerate(w[1:], 1):
            right = ch + ("</w>" if i == len(w) - 1 else "")
            if (cur, right) not in merges:
                merges.append((cur, right))
            cur += right
            vocab.setdefault(cur, len(vocab))
    merge_list: Any = merges  # transformers 5 wants tuples; its annotation says strings
    return CLIPTokenizer(vocab=vocab, merges=merge_list, model_max_length=77)


def tiny_t5_tokenizer(words: tuple[str, ...] = WORDS) -> Any:
    """A unigram T5 tokenizer over a small word list (plus single letters)."""
    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for w in words:
        vocab.append(("▁" + w, -1.0))
    for c in "abcdefghijklmnopqrstuvwxyz,.":
        vocab.append((c, -5.0))
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def _text_config(hidden: int = 32, projection: int = 32) -> Any:
    return CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden,
        intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=1000,
        hidden_act="gelu", projection_dim=projection,
    )  # fmt: skip


def tiny_scheduler(name: SchedulerName = "ddim") -> Any:
    """One of the SD-family schedulers with SD 1.x's beta schedule."""
    common: dict[str, Any] = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "steps_offset": 1,
    }
    if name == "ddim":
        return DDIMScheduler(clip_sample=False, set_alpha_to_one=False, **common)
    if name == "euler":
        return EulerDiscreteScheduler(timestep_spacing="leading", **common)
    if name == "euler_a":
        return EulerAncestralDiscreteScheduler(timestep_spacing="leading", **common)
    if name == "dpmpp_2m":
        return DPMSolverMultistepScheduler(**common)
    raise ValueError(f"unknown tiny scheduler {name!r}")


def _vae(latent_channels: int = 4, *, flow: bool = False) -> Any:
    # SD3 and Flux VAEs shift as well as scale their latents, and have no quant convs.
    extra: dict[str, Any] = (
        {"shift_factor": 0.0609, "scaling_factor": 1.5035, "use_quant_conv": False,
         "use_post_quant_conv": False} if flow else {}
    )  # fmt: skip
    return AutoencoderKL(
        block_out_channels=[8, 16], in_channels=3, out_channels=3,
        latent_channels=latent_channels, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, norm_num_groups=8, layers_per_block=1, **extra,
    )  # fmt: skip


def _ready(pipe: Any) -> Any:
    # Modules built in code start in training mode (T5 has dropout): inference mode, as
    # from_pretrained would leave them.
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sd(scheduler: SchedulerName = "ddim") -> Any:
    """A tiny StableDiffusionPipeline (SD 1.x/2.x layout); 32x32 images."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        norm_num_groups=8, attention_head_dim=4,
    )  # fmt: skip
    vae = _vae()
    te = CLIPTextModel(_text_config())
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=te, tokenizer=tiny_clip_tokenizer(),
        scheduler=tiny_scheduler(scheduler), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    return _ready(pipe)


def _sdxl_components(scheduler: SchedulerName) -> dict[str, Any]:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=8,
    )  # fmt: skip
    vae = _vae()
    te = CLIPTextModel(_text_config())
    te2 = CLIPTextModelWithProjection(_text_config())
    sched = tiny_scheduler(scheduler if scheduler != "ddim" else "euler")
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": te,
        "text_encoder_2": te2,
        "tokenizer": tiny_clip_tokenizer(),
        "tokenizer_2": tiny_clip_tokenizer(),
        "scheduler": sched,
    }


def tiny_sdxl(scheduler: SchedulerName = "euler") -> Any:
    """A tiny StableDiffusionXLPipeline; 32x32 images."""
    pipe = StableDiffusionXLPipeline(**_sdxl_components(scheduler))
    return _ready(pipe)


def tiny_sdxl_refiner(base: Any) -> Any:
    """An img2img pipeline sharing the base's modules, standing in for the SDXL refiner."""
    pipe = StableDiffusionXLImg2ImgPipeline(**base.components, requires_aesthetics_score=False)
    return _ready(pipe)


def tiny_sd3() -> Any:
    """A tiny StableDiffusion3Pipeline with two tiny CLIP encoders and no T5; 32x32 images."""
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8,
        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=64,
        pooled_projection_dim=64, out_channels=4,
    )  # fmt: skip
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, vae=_vae(flow=True), scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=CLIPTextModelWithProjection(_text_config()), tokenizer=tiny_clip_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(_text_config()),
        tokenizer_2=tiny_clip_tokenizer(), text_encoder_3=None, tokenizer_3=None,
    )  # fmt: skip
    return _ready(pipe)


def tiny_flux() -> Any:
    """A tiny FluxPipeline with a tiny CLIP and a tiny T5; 32x32 images."""
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    )  # fmt: skip
    t5 = T5EncoderModel(
        T5Config(vocab_size=200, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                 pad_token_id=0, eos_token_id=1)
    )  # fmt: skip
    pipe = FluxPipeline(
        transformer=transformer, vae=_vae(latent_channels=1, flow=True),
        scheduler=FlowMatchEulerDiscreteScheduler(), text_encoder=CLIPTextModel(_text_config()),
        tokenizer=tiny_clip_tokenizer(), text_encoder_2=t5, tokenizer_2=tiny_t5_tokenizer(),
    )  # fmt: skip
    return _ready(pipe)


Family = Literal["sd", "sdxl", "sd3", "flux"]
SIZES: dict[str, int] = {"sd": 32, "sdxl": 32, "sd3": 32, "flux": 32}
"""The image side each tiny family is built for."""


def tiny_pipeline(family: Family, scheduler: SchedulerName | None = None) -> Any:
    """The tiny pipeline of ``family``."""
    if family == "sd":
        return tiny_sd(scheduler or "ddim")
    if family == "sdxl":
        return tiny_sdxl(scheduler or "euler")
    if family == "sd3":
        return tiny_sd3()
    if family == "flux":
        return tiny_flux()
    raise ValueError(f"unknown family {family!r}")


def tiny_clip() -> tuple[Any, Any]:
    """A tiny random CLIPModel and its processor (32x32 crops)."""
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config={
            "vocab_size": 1000, "hidden_size": 32, "intermediate_size": 37,
            "num_hidden_layers": 2, "num_attention_heads": 4, "bos_token_id": 0,
            "eos_token_id": 1, "pad_token_id": 1,
        },
        vision_config={
            "image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 37,
            "num_hidden_layers": 2, "num_attention_heads": 4,
        },
        projection_dim=16,
    )  # fmt: skip
    model = CLIPModel(cfg).eval()
    proc = CLIPProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tiny_clip_tokenizer(),
    )
    return model, proc
