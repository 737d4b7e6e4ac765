"""OpenAI images (gpt-image-*) over lcfix's own httpx client.

Sends the plan's ``natural`` rewrite, which names the fragile concept early and explicitly,
and audits the ``revised_prompt`` the API returns. Staging emulation (``staging="emulate"``,
or ``"auto"`` with the ``emulate_staging`` option) first draws the fragile concept alone, then
passes that image to ``/images/edits`` with the full prompt. That is an *edit* of a finished
image, not resumed denoising: OpenAI has no strength parameter, so the edit may keep or
discard as much of the first image as it likes.

    >>> adapter = OpenAIImagesAdapter("gpt-image-1")            # reads OPENAI_API_KEY
    >>> result = adapter.generate(GenerationRequest(plan=plan))
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, ClassVar, Literal

from pydantic import Field

from lcfix.adapters._hosted import (
    HostedAdapter,
    audit_revised,
    fragile_stage,
    nearest_ratio,
    prompt_for,
    wants_emulation,
)
from lcfix.adapters._http import Call, FileField, Flow, Reply, Sleep, decode_image
from lcfix.adapters.base import (
    AdapterOptions,
    Capabilities,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    SentRequest,
)
from lcfix.errors import BackendError, UnsupportedError

SIZES = ("1024x1024", "1536x1024", "1024x1536")
MAX_IMAGES = 10
_RETIRED = ("dall-e-2", "dall-e-3")
_Image = tuple[bytes, str, str | None]  # data, mime type, revised prompt


class OpenAIImagesOptions(AdapterOptions):
    """Options of the ``openai`` backend (``-o KEY=VALUE`` on the command line)."""

    size: str | None = Field(
        default=None,
        pattern=r"^(auto|\d{2,5}x\d{2,5})$",
        description="1024x1024, 1536x1024, 1024x1536 or auto; default: from width/height",
    )
    quality: Literal["low", "medium", "high", "auto"] | None = None
    background: Literal["transparent", "opaque", "auto"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: int | None = Field(default=None, ge=0, le=100)
    moderation: Literal["auto", "low"] | None = None
    input_fidelity: Literal["high", "low"] | None = Field(
        default=None, description="How closely the staging edit keeps the stage-1 image"
    )
    user: str | None = None
    emulate_staging: bool = Field(
        default=False,
        description="Let staging=auto emulate staging (two requests: generate, then edit)",
    )


class OpenAIImagesAdapter(HostedAdapter):
    """The ``openai`` backend: ``openai:gpt-image-1``, ``openai:gpt-image-1.5``, ..."""

    name: ClassVar[str] = "openai"
    capabilities: ClassVar[Capabilities] = Capabilities(
        staging="emulated", dialect="natural", max_images=MAX_IMAGES, revised_prompt=True
    )
    Options: ClassVar[type[AdapterOptions]] = OpenAIImagesOptions
    key_env: ClassVar[str | None] = "OPENAI_API_KEY"
    base_env: ClassVar[str | None] = "OPENAI_BASE_URL"
    default_api_base: ClassVar[str | None] = "https://api.openai.com/v1"
    options: OpenAIImagesOptions

    def check_model(self, model: str) -> str:
        model = super().check_model(model)
        if model.lower().startswith(_RETIRED):
            raise UnsupportedError(
                f"{model} was retired by OpenAI on May 12, 2026; use openai:gpt-image-1.5 "
                "(or gpt-image-1, gpt-image-1-mini, gpt-image-2)",
                adapter=self.name,
            )
        return model

    def _size(self, request: GenerationRequest) -> tuple[str | None, list[str]]:
        if self.options.size:
            return self.options.size, []
        w, h = request.width, request.height
        if w is None and h is None:
            return None, []
        if w is None or h is None:
            return None, ["openai needs both width and height; the default size was used"]
        if f"{w}x{h}" in SIZES:
            return f"{w}x{h}", []
        ratio, _ = nearest_ratio(w, h, [s.replace("x", ":") for s in SIZES])
        size = ratio.replace(":", "x")
        return size, [f"openai supports the sizes {', '.join(SIZES)}; sent {size} for {w}x{h}"]

    def _params(self, n: int, size: str | None) -> dict[str, Any]:
        o = self.options
        params = {
            "model": self.model,
            "n": n,
            "size": size,
            "quality": o.quality,
            "background": o.background,
            "output_format": o.output_format,
            "output_compression": o.output_compression,
            "moderation": o.moderation,
            "user": o.user,
        }
        return {k: v for k, v in params.items() if v is not None}

    def _flow(self, request: GenerationRequest) -> Flow[GenerationResult]:
        plan = request.plan
        if request.num_images > MAX_IMAGES:
            raise UnsupportedError(f"at most {MAX_IMAGES} images per request", adapter=self.name)
        emulate = wants_emulation(
            request.staging, plan, adapter=self.name, auto=self.options.emulate_staging
        )
        prompt = prompt_for(plan, "natural")
        size, warnings = self._size(request)
        if request.negative_prompt:
            prompt = f"{prompt} Avoid: {request.negative_prompt.strip().rstrip('.')}."
            warnings.append("openai has no negative prompt; it was added as 'Avoid: ...'")
        if request.seed is not None:
            warnings.append("openai takes no seed; the images are not reproducible")
        params = self._params(request.num_images, size)
        sent: list[SentRequest] = []
        timings: dict[str, float] = {}
        extra: dict[str, Any] = {}

        if emulate:
            stage = fragile_stage(plan)
            first_body = {**params, "n": 1, "prompt": stage.prompt}
            first = yield Call("POST", "images/generations", json=first_body, idempotent=True)
            stage_images = yield from self._images(first)
            data, mime, _ = stage_images[0]
            sent.append(_sent("stage", stage.prompt, "/images/generations", first, stage.end))
            timings["stage1_s"] = round(first.elapsed, 3)
            extra["stage1_usage"] = first.json.get("usage")
            reply = yield Call(
                "POST",
                "images/edits",
                files=self._edit_form(prompt, params, data, mime),
                idempotent=True,
            )
            sent.append(_sent("edit", prompt, "/images/edits", reply))
        else:
            body = {**params, "prompt": prompt}
            reply = yield Call("POST", "images/generations", json=body, idempotent=True)
            sent.append(_sent("generate", prompt, "/images/generations", reply))
        timings["generate_s"] = round(reply.elapsed, 3)

        images = yield from self._images(reply)
        revised = next((r for _, _, r in images if r), None)
        warnings += audit_revised(plan, revised, adapter=self.name)
        return GenerationResult(
            backend=self.name,
            model=self.model,
            plan=plan,
            images=tuple(
                GeneratedImage(data=d, mime_type=m, index=i, revised_prompt=r)
                for i, (d, m, r) in enumerate(images)
            ),
            prompt_sent=prompt,
            revised_prompt=revised,
            requests=tuple(sent),
            staging="emulated" if emulate else "none",
            warnings=tuple(warnings),
            timings=timings,
            usage=reply.json.get("usage"),
            extra={k: v for k, v in {**extra, "size": size}.items() if v is not None},
        )

    def _edit_form(
        self, prompt: str, params: dict[str, Any], image: bytes, mime: str
    ) -> list[FileField]:
        ext = mime.partition("/")[2] or "png"
        form: list[FileField] = [("image", (f"stage1.{ext}", image, mime))]
        fields = {**params, "prompt": prompt, "input_fidelity": self.options.input_fidelity}
        fields.pop("moderation", None)  # generations only
        form += [(k, (None, str(v), None)) for k, v in fields.items() if v is not None]
        return form

    def _images(
        self, reply: Reply
    ) -> Generator[Call | Sleep, Any, list[tuple[bytes, str, str | None]]]:
        """Decode each ``data`` entry, downloading those that come as URLs (proxies)."""
        body = reply.json_object
        entries = body.get("data")
        if not isinstance(entries, list) or not entries:
            raise BackendError("the response has no images in 'data'", adapter=self.name)
        out: list[_Image] = []
        for entry in entries:
            revised = entry.get("revised_prompt") or None
            if entry.get("b64_json"):
                data, mime = decode_image(entry["b64_json"], adapter=self.name)
            elif entry.get("url"):
                got: Reply = yield Call("GET", entry["url"], expect="image")
                data, mime = got.content, got.mime_type
            else:
                raise BackendError("an image entry has neither b64_json nor url", adapter=self.name)
            out.append((data, mime, revised))
        return out


def _sent(
    kind: str, prompt: str, endpoint: str, reply: Reply, stage_end: float | None = None
) -> SentRequest:
    extra: dict[str, Any] = {"endpoint": endpoint, **reply.trace}
    if stage_end is not None:
        extra["stage_end"] = stage_end
    return SentRequest(kind=kind, prompt=prompt, extra=extra)
