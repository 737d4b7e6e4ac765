"""dispatch.generate/agenerate: plan -> request -> adapter -> result."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lcfix.dispatch import agenerate, build_request, generate
from lcfix.errors import InputError, UnsupportedError
from lcfix.testing import FakeAdapter, sample_plan

PLAN = sample_plan()


def test_generate_builds_the_request_and_returns_the_result() -> None:
    fake = FakeAdapter()
    result = generate(
        PLAN,
        fake,
        negative_prompt="blurry",
        width=64,
        height=48,
        seed=3,
        num_images=2,
        staging="off",
    )
    (request,) = fake.requests
    assert (request.plan, request.negative_prompt, request.width, request.height) == (
        PLAN,
        "blurry",
        64,
        48,
    )
    assert (request.seed, request.num_images, request.staging) == (3, 2, "off")
    assert len(result.images) == 2 and result.staging == "none"


def test_agenerate_is_the_async_twin() -> None:
    fake = FakeAdapter()
    result = asyncio.run(agenerate(PLAN, fake, seed=1))
    assert fake.requests[0].seed == 1 and result.staging == "emulated"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"width": 0}, "width"),
        ({"seed": -1}, "seed"),
        ({"num_images": 0}, "num_images"),
        ({"staging": "sometimes"}, "staging"),
    ],
)
def test_bad_values_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as info:
        build_request(PLAN, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_more_images_than_the_backend_makes_is_refused() -> None:
    class Small(FakeAdapter):
        capabilities = FakeAdapter.capabilities.model_copy(update={"max_images": 2})

    small = Small()
    with pytest.raises(UnsupportedError, match="at most 2"):
        generate(PLAN, small, num_images=3)
    assert small.requests == []


def test_result_warnings_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeAdapter(revised_prompt="x")
    result = generate(PLAN, fake)
    assert result.warnings == ()
    warned = fake.generate  # keep a reference to the real method

    def with_warning(request):  # type: ignore[no-untyped-def]
        return warned(request).model_copy(update={"warnings": ("dropped 'tea cup'",)})

    fake.generate = with_warning  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="lcfix"):
        generate(PLAN, fake)
    assert [r.getMessage() for r in caplog.records] == ["dropped 'tea cup'"]
