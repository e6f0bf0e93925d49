"""The one backoff of the daemon: how long to wait before retry number `attempt` (0-based).

Exponential: initial × factor^attempt, capped at `maximum`; or, with `steps`, the delays of that table
(the last one repeating). Then scaled by a factor in [1 − jitter, 1] drawn from `rand()` in [0, 1]
("equal jitter" for jitter 0.5), so retries of many clients spread out. Pure: the caller passes the
random source (random.random, or a fixed one in tests and replays).

Used by the Marathon apply (5xx/timeouts), the Marathon event-stream reconnects, the engine's retries
of a failed decision and the Falcon notification retries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


def _no_jitter() -> float:
    return 0.0


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.2
    factor: float = 2.0
    maximum: float = 10.0
    jitter: float = 0.5
    steps: tuple[float, ...] = ()  # when given: the delays themselves, instead of initial × factor^n

    def __post_init__(self) -> None:
        if (
            not 0 <= self.initial <= self.maximum
            or self.factor < 1
            or not 0 <= self.jitter <= 1
            or any(not 0 <= s < math.inf for s in self.steps)
        ):
            raise ValueError(
                f"bad backoff {self}: want 0 <= initial <= maximum, factor >= 1, 0 <= jitter <= 1,"
                " finite steps >= 0"
            )

    def delay(self, attempt: int, rand: Callable[[], float] = _no_jitter) -> float:
        """Seconds before retry `attempt` (0: the first retry)."""
        attempt = max(0, attempt)
        if self.steps:
            base = self.steps[min(attempt, len(self.steps) - 1)]
        else:
            base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        if not self.jitter:
            return base
        return base * (1.0 - self.jitter * rand())
