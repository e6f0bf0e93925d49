"""policies.backoff: the one backoff helper (issue 11), as each of its users configures it."""

from __future__ import annotations

import math

import pytest

from actuators.marathon.apply import APPLY_BACKOFF
from policies.backoff import Backoff

EVENT_STREAM = Backoff(initial=0.5, factor=2.0, maximum=30.0, jitter=0.5)  # the watcher's reconnects
ENGINE_RETRY = Backoff(steps=(1.0, 2.0, 5.0, 10.0, 30.0), jitter=0)  # a failed decision's retries
NOTIFY = Backoff(initial=1.0, factor=2.0, maximum=math.inf, jitter=0)  # [notify] backoff = "1s"


@pytest.mark.parametrize(
    ("backoff", "attempt", "rand", "delay"),
    [
        pytest.param(Backoff(initial=0.2, jitter=0.5), 0, 0.0, 0.2, id="first retry, no jitter drawn"),
        pytest.param(Backoff(initial=0.2, jitter=0.5), 0, 1.0, 0.1, id="first retry, full jitter drawn"),
        pytest.param(Backoff(initial=0.2, factor=2), 3, 0.0, 1.6, id="doubles each attempt"),
        pytest.param(Backoff(initial=0.2, maximum=10), 20, 0.0, 10.0, id="capped"),
        pytest.param(
            Backoff(initial=0.2, maximum=10), 10_000, 0.0, 10.0, id="huge attempt does not overflow"
        ),
        pytest.param(Backoff(initial=1, jitter=0), 2, 1.0, 4.0, id="no jitter"),
        pytest.param(Backoff(initial=0, maximum=0), 5, 0.5, 0.0, id="zero initial: no wait"),
        pytest.param(Backoff(initial=1), -1, 0.0, 1.0, id="a negative attempt counts as the first"),
        pytest.param(APPLY_BACKOFF, 1, 0.5, 0.3, id="marathon apply: second retry, half jitter"),
        pytest.param(EVENT_STREAM, 0, 1.0, 0.25, id="event stream: first reconnect, at least half"),
        pytest.param(EVENT_STREAM, 30, 0.0, 30.0, id="event stream: capped at 30 s"),
        pytest.param(ENGINE_RETRY, 0, 0.9, 1.0, id="engine: first retry after 1 s, no jitter"),
        pytest.param(ENGINE_RETRY, 2, 0.0, 5.0, id="engine: third retry after 5 s"),
        pytest.param(ENGINE_RETRY, 4, 0.0, 30.0, id="engine: fifth retry after 30 s"),
        pytest.param(ENGINE_RETRY, 99, 0.0, 30.0, id="engine: then every 30 s"),
        pytest.param(Backoff(steps=(4.0,), jitter=0.5), 3, 1.0, 2.0, id="steps take jitter too"),
        pytest.param(NOTIFY, 0, 0.0, 1.0, id="notify: 1 s before the 2nd try"),
        pytest.param(NOTIFY, 3, 0.0, 8.0, id="notify: doubling, uncapped"),
    ],
)
def test_backoff_delay(backoff: Backoff, attempt: int, rand: float, delay: float) -> None:
    assert backoff.delay(attempt, lambda: rand) == pytest.approx(delay)


def test_without_a_random_source_no_jitter_is_drawn() -> None:
    assert Backoff(initial=2, jitter=1).delay(0) == 2.0


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({"initial": -1}, id="negative initial"),
        pytest.param({"factor": 0.5}, id="shrinking factor"),
        pytest.param({"initial": 5, "maximum": 1}, id="maximum below initial"),
        pytest.param({"jitter": 2}, id="jitter above 1"),
        pytest.param({"jitter": -0.1}, id="negative jitter"),
        pytest.param({"steps": (1.0, -2.0)}, id="negative step"),
        pytest.param({"steps": (math.inf,)}, id="infinite step"),
    ],
)
def test_backoff_rejects_nonsense(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="bad backoff"):
        Backoff(**kw)  # type: ignore[arg-type]
