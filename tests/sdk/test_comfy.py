from __future__ import annotations

import itertools
import json
import struct
from typing import Any

import pytest

from lcfix.a1111 import parse_a1111
from lcfix.comfy import (
    SCHEDULERS,
    DiscreteSampling,
    FlowSampling,
    comfy_nodes,
    export_comfy,
    model_sampling,
    sigma_schedule,
    stage_steps,
    step_bounds,
    switch_point,
)
from lcfix.errors import InputError


def _f32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def test_discrete_schedule_matches_comfyui_constants() -> None:
    ms = DiscreteSampling()
    # ComfyUI / k-diffusion values for SD 1.x and SDXL (scaled-linear betas).
    assert ms.sigma_max == pytest.approx(14.614642, abs=1e-5)
    assert ms.sigma_min == pytest.approx(0.0291675, abs=1e-6)
    normal = sigma_schedule("normal", 10, "sd")
    assert [round(s, 4) for s in normal] == [
        14.6146,
        7.8399,
        4.6092,
        2.9183,
        1.9502,
        1.3449,
        0.9324,
        0.625,
        0.3687,
        0.0292,
        0.0,
    ]


def test_flow_schedule_is_shifted() -> None:
    ms = FlowSampling(shift=3.0)
    assert ms.sigma_max == 1.0
    assert ms.percent_to_sigma(0.5) == pytest.approx(0.75)  # 3*0.5 / (1 + 2*0.5)
    assert sigma_schedule("simple", 4, "flow", shift=1.0) == pytest.approx(
        [1.0, 0.75, 0.5, 0.25, 0]
    )


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("model_type", ["sd", "flow"])
def test_schedules_decrease_to_zero(scheduler: Any, model_type: Any) -> None:
    for steps in (1, 2, 7, 30):
        sig = sigma_schedule(scheduler, steps, model_type)
        assert len(sig) == steps + 1
        assert sig[-1] == 0.0
        assert all(a > b for a, b in itertools.pairwise(sig))


def test_inverse_of_percent_to_sigma() -> None:
    for ms in (DiscreteSampling(), FlowSampling(3.0), FlowSampling(8.0)):
        for p in (0.01, 0.2, 0.5, 0.77, 0.99):
            assert ms.sigma_to_percent(ms.percent_to_sigma(p)) == pytest.approx(p, abs=1e-9)


def _active(
    fragment: dict[str, Any], sigma: float, model_type: Any, shift: float | None
) -> list[str]:
    """Which stage texts ComfyUI uses at a step of this sigma (comfy/samplers.py rule)."""
    ms = model_sampling(model_type, shift)
    out = []
    for node in comfy_nodes(fragment).values():
        if node["class_type"] != "ConditioningSetTimestepRange":
            continue
        start = _f32(ms.percent_to_sigma(node["inputs"]["start"]))
        end = _f32(ms.percent_to_sigma(node["inputs"]["end"]))
        s = _f32(sigma)
        if not (s > start or s < end):
            text_id = node["inputs"]["conditioning"][0]
            out.append(fragment[text_id]["inputs"]["text"])
    return out


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize(("model_type", "shift"), [("sdxl", None), ("flow", 3.0), ("flow", 8.0)])
def test_each_step_sees_exactly_its_stage(scheduler: Any, model_type: Any, shift: Any) -> None:
    plan = parse_a1111("[tea cup:a tea cup of iced coke:0.25]")
    for steps in (4, 8, 20, 30):
        frag = export_comfy(
            plan, steps=steps, scheduler=scheduler, model_type=model_type, shift=shift
        )
        k = stage_steps(0.25, steps)
        sigmas = sigma_schedule(scheduler, steps, model_type, shift)
        for i in range(steps):
            want = ["tea cup"] if i < k else ["a tea cup of iced coke"]
            assert _active(frag, sigmas[i], model_type, shift) == want, (steps, i)


def test_percent_differs_from_step_fraction_and_is_explained() -> None:
    plan = parse_a1111("[tea cup:a tea cup of iced coke:0.25]")
    frag = export_comfy(plan, steps=20, scheduler="karras", model_type="flow")
    point = frag["_lcfix"]["switches"][0]
    assert point["step"] == 5
    assert point["percent"] > 0.5  # karras on a flow model front-loads the sigmas
    note = frag["_lcfix_note"]
    assert "not of the steps" in note and "karras" in note and "after step 5 of 20" in note


def test_fragment_shape_is_api_format() -> None:
    plan = parse_a1111("[[tea cup:tea cup, lemon:0.1]:a tea cup of iced coke with lemon:0.3]")
    frag = export_comfy(plan, steps=20, scheduler="normal", clip=("7", 1), start_id=50)
    nodes = comfy_nodes(frag)
    kinds = [n["class_type"] for n in nodes.values()]
    assert kinds.count("CLIPTextEncode") == 3
    assert kinds.count("ConditioningSetTimestepRange") == 3
    assert kinds.count("ConditioningCombine") == 2
    assert all(k.isdigit() and int(k) >= 50 for k in nodes)
    for node in nodes.values():
        for value in node["inputs"].values():
            if isinstance(value, list):  # every link points at a node of the fragment or clip
                assert value[0] in nodes or value == ["7", 1]
    ranges = [
        n["inputs"] for n in nodes.values() if n["class_type"] == "ConditioningSetTimestepRange"
    ]
    assert ranges[0]["start"] == 0.0 and ranges[-1]["end"] == 1.0
    assert ranges[0]["end"] == ranges[1]["start"] and ranges[1]["end"] == ranges[2]["start"]
    out_id = frag["_lcfix"]["output"][0]
    assert nodes[out_id]["class_type"] == "ConditioningCombine"
    json.dumps(frag)  # serialisable


def test_one_stage_plan_is_a_single_encode() -> None:
    frag = export_comfy(parse_a1111("a red fox"), steps=20)
    nodes = comfy_nodes(frag)
    assert [n["class_type"] for n in nodes.values()] == ["CLIPTextEncode"]
    assert "no switch" in frag["_lcfix_note"]


def test_stages_are_fitted_to_the_steps_and_said() -> None:
    plan = parse_a1111("[[cup:cup, lemon:0.05]:a cup of coke with lemon:0.1]")
    frag = export_comfy(plan, steps=4)  # each stage still gets one step
    assert [s["steps"] for s in frag["_lcfix"]["stages"]] == [[0, 0], [1, 1], [2, 3]]
    assert "clamped to step 1" in frag["_lcfix_note"]
    frag = export_comfy(plan, steps=2)  # three stages, two steps: the first is dropped
    texts = [s["prompt"] for s in frag["_lcfix"]["stages"]]
    assert texts == ["cup, lemon", "a cup of coke with lemon"]
    assert "dropped" in frag["_lcfix_note"]


def test_step_rule_matches_the_local_backend() -> None:
    pytest.importorskip("diffusers")
    from lcfix.adapters.staging import schedule_steps

    for total in (1, 2, 3, 4, 7, 10, 20, 28, 50):
        for ends in (
            [0.25, 1.0],
            [0.05, 0.1, 1.0],
            [0.125, 0.375, 1.0],
            [0.5, 0.95, 1.0],
            [0.025, 0.05, 0.075, 1.0],
        ):
            keep, bounds, _ = step_bounds(ends, total)
            ref = schedule_steps(ends, total)
            assert (tuple(keep), tuple(bounds)) == (ref.stages, ref.steps), (ends, total)


def test_bad_arguments() -> None:
    plan = parse_a1111("[cup:a cup of coke:0.25]")
    with pytest.raises(InputError, match="scheduler"):
        export_comfy(plan, scheduler="exponential")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="model type"):
        sigma_schedule("normal", 10, "sd3")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="steps"):
        switch_point(0.25, 0, "normal")
    with pytest.raises(InputError, match="flow models only"):
        model_sampling("sd", 3.0)
