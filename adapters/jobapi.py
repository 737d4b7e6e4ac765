"""Job APIs: submit, poll, fetch. Midjourney-style proxies, Replicate predictions, the fal queue.

All three share one flow (``JobAdapter``): submit a job, poll it with back-off until it is done
or the overall timeout passes, then download its images with a size limit and a content-type
check. Staging emulation runs two jobs: the fragile concept alone, then the full prompt with
the first image as input (an image prompt with ``--iw`` on Midjourney, img2img ``strength``
≈ 1 − r on Replicate and fal).
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from lcfix.adapters._hosted import (
    HostedAdapter,
    audit_revised,
    fragile_stage,
    prompt_for,
    wants_emulation,
)
from lcfix.adapters._http import Call, Flow, Reply, Sleep, poll
from lcfix.adapters.base import (
    AdapterOptions,
    Capabilities,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    SentRequest,
)
from lcfix.errors import (
    BackendError,
    BadRequestError,
    ContentPolicyError,
    JobFailedError,
    RateLimitError,
)

Steps = Generator[Call | Sleep, Any, "Job"]
MAX_SEED = 4294967295


@dataclass
class Job:
    """What one finished job produced."""

    job_id: str
    urls: list[str]
    revised_prompt: str | None = None
    seed: int | None = None
    trace: dict[str, Any] = field(default_factory=dict)


class JobAdapter(HostedAdapter):
    """The shared flow of job APIs; subclasses implement ``_prompts`` and ``_job``."""

    per_job: ClassVar[bool] = False
    """True when one job makes one image (Midjourney grids), False when it makes all n."""

    def _prompts(self, request: GenerationRequest) -> tuple[str, str]:
        """(stage-1 prompt, full prompt) as sent."""
        plan = request.plan
        stage = fragile_stage(plan).prompt if len(plan.stages) > 1 else plan.prompt
        return stage, prompt_for(plan, "natural")

    def _job(
        self,
        request: GenerationRequest,
        prompt: str,
        seed: int,
        n: int,
        init: tuple[str, float] | None,
    ) -> Steps:
        raise NotImplementedError

    def _flow(self, request: GenerationRequest) -> Flow[GenerationResult]:
        plan = request.plan
        auto = bool(getattr(self.options, "emulate_staging", False))
        emulate = wants_emulation(request.staging, plan, adapter=self.name, auto=auto)
        stage_prompt, prompt = self._prompts(request)
        base_seed = request.seed if request.seed is not None else random.randint(0, MAX_SEED)
        per = 1 if self.per_job else request.num_images
        images: list[GeneratedImage] = []
        sent: list[SentRequest] = []
        revised: str | None = None
        r = fragile_stage(plan).end if emulate else None
        for j in range(math.ceil(request.num_images / per)):
            seed = (base_seed + j) % (MAX_SEED + 1)
            n = min(per, request.num_images - len(images))
            init: tuple[str, float] | None = None
            if r is not None:
                first = yield from self._job(request, stage_prompt, seed, 1, None)
                sent.append(_sent("stage", stage_prompt, first, stage_end=r))
                init = (first.urls[0], r)
            job = yield from self._job(request, prompt, seed, n, init)
            sent.append(_sent("generate" if init is None else "image-prompt", prompt, job))
            revised = revised or job.revised_prompt
            for url in job.urls[:n]:
                got: Reply = yield Call("GET", url, expect="image")
                images.append(
                    GeneratedImage(
                        data=got.content,
                        mime_type=got.mime_type,
                        index=len(images),
                        seed=job.seed if job.seed is not None else seed,
                        revised_prompt=job.revised_prompt,
                    )
                )
        if len(images) < request.num_images:
            raise BackendError(
                f"asked for {request.num_images} images, the jobs returned {len(images)}",
                adapter=self.name,
            )
        return GenerationResult(
            backend=self.name,
            model=self.model,
            plan=plan,
            images=tuple(images),
            prompt_sent=prompt,
            revised_prompt=revised,
            requests=tuple(sent),
            staging="emulated" if r is not None else "none",
            seed=base_seed,
            warnings=tuple(audit_revised(plan, revised, adapter=self.name)),
        )


def _sent(kind: str, prompt: str, job: Job, *, stage_end: float | None = None) -> SentRequest:
    extra = {"job_id": job.job_id, **job.trace}
    if stage_end is not None:
        extra["stage_end"] = stage_end
    return SentRequest(kind=kind, prompt=prompt, extra=extra)


# --- Midjourney-style proxies (novicezk/midjourney-proxy) ---------------------------------

_MJ_PENDING = {"NOT_START", "SUBMITTED", "IN_PROGRESS", "MODAL", ""}


class JobAPIOptions(AdapterOptions):
    """Options of the ``jobapi`` backend (Midjourney parameters)."""

    aspect_ratio: str | None = Field(default=None, pattern=r"^\d+:\d+$", description="--ar")
    stylize: int | None = Field(default=None, ge=0, le=1000, description="--stylize")
    chaos: int | None = Field(default=None, ge=0, le=100, description="--chaos")
    style: Literal["raw"] | None = Field(default=None, description="--style")
    image_weight: float | None = Field(
        default=None, ge=0, le=3, description="--iw of the staging image prompt; default 4r"
    )
    emulate_staging: bool = Field(
        default=False, description="Let staging=auto run two jobs (image prompt + --iw)"
    )


def mj_prompt(
    text: str,
    *,
    negative: str | None = None,
    seed: int | None = None,
    aspect: str | None = None,
    model_flags: str = "",
    options: JobAPIOptions | None = None,
    image_url: str | None = None,
    image_weight: float | None = None,
) -> str:
    """A Midjourney prompt: ``[image URL] text --ar .. --seed .. --iw .. --no a, b``."""
    body, _, no = text.partition(" --no ")
    nos = [x.strip() for x in (no, negative or "") if x.strip()]
    o = options or JobAPIOptions()
    flags = [model_flags] if model_flags else []
    for flag, value in (
        ("--ar", o.aspect_ratio or aspect),
        ("--seed", seed),
        ("--stylize", o.stylize),
        ("--chaos", o.chaos),
        ("--style", o.style),
        ("--iw", None if image_url is None else f"{image_weight:g}"),
    ):
        if value is not None:
            flags.append(f"{flag} {value}")
    if nos:
        flags.append("--no " + ", ".join(nos))
    return " ".join(x for x in (image_url, body.strip(), *flags) if x)


class JobAPIAdapter(JobAdapter):
    """The ``jobapi`` backend: a midjourney-proxy at ``api_base`` (including its ``/mj`` prefix).

    ``jobapi:midjourney`` uses the account's default model; ``jobapi:v7`` adds ``--v 7`` and
    ``jobapi:niji6`` adds ``--niji 6``.
    """

    name: ClassVar[str] = "jobapi"
    capabilities: ClassVar[Capabilities] = Capabilities(
        staging="emulated", dialect="weighted", negative_prompt=True, seed=True, max_images=8
    )
    Options: ClassVar[type[AdapterOptions]] = JobAPIOptions
    key_env: ClassVar[str | None] = "MJ_API_SECRET"
    key_required: ClassVar[bool] = False
    base_env: ClassVar[str | None] = "MJ_API_BASE"
    idempotency_header: ClassVar[str | None] = None
    per_job: ClassVar[bool] = True
    options: JobAPIOptions

    def auth_headers(self) -> dict[str, SecretStr]:
        return {"mj-api-secret": self._key} if self._key else {}

    @property
    def model_flags(self) -> str:
        m = self.model.lower()
        for prefix, flag in (("niji", "--niji"), ("v", "--v")):
            rest = m.removeprefix(prefix)
            if rest != m and rest.replace(".", "").isdigit():
                return f"{flag} {rest}"
        return ""

    def _prompts(self, request: GenerationRequest) -> tuple[str, str]:
        stage, _ = super()._prompts(request)
        return stage, prompt_for(request.plan, "weighted")

    def _job(
        self,
        request: GenerationRequest,
        prompt: str,
        seed: int,
        n: int,
        init: tuple[str, float] | None,
    ) -> Steps:
        w, h = request.width, request.height
        aspect = f"{w // math.gcd(w, h)}:{h // math.gcd(w, h)}" if w and h else None
        iw = None
        if init is not None:
            iw = self.options.image_weight
            iw = round(min(max(4 * init[1], 0.25), 3.0), 2) if iw is None else iw
        text = mj_prompt(
            prompt,
            negative=request.negative_prompt,
            seed=seed,
            aspect=aspect,
            model_flags=self.model_flags,
            options=self.options,
            image_url=init[0] if init else None,
            image_weight=iw,
        )
        body = {"prompt": text, "base64Array": [], "state": f"lcfix-{random.getrandbits(64):x}"}
        for attempt in range(1, self.retry.attempts + 1):
            reply: Reply = yield Call("POST", "submit/imagine", json=body)
            try:
                task = self._submitted(reply.json)
                break
            except RateLimitError as exc:  # queue full: back off and resubmit
                if attempt == self.retry.attempts:
                    raise
                yield Sleep(self.retry.wait(attempt, exc))
        fetch = Call("GET", f"task/{task}/fetch")
        fetched = yield from poll(fetch, self._check, self.poll, adapter=self.name, job=task)
        props = fetched.json.get("properties") or {}
        return Job(
            job_id=task,
            urls=[fetched.json["imageUrl"]],
            revised_prompt=props.get("finalPrompt"),
            trace={"submitted": text, "image_weight": iw} if iw else {"submitted": text},
        )

    def _submitted(self, body: Any) -> str:
        if not isinstance(body, dict):
            raise BackendError("the proxy's submit reply is not a JSON object", adapter=self.name)
        code, desc = body.get("code"), body.get("description", "")
        props = body.get("properties") or {}
        if code in (1, 21, 22) and body.get("result"):
            return str(body["result"])  # 21: already exists, 22: accepted into the queue
        if code == 23:
            raise RateLimitError(f"the proxy's queue is full (code 23): {desc}", adapter=self.name)
        if code == 24:
            word = props.get("bannedWord") or props.get("banned_word") or "?"
            raise ContentPolicyError(
                f"the prompt contains a banned word {word!r} (code 24): {desc}",
                adapter=self.name,
                body=body,
            )
        raise BadRequestError(f"the proxy refused the job (code {code}): {desc}", adapter=self.name)

    def _check(self, reply: Reply) -> tuple[bool, str]:
        task = reply.json_object
        status = str(task.get("status") or "")
        if status == "SUCCESS" and task.get("imageUrl"):
            return True, status
        if status in _MJ_PENDING or status == "SUCCESS":
            return False, f"{status} {task.get('progress') or ''}".strip()
        reason = task.get("failReason") or "no reason given"
        raise JobFailedError(
            f"job {task.get('id')} ended {status}: {reason}",
            adapter=self.name,
            job_id=str(task.get("id")),
            state=status,
        )


# --- Replicate predictions ----------------------------------------------------------------

_REPLICATE_DONE = {"succeeded", "failed", "canceled", "aborted"}


class ReplicateOptions(AdapterOptions):
    """Options of the ``replicate`` backend. Input names vary per model: check its schema."""

    input: dict[str, Any] = Field(default_factory=dict, description="Extra model inputs")
    image_field: str = Field(default="image", description="The img2img input used for staging")
    strength_field: str = Field(default="prompt_strength", description="Its strength input")
    emulate_staging: bool = False
    wait: int | None = Field(default=None, ge=1, le=60, description="Prefer: wait=N seconds")


class ReplicateAdapter(JobAdapter):
    """The ``replicate`` backend: ``replicate:OWNER/NAME`` or ``replicate:OWNER/NAME:VERSION``."""

    name: ClassVar[str] = "replicate"
    capabilities: ClassVar[Capabilities] = Capabilities(
        staging="emulated", dialect="natural", negative_prompt=True, seed=True, max_images=4
    )
    Options: ClassVar[type[AdapterOptions]] = ReplicateOptions
    key_env: ClassVar[str | None] = "REPLICATE_API_TOKEN"
    default_api_base: ClassVar[str | None] = "https://api.replicate.com/v1"
    options: ReplicateOptions

    def _job(
        self,
        request: GenerationRequest,
        prompt: str,
        seed: int,
        n: int,
        init: tuple[str, float] | None,
    ) -> Steps:
        o = self.options
        inputs: dict[str, Any] = {"prompt": prompt, "seed": seed}
        if request.negative_prompt:
            inputs["negative_prompt"] = request.negative_prompt
        if request.width and request.height:
            inputs.update(width=request.width, height=request.height)
        if n > 1:
            inputs["num_outputs"] = n
        if init is not None:
            inputs[o.image_field] = init[0]
            inputs[o.strength_field] = round(1.0 - init[1], 4)
        inputs.update(o.input)
        name, _, version = self.model.partition(":")
        body: dict[str, Any] = {"input": inputs}
        url = f"models/{name}/predictions"
        if version:
            url, body["version"] = "predictions", version
        headers = {"Prefer": f"wait={o.wait}"} if o.wait else {}
        reply: Reply = yield Call("POST", url, json=body, headers=headers, idempotent=True)
        pred = reply.json_object
        pid = str(pred.get("id") or "?")
        if pred.get("status") not in _REPLICATE_DONE:
            get = (pred.get("urls") or {}).get("get") or f"predictions/{pid}"
            fetch = Call("GET", get)
            reply = yield from poll(fetch, self._check, self.poll, adapter=self.name, job=pid)
            pred = reply.json
        else:
            self._check(reply)
        output = pred.get("output")
        urls = [output] if isinstance(output, str) else [str(u) for u in output or []]
        return Job(job_id=pid, urls=urls, trace={"status": pred.get("status")})

    def _check(self, reply: Reply) -> tuple[bool, str]:
        pred = reply.json_object
        status = str(pred.get("status") or "")
        if status == "succeeded":
            return True, status
        if status not in _REPLICATE_DONE:
            return False, status
        error = str(pred.get("error") or "no error message")
        if "nsfw" in error.lower():
            raise ContentPolicyError(f"Replicate flagged the output: {error}", adapter=self.name)
        raise JobFailedError(
            f"prediction {pred.get('id')} {status}: {error}",
            adapter=self.name,
            job_id=str(pred.get("id")),
            state=status,
        )


# --- fal queue ----------------------------------------------------------------------------


class FalOptions(AdapterOptions):
    """Options of the ``fal`` backend."""

    arguments: dict[str, Any] = Field(default_factory=dict, description="Extra model arguments")
    image_size: str | None = Field(default=None, description="e.g. square_hd, landscape_4_3")
    img2img_model: str | None = Field(
        default=None, description="Model for the staging step; default MODEL/image-to-image"
    )
    emulate_staging: bool = False


class FalAdapter(JobAdapter):
    """The ``fal`` backend over fal's queue: ``fal:fal-ai/flux/dev``."""

    name: ClassVar[str] = "fal"
    capabilities: ClassVar[Capabilities] = Capabilities(
        staging="emulated", dialect="natural", negative_prompt=True, seed=True, max_images=4
    )
    Options: ClassVar[type[AdapterOptions]] = FalOptions
    key_env: ClassVar[str | None] = "FAL_KEY"
    default_api_base: ClassVar[str | None] = "https://queue.fal.run"
    options: FalOptions

    def auth_headers(self) -> dict[str, SecretStr]:
        key = self._key.get_secret_value() if self._key else ""
        return {"Authorization": SecretStr(f"Key {key}")} if key else {}

    def _job(
        self,
        request: GenerationRequest,
        prompt: str,
        seed: int,
        n: int,
        init: tuple[str, float] | None,
    ) -> Steps:
        o = self.options
        args: dict[str, Any] = {"prompt": prompt, "seed": seed, "num_images": n}
        if request.negative_prompt:
            args["negative_prompt"] = request.negative_prompt
        if request.width and request.height:
            args["image_size"] = {"width": request.width, "height": request.height}
        elif o.image_size:
            args["image_size"] = o.image_size
        model = self.model
        if init is not None:
            model = o.img2img_model or f"{self.model}/image-to-image"
            args.update(image_url=init[0], strength=round(1.0 - init[1], 4))
        args.update(o.arguments)
        reply: Reply = yield Call("POST", model, json=args, idempotent=True)
        sub = reply.json_object
        rid = str(sub.get("request_id") or "?")
        # Status and result live under the app (owner/name), not the full model path.
        app = "/".join(model.split("/")[:2])
        status_url = sub.get("status_url") or f"{app}/requests/{rid}/status"
        check = Call("GET", status_url)
        yield from poll(check, _fal_check, self.poll, adapter=self.name, job=rid)
        done: Reply = yield Call("GET", sub.get("response_url") or f"{app}/requests/{rid}")
        out = done.json_object
        urls = [str(i.get("url")) for i in out.get("images") or [] if isinstance(i, dict)]
        if any(out.get("has_nsfw_concepts") or []):
            raise ContentPolicyError("fal's safety checker flagged the output", adapter=self.name)
        seed_out = out.get("seed")
        return Job(
            job_id=rid,
            urls=urls,
            seed=seed_out if isinstance(seed_out, int) else None,
            trace={"model": model, **({"strength": args["strength"]} if init else {})},
        )


def _fal_check(reply: Reply) -> tuple[bool, str]:
    body = reply.json_object
    status = str(body.get("status") or "")
    if status == "COMPLETED" and not body.get("error"):
        return True, status
    if status in ("IN_QUEUE", "IN_PROGRESS"):
        position = body.get("queue_position")
        return False, f"{status} (position {position})" if position is not None else status
    raise JobFailedError(
        f"fal request ended {status}: {body.get('error') or 'no error message'}",
        adapter="fal",
        job_id=str(body.get("request_id") or ""),
        state=status,
    )
