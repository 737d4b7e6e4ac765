"""Fakes shared by the adapter tests."""

from __future__ import annotations

from typing import Any

from lcfix.adapters._http import PollPolicy, RetryPolicy


class Clock:
    """A fake clock whose sleeps advance time instantly and are recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def policy(self, **kw: Any) -> RetryPolicy:
        return RetryPolicy(sleep=self.sleep, asleep=self.asleep, jitter=0.0, **kw)

    def kwargs(self, timeout: float = 600.0) -> dict[str, Any]:
        """Adapter keyword arguments: retries and polling on this clock."""
        return {
            "retry": self.policy(),
            "poll": PollPolicy(interval=1.0, factor=2.0, timeout=timeout, clock=lambda: self.now),
        }
