"""Stage ends as steps: the rule shared by the local backend and the ComfyUI export."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lcfix.steps import schedule_steps


def test_fractions_map_to_steps_half_up() -> None:
    assert schedule_steps([0.25, 1.0], 40).steps == (10,)
    assert schedule_steps([0.25, 1.0], 30).steps == (8,)  # 7.5 rounds up
    assert schedule_steps([0.25, 1.0], 10).steps == (3,)  # 2.5 rounds up
    s = schedule_steps([0.1, 0.2, 1.0], 30)
    assert s.steps == (3, 6) and s.stages == (0, 1, 2) and not s.warnings
    assert [s.stage_at(i) for i in range(8)] == [0, 0, 0, 1, 1, 1, 2, 2]


def test_boundaries_outside_the_steps_are_clamped_with_a_warning() -> None:
    s = schedule_steps([0.025, 1.0], 10)  # 0.25 steps
    assert s.steps == (1,)
    assert "clamped to step 1" in s.warnings[0]
    s = schedule_steps([0.1, 0.12, 1.0], 10)  # both round to step 1
    assert s.steps == (1, 2)
    assert len(s.warnings) == 1 and "stage 2" in s.warnings[0]


def test_more_stages_than_steps_drops_the_earliest() -> None:
    s = schedule_steps([0.1, 0.2, 0.3, 1.0], 2)
    assert s.stages == (2, 3) and s.steps == (1,)
    assert "dropped" in s.warnings[0]
    assert schedule_steps([0.3, 1.0], 1).stages == (1,)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.001, 0.999), min_size=0, max_size=5, unique=True),
    st.integers(1, 60),
)
def test_schedule_is_always_valid(inner: list[float], total: int) -> None:
    ends = [*sorted(inner), 1.0]
    s = schedule_steps(ends, total)
    assert s.stages[-1] == len(ends) - 1
    assert len(s.steps) == len(s.stages) - 1
    assert all(1 <= k <= total - 1 for k in s.steps)
    assert all(b > a for a, b in zip(s.steps, s.steps[1:], strict=False))
    for k, idx in zip(s.steps, s.stages, strict=False):  # unclamped boundaries are exact
        if not s.warnings:
            assert abs(k - ends[idx] * total) <= 0.5 + 1e-9
