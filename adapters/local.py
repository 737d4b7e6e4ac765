"""The local diffusers backend: MoCE concept staging inside sampling, and the switch search.

    >>> from lcfix.adapters.local import DiffusersAdapter
    >>> adapter = DiffusersAdapter(pipeline=pipe)               # or DiffusersAdapter("org/model")
    >>> result = adapter.generate(GenerationRequest(plan=plan, seed=7, num_images=4))
    >>> result.extra["switch_steps"], result.extra["sigma_fractions"]

Single-model staging (the default) switches the text conditioning inside one sampling pass
(see ``lcfix.adapters.staging``). ``mode="refiner"`` is the paper's setup: SDXL base draws
the early stages up to ``denoising_end`` and the SDXL refiner finishes the full prompt from
``denoising_start``. ``search="prompt"`` (or ``"image"``, one switch step per seed) runs the
switch-point search (``lcfix.adapters.search``) with a CLIP scorer.

Importing this module is cheap; torch and diffusers load when an adapter is built.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from lcfix.adapters.base import (
    AdapterOptions,
    Capabilities,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    SentRequest,
    parse_options,
)
from lcfix.errors import AdapterError, ConfigError, ExtraNotInstalledError, UnsupportedError
from lcfix.plans import Stage

_NAME = "diffusers"


class DiffusersOptions(AdapterOptions):
    """Options of the diffusers backend (unknown names are rejected)."""

    num_inference_steps: int | None = Field(
        default=None, ge=1, le=1000, description="Sampling steps; default: the pipeline's"
    )
    guidance_scale: float | None = Field(
        default=None, ge=0.0, description="Classifier-free guidance; default: the pipeline's"
    )
    true_cfg_scale: float | None = Field(
        default=None, ge=1.0, description="Flux only: >1 enables the negative prompt"
    )
    mode: Literal["single", "refiner"] = Field(
        default="single",
        description="single: stage inside one pass; refiner: SDXL base then refiner (the paper)",
    )
    refiner: str = Field(
        default="stabilityai/stable-diffusion-xl-refiner-1.0",
        description="Refiner model id for mode='refiner' when no refiner pipeline is given",
    )
    search: Literal["off", "prompt", "image"] = Field(
        default="off", description="Switch-point search: one step per prompt, or per image"
    )
    search_threshold: float = Field(default=0.72, gt=0.0, description="Accept when both reach it")
    search_epsilon: float = Field(default=0.01, ge=0.0, description="Accept when |D| is below it")
    search_range: tuple[float, float] = Field(
        default=(0.025, 0.475), description="Stage-1 end fractions the search may try"
    )
    search_images: int = Field(
        default=4, ge=1, le=64, description="search='prompt': seeds scored per probe"
    )
    search_budget: float = Field(
        default=2.0, ge=1.0, description="Most denoiser work, relative to plain sampling"
    )
    search_cache: bool = Field(default=True, description="Reuse switch steps found before")
    output_type: Literal["pil", "latent"] = Field(
        default="pil", description="pil: PNG images; latent: latents in extra['latents']"
    )
    scheduler: str | None = Field(
        default=None, description="A diffusers scheduler class name to sample with instead"
    )
    max_sequence_length: int | None = Field(
        default=None, ge=1, description="SD3/Flux T5 length; default: the pipeline's"
    )

    @model_validator(mode="after")
    def _check_range(self) -> DiffusersOptions:
        a, b = self.search_range
        if not 0.0 < a < b < 1.0:
            raise ValueError(f"search_range must satisfy 0 < start < end < 1, got {a}, {b}")
        return self


def _import_torch() -> Any:
    try:
        import diffusers  # noqa: F401
        import torch
    except ImportError as exc:
        raise ExtraNotInstalledError(
            "The diffusers backend", "diffusion", exc.name or "diffusers"
        ) from exc
    return torch


def _resolve_device(torch: Any, device: str | None) -> str:
    if device:
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


_DTYPES = {"float16": "float16", "fp16": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float32": "float32", "fp32": "float32"}  # fmt: skip


def _resolve_dtype(torch: Any, dtype: Any, device: str, family: str | None) -> Any:
    if dtype is not None and not isinstance(dtype, str):
        return dtype
    if isinstance(dtype, str) and dtype != "auto":
        name = _DTYPES.get(dtype.lower())
        if name is None:
            raise ConfigError(f"dtype must be one of {', '.join(sorted(_DTYPES))} or auto")
        return getattr(torch, name)
    if device.startswith("cuda"):
        # Flux is trained and shipped in bf16; the SD family runs well in fp16.
        return torch.bfloat16 if family == "flux" else torch.float16
    if device.startswith("mps"):
        return torch.float16
    return torch.float32


def png_bytes(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class DiffusersAdapter:
    """Run lcfix plans on a local diffusers pipeline (SD 1.x/2.x, SDXL, SD3, Flux).

    ``model`` is a model id or local path loaded with ``from_pretrained``, or give
    ``pipeline=`` a pipeline you already have (it is used as is unless ``device``/``dtype``
    are given). ``refiner=`` takes an SDXL refiner pipeline for ``mode="refiner"``;
    ``scorer=`` any ``lcfix.adapters.scorer.Scorer`` for the search (default: CLIP ViT-B/32,
    loaded on first use). ``cpu_offload=True`` moves each model to the GPU only while it runs.
    """

    name: ClassVar[str] = _NAME
    capabilities: ClassVar[Capabilities] = Capabilities(
        staging="native",
        dialect="stages",
        negative_prompt=True,
        seed=True,
        max_images=64,
        switch_search=True,
    )
    Options: ClassVar[type[AdapterOptions]] = DiffusersOptions

    def __init__(
        self,
        model: Any = "",
        *,
        pipeline: Any = None,
        refiner: Any = None,
        options: DiffusersOptions | Mapping[str, Any] | None = None,
        device: str | None = None,
        dtype: Any = None,
        cpu_offload: bool = False,
        scorer: Any = None,
        ratio_cache: Any = None,
        load_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.options = parse_options(DiffusersOptions, options, adapter=_NAME)
        torch = _import_torch()
        from lcfix.adapters.staging import pipeline_family

        if pipeline is None and not isinstance(model, str):
            pipeline, model = model, ""
        self._owned = pipeline is None
        dev = _resolve_device(torch, device)
        if pipeline is None:
            if not model:
                raise ConfigError("give the diffusers backend a model id or a pipeline object")
            pipeline = self._load(torch, str(model), dev, dtype, load_kwargs or {})
        elif device is not None or dtype is not None:
            fam = pipeline_family(pipeline)
            pipeline = pipeline.to(dev, _resolve_dtype(torch, dtype, dev, fam))
        self.family = pipeline_family(pipeline)
        if self.options.scheduler:
            pipeline = self._with_scheduler(pipeline, self.options.scheduler)
        self.model = str(model) or getattr(pipeline, "name_or_path", "") or type(pipeline).__name__
        self.pipe = pipeline
        self.refiner = refiner
        if self.options.mode == "refiner":
            if self.family != "sdxl":
                raise UnsupportedError(
                    f"mode='refiner' needs an SDXL base pipeline, got {type(pipeline).__name__}",
                    adapter=_NAME,
                )
            if self.refiner is None:
                self.refiner = self._load_refiner(torch, dev, dtype)
        if cpu_offload:
            self._offload(dev)
        # Where the pipeline actually runs (a given pipeline stays where it is).
        self.device = dev if device is not None or self._owned else str(pipeline._execution_device)
        self._scorer = scorer
        self._ratio_cache = ratio_cache
        self._lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------------

    def _load(self, torch: Any, model: str, dev: str, dtype: Any, kw: Mapping[str, Any]) -> Any:
        from diffusers import DiffusionPipeline

        from lcfix.adapters.staging import pipeline_family

        guess = "flux" if "flux" in model.lower() else None
        try:
            pipe = DiffusionPipeline.from_pretrained(  # type: ignore[no-untyped-call]
                model, torch_dtype=_resolve_dtype(torch, dtype, dev, guess), **kw
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load the diffusers model {model!r}: {exc}. Check the id or path, log in "
                "(hf auth login) for gated models, download it while online, or pass "
                "pipeline=<a pipeline object>"
            ) from exc
        pipeline_family(pipe)  # UnsupportedError before moving gigabytes to the device
        return pipe.to(dev)

    def _load_refiner(self, torch: Any, dev: str, dtype: Any) -> Any:
        from diffusers import StableDiffusionXLImg2ImgPipeline

        rid = self.options.refiner
        try:
            ref = StableDiffusionXLImg2ImgPipeline.from_pretrained(  # type: ignore[no-untyped-call]
                rid,
                text_encoder_2=self.pipe.text_encoder_2,
                vae=self.pipe.vae,
                torch_dtype=_resolve_dtype(torch, dtype, dev, "sdxl"),
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load the SDXL refiner {rid!r}: {exc}. Pass refiner=<pipeline> or set "
                "the 'refiner' option to a local path"
            ) from exc
        return ref.to(dev)

    def _with_scheduler(self, pipe: Any, name: str) -> Any:
        import diffusers

        cls = getattr(diffusers, name, None)
        if cls is None or not name.endswith("Scheduler"):
            raise ConfigError(f"unknown diffusers scheduler {name!r} (e.g. EulerDiscreteScheduler)")
        # A new pipeline object sharing every module: the caller's pipeline keeps its scheduler.
        return type(pipe)(
            **{**pipe.components, "scheduler": cls.from_config(pipe.scheduler.config)}
        )

    def _offload(self, dev: str) -> None:
        if not dev.startswith(("cuda", "xpu")):
            raise ConfigError("cpu_offload needs a CUDA (or XPU) device; leave it off on CPU/MPS")
        for p in (self.pipe, self.refiner):
            if p is not None:
                p.enable_model_cpu_offload(device=dev)

    # -- helpers ---------------------------------------------------------------------------

    @property
    def scorer(self) -> Any:
        """The search's scorer (CLIP ViT-B/32 unless one was given), built on first use."""
        if self._scorer is None:
            from lcfix.adapters.scorer import CLIPScorer

            self._scorer = CLIPScorer(device=self.device)
        return self._scorer

    @property
    def ratio_cache(self) -> Any:
        if self._ratio_cache is None:
            from lcfix.adapters.search import RatioCache

            self._ratio_cache = RatioCache()
        return self._ratio_cache

    def generator_device(self) -> str:
        # CUDA generators on CUDA; CPU generators elsewhere (diffusers' advice for MPS).
        return "cuda" if str(self.pipe._execution_device).startswith("cuda") else "cpu"

    def loop_length(self, steps: int) -> int:
        """How many times the pipeline's loop calls back for ``steps`` inference steps."""
        import copy

        sched = self.pipe.scheduler
        if getattr(sched, "order", 1) == 1:
            return steps
        probe = copy.deepcopy(sched)
        probe.set_timesteps(steps)
        return len(probe.timesteps)

    def default(self, name: str) -> Any:
        import inspect

        return inspect.signature(self.pipe.__call__).parameters[name].default

    # -- the Protocol ----------------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Generate ``request.num_images`` images with the plan's stages (and search)."""
        from lcfix.adapters._generate import Job, run_job

        if self.pipe is None:
            raise AdapterError("this adapter was closed; build a new one", adapter=_NAME)
        with self._lock:
            started = time.perf_counter()
            job = Job.build(self, request)
            out = run_job(self, job)
            elapsed = time.perf_counter() - started
        images = tuple(
            GeneratedImage(data=png_bytes(im), index=i, seed=seed)
            for i, (im, seed) in enumerate(zip(out.images, job.seeds, strict=False))
        )
        plan = request.plan
        stages = job.stages
        requests = tuple(
            SentRequest(kind="stage", prompt=s.prompt, extra={"end": s.end}) for s in stages
        )
        return GenerationResult(
            backend=_NAME,
            model=self.model,
            plan=plan,
            images=images,
            prompt_sent=stages[-1].prompt,
            requests=requests,
            staging="native" if len(stages) > 1 else "none",
            seed=job.seeds[0],
            warnings=tuple(out.warnings),
            timings={"total_s": round(elapsed, 4), **out.timings},
            extra=out.extra,
        )

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        """``generate`` in a worker thread (sampling is GPU- or CPU-bound)."""
        return await asyncio.to_thread(self.generate, request)

    def close(self) -> None:
        """Drop the pipelines (and free GPU memory when this adapter loaded them)."""
        owned = self._owned
        self.pipe = None
        self.refiner = None
        if owned:
            torch = _import_torch()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    async def aclose(self) -> None:
        self.close()


def stages_for(request: GenerationRequest) -> tuple[Stage, ...]:
    """The stages to run: the plan's, or only the full prompt when staging is off."""
    plan = request.plan
    if request.staging == "off" or len(plan.stages) < 2:
        return (Stage(prompt=plan.stages[-1].prompt, end=1.0),)
    return plan.stages


def new_seed() -> int:
    return secrets.randbelow(2**31 - 64)


def seeds_for(request: GenerationRequest) -> list[int]:
    base = request.seed if request.seed is not None else new_seed()
    return [base + i for i in range(request.num_images)]


def concept_roles(plan: Any) -> tuple[list[Any], list[str], list[str]]:
    """The plan's concepts (with descriptions) and which names are fragile or dominant."""
    from lcfix.plans import Concept

    fragile = list(dict.fromkeys(p.fragile for p in plan.pairs))
    lowered = {f.lower() for f in fragile}
    dominant = [
        d for d in dict.fromkeys(p.dominant for p in plan.pairs) if d.lower() not in lowered
    ]
    known = {c.name.lower(): c for c in plan.concepts}
    concepts = [known.get(n.lower(), Concept(name=n)) for n in [*fragile, *dominant]]
    return concepts, fragile, dominant


__all__: Sequence[str] = ["DiffusersAdapter", "DiffusersOptions"]
