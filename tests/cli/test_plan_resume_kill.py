"""A real process, killed with SIGKILL mid-run, then resumed: every id exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

N = 5000
SUBJECTS = ["a tea cup", "a red fox", "a glass", "a blue banana", "a bird nest", "a castle"]
OBJECTS = ["of iced coke", "in a forest", "of water", "on a plate", "with eggs", "at night"]


def _lcfix(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LCFIX_EMBEDDINGS": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "lcfix.cli.main", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_kill_9_then_resume_plans_every_id_exactly_once(tmp_path: Path) -> None:
    src = tmp_path / "big.txt"
    src.write_text("".join(f"{SUBJECTS[i % 6]} {OBJECTS[(i // 6) % 6]} no {i}\n" for i in range(N)))
    out = tmp_path / "out.jsonl"
    proc = _lcfix("plan", str(src), "-o", str(out), "--planner", "offline", "-q")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.stat().st_size > 40_000:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=30)
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be killed")
    assert proc.returncode == -signal.SIGKILL
    partial = out.read_bytes()
    assert 0 < partial.count(b"\n") < N

    resumed = _lcfix("plan", str(src), "-o", str(out), "--planner", "offline", "--resume")
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err.decode()
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert ids == list(range(1, N + 1))
    assert "skipped (already done)" in err.decode()
