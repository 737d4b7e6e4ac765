"""Stability AI's v2beta stable-image API (multipart), with img2img staging emulation.

Text-to-image sends the plan's ``natural`` rewrite, the negative prompt (plus the plan's latent
concepts, e.g. ``glass``) and a seed. Staging emulation, the default for an at-risk plan:

1. text-to-image with the stage-1 prompt (the fragile concept alone);
2. image-to-image from that picture with the full prompt, ``strength = 1 - r`` (r = the end
   of stage 1) and the same seed.

This approximates the paper's switch: img2img re-noises the stage-1 image to about the step
where stage 1 would have ended and denoises the rest with the full prompt. It is not the same
trajectory (the first image was fully denoised, then re-noised), and it costs two requests.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Literal

from pydantic import Field

from lcfix.adapters._hosted import (
    HostedAdapter,
    fragile_stage,
    nearest_ratio,
    negative_with_latents,
    prompt_for,
    wants_emulation,
)
from lcfix.adapters._http import Call, FileField, Flow, Reply, decode_image
from lcfix.adapters.base import (
    AdapterOptions,
    Capabilities,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    SentRequest,
)
from lcfix.errors import BackendError, ContentPolicyError, UnsupportedError

ASPECT_RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
MAX_SEED = 4294967294
_SERVICES = ("ultra", "core")

AspectRatio = Literal["16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21"]


class StabilityOptions(AdapterOptions):
    """Options of the ``stability`` backend."""

    aspect_ratio: AspectRatio | None = Field(
        default=None, description="Default: the closest ratio to width/height, else 1:1"
    )
    output_format: Literal["png", "jpeg", "webp"] = "png"
    style_preset: str | None = None
    cfg_scale: float | None = Field(default=None, ge=1, le=10, description="sd3 models only")
    strength: float | None = Field(
        default=None, gt=0, lt=1, description="img2img strength for staging; default 1 - r"
    )
    exclude_latent: bool = Field(
        default=True, description="Add the plan's latent concepts to the negative prompt"
    )
    emulate_staging: bool = Field(
        default=True, description="Let staging=auto emulate staging with text-to-image + img2img"
    )


class StabilityAdapter(HostedAdapter):
    """The ``stability`` backend: ``stability:sd3.5-large``, ``stability:ultra``, ..."""

    name: ClassVar[str] = "stability"
    capabilities: ClassVar[Capabilities] = Capabilities(
        staging="emulated", dialect="natural", negative_prompt=True, seed=True, max_images=10
    )
    Options: ClassVar[type[AdapterOptions]] = StabilityOptions
    key_env: ClassVar[str | None] = "STABILITY_API_KEY"
    default_api_base: ClassVar[str | None] = "https://api.stability.ai"
    options: StabilityOptions

    def check_model(self, model: str) -> str:
        model = super().check_model(model)
        if not (model.startswith("sd3") or model in _SERVICES):
            raise UnsupportedError(
                f"unknown Stability model {model!r}; use sd3.5-large, sd3.5-large-turbo, "
                "sd3.5-medium, sd3.5-flash, ultra or core",
                adapter=self.name,
            )
        return model

    @property
    def endpoint(self) -> str:
        service = "sd3" if self.model.startswith("sd3") else self.model
        return f"v2beta/stable-image/generate/{service}"

    def _aspect(self, request: GenerationRequest) -> tuple[str, list[str]]:
        if self.options.aspect_ratio:
            return self.options.aspect_ratio, []
        if request.width is None or request.height is None:
            return "1:1", []
        ratio, exact = nearest_ratio(request.width, request.height, ASPECT_RATIOS)
        if exact:
            return ratio, []
        size = f"{request.width}x{request.height}"
        return ratio, [f"stability takes aspect ratios, not sizes; sent {ratio} for {size}"]

    def _form(
        self,
        prompt: str,
        negative: str | None,
        seed: int,
        *,
        aspect: str | None = None,
        image: tuple[bytes, str] | None = None,
        strength: float | None = None,
    ) -> list[FileField]:
        o = self.options
        fields: dict[str, Any] = {
            "prompt": prompt,
            "negative_prompt": negative,
            "seed": seed,
            "output_format": o.output_format,
            "style_preset": o.style_preset,
        }
        if self.model.startswith("sd3"):
            fields["model"] = self.model
            fields["mode"] = "image-to-image" if image else "text-to-image"
            fields["cfg_scale"] = o.cfg_scale
        if image is None:
            fields["aspect_ratio"] = aspect
        else:
            fields["strength"] = strength
        form: list[FileField] = [
            (k, (None, str(v), None)) for k, v in fields.items() if v is not None
        ]
        if image is not None:
            data, mime = image
            form.append(("image", (f"stage1.{mime.partition('/')[2]}", data, mime)))
        return form

    def _call(self, form: list[FileField]) -> Call:
        accept = {"Accept": "application/json"}
        return Call("POST", self.endpoint, files=form, headers=accept, idempotent=True)

    def _image(self, reply: Reply) -> tuple[bytes, str, int | None]:
        body = reply.json_object
        if body.get("finish_reason") == "CONTENT_FILTERED":
            raise ContentPolicyError(
                "Stability's content filter blocked the image (finish_reason CONTENT_FILTERED); "
                "rephrase the prompt",
                adapter=self.name,
                status_code=reply.status,
                body={"finish_reason": "CONTENT_FILTERED", "seed": body.get("seed")},
            )
        if not body.get("image"):
            raise BackendError("the response has no 'image'", adapter=self.name)
        data, mime = decode_image(body["image"], adapter=self.name)
        seed = body.get("seed")
        return data, mime, seed if isinstance(seed, int) else None

    def _flow(self, request: GenerationRequest) -> Flow[GenerationResult]:
        plan = request.plan
        if request.num_images > self.capabilities.max_images:
            raise UnsupportedError(
                f"at most {self.capabilities.max_images} images per request", adapter=self.name
            )
        emulate = wants_emulation(
            request.staging, plan, adapter=self.name, auto=self.options.emulate_staging
        )
        aspect, warnings = self._aspect(request)
        if emulate and self.model == "core":
            if request.staging == "emulate":
                raise UnsupportedError(
                    "stability:core has no image-to-image, so staging cannot be emulated; "
                    "use sd3.5-large or ultra",
                    adapter=self.name,
                )
            emulate = False
            warnings.append("stability:core has no image-to-image; sent the rewrite only")
        prompt = prompt_for(plan, "natural")
        negative = request.negative_prompt
        if self.options.exclude_latent:
            negative = negative_with_latents(negative, plan)
        base_seed = request.seed if request.seed is not None else random.randint(0, MAX_SEED)
        stage = fragile_stage(plan) if emulate else None
        strength = self.options.strength or (round(1.0 - stage.end, 4) if stage else None)

        images: list[GeneratedImage] = []
        sent: list[SentRequest] = []
        timings: dict[str, float] = {"stage1_s": 0.0, "generate_s": 0.0}
        for i in range(request.num_images):
            seed = (base_seed + i) % (MAX_SEED + 1)
            init: tuple[bytes, str] | None = None
            if stage is not None:
                form = self._form(stage.prompt, negative, seed, aspect=aspect)
                first: Reply = yield self._call(form)
                data, mime, _ = self._image(first)
                init = (data, mime)
                extra = {"endpoint": self.endpoint, "seed": seed, "stage_end": stage.end}
                extra.update(first.trace)
                sent.append(SentRequest(kind="stage", prompt=stage.prompt, extra=extra))
                timings["stage1_s"] += first.elapsed
            form = self._form(prompt, negative, seed, aspect=aspect, image=init, strength=strength)
            reply: Reply = yield self._call(form)
            data, mime, got_seed = self._image(reply)
            kind = "img2img" if init else "generate"
            extra = {"endpoint": self.endpoint, "seed": seed, "negative_prompt": negative}
            if init:
                extra["strength"] = strength
            sent.append(SentRequest(kind=kind, prompt=prompt, extra={**extra, **reply.trace}))
            timings["generate_s"] += reply.elapsed
            images.append(
                GeneratedImage(
                    data=data, mime_type=mime, index=i, seed=seed if got_seed is None else got_seed
                )
            )

        return GenerationResult(
            backend=self.name,
            model=self.model,
            plan=plan,
            images=tuple(images),
            prompt_sent=prompt,
            requests=tuple(sent),
            staging="emulated" if stage else "none",
            seed=base_seed,
            warnings=tuple(warnings),
            timings={k: round(v, 3) for k, v in timings.items() if v or k == "generate_s"},
            extra={"aspect_ratio": aspect, "negative_prompt": negative, "strength": strength},
        )
