"""Job APIs over respx: midjourney-proxy submit/poll/fetch, Replicate predictions, fal queue."""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import httpx
import pytest
import respx

from lcfix.adapters.base import GenerationRequest
from lcfix.adapters.jobapi import FalAdapter, JobAPIAdapter, ReplicateAdapter, mj_prompt
from lcfix.errors import (
    BackendTimeoutError,
    BadRequestError,
    ConfigError,
    ContentPolicyError,
    JobFailedError,
    RateLimitError,
)
from lcfix.testing import AdapterContract, sample_plan, tiny_png
from tests.adapters.fakes import Clock

MJ = "http://mj.test:8080/mj"
SECRET = "mj-secret-0123456789"
PNG = tiny_png()
PLAN = sample_plan()
IMG = {"content": PNG, "headers": {"content-type": "image/png"}}


def mj(clock: Clock | None = None, **kw: Any) -> JobAPIAdapter:
    return JobAPIAdapter("v7", api_base=MJ, api_key=SECRET, **(clock or Clock()).kwargs(), **kw)


def mj_task(task: str, status: str, **extra: Any) -> httpx.Response:
    body = {"id": task, "action": "IMAGINE", "status": status, "progress": "50%", **extra}
    return httpx.Response(200, json=body)


def mock_mj(router: respx.MockRouter, tasks: int = 1) -> respx.Route:
    """A proxy that accepts `tasks` jobs, each pending once then done."""
    submit = router.post(f"{MJ}/submit/imagine").mock(
        side_effect=[
            httpx.Response(200, json={"code": 1, "description": "ok", "result": f"t{i}"})
            for i in range(tasks)
        ]
    )
    for i in range(tasks):
        router.get(f"{MJ}/task/t{i}/fetch").mock(
            side_effect=[
                mj_task(f"t{i}", "IN_PROGRESS"),
                mj_task(
                    f"t{i}",
                    "SUCCESS",
                    imageUrl=f"https://cdn.test/t{i}.png",
                    properties={"finalPrompt": "tea cup, iced coke"},
                ),
            ]
        )
        router.get(f"https://cdn.test/t{i}.png").mock(return_value=httpx.Response(200, **IMG))
    return submit


class JobContract(AdapterContract):
    """The adapter contract with polls and retries on a fake clock (no real waiting)."""

    def make_adapter(self, **kwargs: Any) -> Any:
        return super().make_adapter(**{**Clock().kwargs(), **kwargs})


class TestJobAPIContract(JobContract):
    adapter_class = JobAPIAdapter
    model = "v7"
    adapter_kwargs: ClassVar[dict[str, Any]] = {"api_base": MJ, "api_key": SECRET}
    entry_point = "jobapi"
    secret = SECRET

    def backend(self) -> respx.MockRouter:
        router = respx.mock(assert_all_mocked=True, assert_all_called=False)
        mock_mj(router, tasks=2)
        return router


def test_mj_prompt_syntax() -> None:
    text = mj_prompt(
        PLAN.rewrites.weighted, negative="straws", seed=9, aspect="3:2", model_flags="--v 7"
    )
    assert text == "tea cup::2 a tea cup of iced coke::1 --v 7 --ar 3:2 --seed 9 --no glass, straws"
    staged = mj_prompt("a b::1", image_url="https://x/1.png", image_weight=1.0)
    assert staged == "https://x/1.png a b::1 --iw 1"


def test_submit_poll_fetch_with_weighted_prompt_and_secret_header(mock: respx.MockRouter) -> None:
    submit = mock_mj(mock)
    clock = Clock()
    result = mj(clock).generate(GenerationRequest(plan=PLAN, seed=4, width=1200, height=800))
    request = submit.calls.last.request
    assert request.headers["mj-api-secret"] == SECRET
    body = json.loads(request.content)
    assert (
        body["prompt"] == "tea cup::2 a tea cup of iced coke::1 --v 7 --ar 3:2 --seed 4 --no glass"
    )
    assert body["state"].startswith("lcfix-")
    assert result.images[0].data == PNG and result.revised_prompt == "tea cup, iced coke"
    assert result.warnings == () and clock.sleeps == [1.0]
    cdn = [c for c in mock.calls if c.request.url.host == "cdn.test"]
    assert "mj-api-secret" not in cdn[0].request.headers


def test_staging_emulation_feeds_stage_one_back_as_an_image_prompt() -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        submit = mock_mj(router, tasks=2)
        result = mj().generate(GenerationRequest(plan=PLAN, seed=4, staging="emulate"))
        cdn = [c.request.url.path for c in router.calls if c.request.url.host == "cdn.test"]
    assert cdn == ["/t1.png"]  # the stage-1 grid is passed by URL, never fetched
    first, second = (json.loads(c.request.content)["prompt"] for c in submit.calls)
    assert first == "tea cup --v 7 --seed 4"
    iw = 4 * PLAN.stages[0].end
    assert second == (
        f"https://cdn.test/t0.png tea cup::2 a tea cup of iced coke::1 --v 7 --seed 4 "
        f"--iw {iw:g} --no glass"
    )
    assert result.staging == "emulated" and [r.kind for r in result.requests] == [
        "stage",
        "image-prompt",
    ]


@pytest.mark.parametrize(
    ("reply", "cls", "text"),
    [
        (
            {"code": 24, "description": "banned", "properties": {"bannedWord": "coke"}},
            ContentPolicyError,
            "banned word 'coke'",
        ),
        ({"code": 4, "description": "validation error"}, BadRequestError, "code 4"),
        ({"code": 9, "description": "failure"}, BadRequestError, "code 9"),
    ],
)
def test_submit_error_codes(mock: respx.MockRouter, reply: Any, cls: type, text: str) -> None:
    mock.post(f"{MJ}/submit/imagine").mock(return_value=httpx.Response(200, json=reply))
    with pytest.raises(cls, match=text):
        mj().generate(GenerationRequest(plan=PLAN, staging="off"))


def test_queue_full_backs_off_and_resubmits(mock: respx.MockRouter) -> None:
    full = httpx.Response(200, json={"code": 23, "description": "queue full"})
    queued = httpx.Response(
        200, json={"code": 22, "result": "t0", "properties": {"numberOfQueues": 3}}
    )
    submit = mock.post(f"{MJ}/submit/imagine").mock(side_effect=[full, full, queued])
    mock.get(f"{MJ}/task/t0/fetch").mock(
        return_value=mj_task("t0", "SUCCESS", imageUrl="https://cdn.test/a.png")
    )
    mock.get("https://cdn.test/a.png").mock(return_value=httpx.Response(200, **IMG))
    clock = Clock()
    mj(clock).generate(GenerationRequest(plan=PLAN, staging="off"))
    assert submit.call_count == 3 and clock.sleeps == [0.5, 1.0]


def test_queue_full_for_good_is_a_rate_limit_error(mock: respx.MockRouter) -> None:
    mock.post(f"{MJ}/submit/imagine").mock(
        return_value=httpx.Response(200, json={"code": 23, "description": "queue full"})
    )
    with pytest.raises(RateLimitError, match="queue is full"):
        mj().generate(GenerationRequest(plan=PLAN, staging="off"))


def test_already_existing_task_is_reused(mock: respx.MockRouter) -> None:
    mock.post(f"{MJ}/submit/imagine").mock(
        return_value=httpx.Response(200, json={"code": 21, "result": "t9"})
    )
    mock.get(f"{MJ}/task/t9/fetch").mock(
        return_value=mj_task("t9", "SUCCESS", imageUrl="https://cdn.test/a.png")
    )
    mock.get("https://cdn.test/a.png").mock(return_value=httpx.Response(200, **IMG))
    assert (
        mj().generate(GenerationRequest(plan=PLAN, staging="off")).requests[0].extra["job_id"]
        == "t9"
    )


def test_failed_job_and_poll_timeout(mock: respx.MockRouter) -> None:
    mock.post(f"{MJ}/submit/imagine").mock(
        return_value=httpx.Response(200, json={"code": 1, "result": "t1"})
    )
    fetch = mock.get(f"{MJ}/task/t1/fetch").mock(
        return_value=mj_task("t1", "FAILURE", failReason="[Invalid parameter] Invalid value")
    )
    with pytest.raises(JobFailedError, match="Invalid value") as info:
        mj().generate(GenerationRequest(plan=PLAN, staging="off"))
    assert info.value.job_id == "t1" and info.value.state == "FAILURE"
    fetch.mock(return_value=mj_task("t1", "IN_PROGRESS"))
    clock = Clock()
    slow = JobAPIAdapter("v7", api_base=MJ, **clock.kwargs(timeout=10))
    with pytest.raises(BackendTimeoutError, match="still IN_PROGRESS 50%"):
        slow.generate(GenerationRequest(plan=PLAN, staging="off"))
    assert clock.now <= 10


def test_base_url_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="MJ_API_BASE"):
        JobAPIAdapter("midjourney")
    monkeypatch.setenv("MJ_API_BASE", MJ)
    assert JobAPIAdapter("midjourney").api_base == MJ


# --- Replicate ------------------------------------------------------------------------------

REP = "https://api.replicate.com/v1"
TOKEN = "r8_0123456789abcdef"


def prediction(status: str, output: Any = None, error: str | None = None) -> dict[str, Any]:
    return {
        "id": "p1",
        "status": status,
        "output": output,
        "error": error,
        "urls": {"get": f"{REP}/predictions/p1", "cancel": f"{REP}/predictions/p1/cancel"},
    }


def replicate(**kw: Any) -> ReplicateAdapter:
    return ReplicateAdapter("black-forest-labs/flux-dev", api_key=TOKEN, **Clock().kwargs(), **kw)


class TestReplicateContract(JobContract):
    adapter_class = ReplicateAdapter
    model = "black-forest-labs/flux-dev"
    adapter_kwargs: ClassVar[dict[str, Any]] = {"api_key": TOKEN}
    entry_point = "replicate"
    secret = TOKEN

    def backend(self) -> respx.MockRouter:
        def create(request: httpx.Request) -> httpx.Response:
            n = json.loads(request.content)["input"].get("num_outputs", 1)
            urls = [f"https://cdn.test/r{i}.png" for i in range(n)]
            return httpx.Response(201, json=prediction("succeeded", urls))

        router = respx.mock(assert_all_mocked=True, assert_all_called=False)
        router.post(f"{REP}/models/{self.model}/predictions").mock(side_effect=create)
        router.get(url__regex=r"https://cdn\.test/.*").mock(return_value=httpx.Response(200, **IMG))
        return router


def test_replicate_prediction_is_created_polled_and_downloaded(mock: respx.MockRouter) -> None:
    create = mock.post(f"{REP}/models/black-forest-labs/flux-dev/predictions").mock(
        return_value=httpx.Response(201, json=prediction("starting"))
    )
    get = mock.get(f"{REP}/predictions/p1").mock(
        side_effect=[
            httpx.Response(200, json=prediction("processing")),
            httpx.Response(200, json=prediction("succeeded", ["https://cdn.test/r.webp"])),
        ]
    )
    mock.get("https://cdn.test/r.webp").mock(return_value=httpx.Response(200, **IMG))
    result = replicate(options={"input": {"go_fast": True}}).generate(
        GenerationRequest(plan=PLAN, seed=3, staging="off")
    )
    body = json.loads(create.calls.last.request.content)
    assert body == {"input": {"prompt": PLAN.rewrites.natural, "seed": 3, "go_fast": True}}
    assert create.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    assert get.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    assert result.images[0].data == PNG and get.call_count == 2


def test_replicate_staging_uses_image_and_prompt_strength(mock: respx.MockRouter) -> None:
    create = mock.post(f"{REP}/models/black-forest-labs/flux-dev/predictions").mock(
        side_effect=[
            httpx.Response(201, json=prediction("succeeded", "https://cdn.test/s.png")),
            httpx.Response(201, json=prediction("succeeded", ["https://cdn.test/f.png"])),
        ]
    )
    mock.get(url__regex=r"https://cdn\.test/.*").mock(return_value=httpx.Response(200, **IMG))
    replicate(options={"emulate_staging": True}).generate(GenerationRequest(plan=PLAN, seed=1))
    first, second = (json.loads(c.request.content)["input"] for c in create.calls)
    assert first["prompt"] == "tea cup" and "image" not in first
    assert second["image"] == "https://cdn.test/s.png"
    assert second["prompt_strength"] == pytest.approx(1 - PLAN.stages[0].end)


def test_replicate_version_and_failures(mock: respx.MockRouter) -> None:
    create = mock.post(f"{REP}/predictions").mock(
        return_value=httpx.Response(201, json=prediction("failed", error="NSFW content detected"))
    )
    a = ReplicateAdapter("owner/model:abc123", api_key=TOKEN, **Clock().kwargs())
    with pytest.raises(ContentPolicyError, match="NSFW"):
        a.generate(GenerationRequest(plan=PLAN, staging="off"))
    assert json.loads(create.calls.last.request.content)["version"] == "abc123"
    create.mock(return_value=httpx.Response(201, json=prediction("failed", error="CUDA OOM")))
    with pytest.raises(JobFailedError, match="CUDA OOM"):
        a.generate(GenerationRequest(plan=PLAN, staging="off"))


# --- fal ------------------------------------------------------------------------------------

FAL = "https://queue.fal.run"
FAL_KEY = "fal-key-0123456789"


def fal_submit(model: str) -> httpx.Response:
    app = "/".join(model.split("/")[:2])
    return httpx.Response(
        200,
        json={
            "request_id": "q1",
            "status": "IN_QUEUE",
            "queue_position": 2,
            "status_url": f"{FAL}/{app}/requests/q1/status",
            "response_url": f"{FAL}/{app}/requests/q1",
        },
    )


class TestFalContract(JobContract):
    adapter_class = FalAdapter
    model = "fal-ai/flux/dev"
    adapter_kwargs: ClassVar[dict[str, Any]] = {"api_key": FAL_KEY}
    entry_point = "fal"
    secret = FAL_KEY

    def backend(self) -> respx.MockRouter:
        n: list[int] = []

        def submit(request: httpx.Request) -> httpx.Response:
            n.append(json.loads(request.content)["num_images"])
            return fal_submit(self.model)

        def result(request: httpx.Request) -> httpx.Response:
            images = [{"url": f"https://fal.media/{i}.png"} for i in range(n[-1])]
            return httpx.Response(200, json={"images": images})

        router = respx.mock(assert_all_mocked=True, assert_all_called=False)
        router.post(f"{FAL}/{self.model}").mock(side_effect=submit)
        router.get(f"{FAL}/fal-ai/flux/requests/q1/status").mock(
            return_value=httpx.Response(200, json={"status": "COMPLETED"})
        )
        router.get(f"{FAL}/fal-ai/flux/requests/q1").mock(side_effect=result)
        router.get(url__regex=r"https://fal\.media/.*").mock(
            return_value=httpx.Response(200, **IMG)
        )
        return router


def test_fal_queue_submit_status_result(mock: respx.MockRouter) -> None:
    submit = mock.post(f"{FAL}/fal-ai/flux/dev").mock(return_value=fal_submit("fal-ai/flux/dev"))
    status = mock.get(f"{FAL}/fal-ai/flux/requests/q1/status").mock(
        side_effect=[
            httpx.Response(202, json={"status": "IN_QUEUE", "queue_position": 1}),
            httpx.Response(200, json={"status": "COMPLETED"}),
        ]
    )
    mock.get(f"{FAL}/fal-ai/flux/requests/q1").mock(
        return_value=httpx.Response(
            200,
            json={
                "images": [{"url": "https://fal.media/a.png", "content_type": "image/png"}],
                "seed": 77,
                "has_nsfw_concepts": [False],
            },
        )
    )
    media = mock.get("https://fal.media/a.png").mock(return_value=httpx.Response(200, **IMG))
    a = FalAdapter("fal-ai/flux/dev", api_key=FAL_KEY, **Clock().kwargs())
    result = a.generate(GenerationRequest(plan=PLAN, width=1024, height=768, staging="off"))
    assert submit.calls.last.request.headers["authorization"] == f"Key {FAL_KEY}"
    assert status.calls.last.request.headers["authorization"] == f"Key {FAL_KEY}"
    assert "authorization" not in media.calls.last.request.headers
    args = json.loads(submit.calls.last.request.content)
    assert args["prompt"] == PLAN.rewrites.natural
    assert args["image_size"] == {"width": 1024, "height": 768} and args["num_images"] == 1
    assert result.images[0].seed == 77


def test_fal_staging_runs_the_image_to_image_model(mock: respx.MockRouter) -> None:
    t2i = mock.post(f"{FAL}/fal-ai/flux/dev").mock(return_value=fal_submit("fal-ai/flux/dev"))
    i2i = mock.post(f"{FAL}/fal-ai/flux/dev/image-to-image").mock(
        return_value=fal_submit("fal-ai/flux/dev/image-to-image")
    )
    mock.get(f"{FAL}/fal-ai/flux/requests/q1/status").mock(
        return_value=httpx.Response(200, json={"status": "COMPLETED"})
    )
    mock.get(f"{FAL}/fal-ai/flux/requests/q1").mock(
        return_value=httpx.Response(200, json={"images": [{"url": "https://fal.media/a.png"}]})
    )
    mock.get("https://fal.media/a.png").mock(return_value=httpx.Response(200, **IMG))
    a = FalAdapter("fal-ai/flux/dev", api_key=FAL_KEY, **Clock().kwargs())
    a.generate(GenerationRequest(plan=PLAN, seed=2, staging="emulate"))
    assert [c.request.url.path for c in mock.calls if c.request.method == "POST"] == [
        "/fal-ai/flux/dev",
        "/fal-ai/flux/dev/image-to-image",
    ]
    assert json.loads(t2i.calls.last.request.content)["prompt"] == "tea cup"
    second = json.loads(i2i.calls.last.request.content)
    assert second["image_url"] == "https://fal.media/a.png"
    assert second["strength"] == pytest.approx(1 - PLAN.stages[0].end)


def test_fal_failed_status(mock: respx.MockRouter) -> None:
    mock.post(f"{FAL}/fal-ai/flux/dev").mock(return_value=fal_submit("fal-ai/flux/dev"))
    mock.get(f"{FAL}/fal-ai/flux/requests/q1/status").mock(
        return_value=httpx.Response(200, json={"status": "FAILED", "error": "runner crashed"})
    )
    a = FalAdapter("fal-ai/flux/dev", api_key=FAL_KEY, **Clock().kwargs())
    with pytest.raises(JobFailedError, match="runner crashed"):
        a.generate(GenerationRequest(plan=PLAN, staging="off"))


def test_async_job_flow(mock: respx.MockRouter) -> None:
    mock_mj(mock)
    clock = Clock()

    async def go() -> Any:
        a = mj(clock)
        try:
            return await a.agenerate(GenerationRequest(plan=PLAN, staging="off"))
        finally:
            await a.aclose()

    result = asyncio.run(go())
    assert result.images[0].data == PNG and clock.sleeps == [1.0]
