"""The invariants I1–I8 of HA.md §5.3 as pure functions over what the chaos rig collects: the fake
Marathon's log of app writes (`Write`), the `actuation_attempts` rows in MySQL (`Intent`, one per
attempt: the fenced intent of HA.md §6.6) and the `actuation_outcomes` rows (`Outcome`). Each returns the
list of violations, one readable line each; an empty list means the invariant holds.

All times are wall-clock seconds of the same host (the fake stamps `time.time()` at a write's arrival; a
daemon stamps `sent_at`, `deadline` and `updated_at` with its own `time.time()`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

EPS = 0.05  # HA.md §5.3 I4: same host, same clock


@dataclass(frozen=True, slots=True)
class Write:
    """One PUT/PATCH of an app as the fake Marathon received it."""

    app: str
    wall: float  # arrival
    status: int  # the fake's reply (-1: reply lost); 2xx = taken
    instances: int | None
    decision: int | None  # X-Oceand-Decision
    attempt: int | None  # X-Oceand-Attempt
    epoch: int | None  # X-Oceand-Epoch

    @property
    def taken(self) -> bool:
        return 200 <= self.status < 300 or self.status == -1  # a lost reply was taken all the same

    @staticmethod
    def from_fake(r: Mapping[str, Any]) -> Write:
        h = r["oceand"]

        def num(name: str) -> int | None:
            v = h.get(name)
            return None if v is None else int(v)

        body = r.get("body") or ""
        instances = None
        if body.strip().startswith("{"):
            instances = orjson.loads(body).get("instances")
        app = str(r["path"]).removeprefix("/v2/apps")
        return Write(
            app,
            float(r["wall"]),
            int(r["status"]),
            instances,
            num("X-Oceand-Decision"),
            num("X-Oceand-Attempt"),
            num("X-Oceand-Epoch"),
        )


@dataclass(frozen=True, slots=True)
class Intent:
    """One `actuation_attempts` row (cluster mode: fenced by shard and epoch)."""

    decision: int
    attempt: int
    job: str
    to_count: int
    sent_at: float  # taken before the fenced insert
    deadline: float  # the PUT's reply deadline
    status: str  # pending | applied | failed | abandoned
    updated_at: float  # the last write of the row (its resolution, once resolved)
    shard: int | None
    epoch: int | None


@dataclass(frozen=True, slots=True)
class Outcome:
    decision: int
    job: str
    status: str  # none | pending | applied | failed | superseded | dry-run | paused


def writes_from_fake(requests: Iterable[Mapping[str, Any]]) -> list[Write]:
    """The app writes of the fake's `/_fake/requests` log, in arrival order."""
    out = [
        Write.from_fake(r)
        for r in requests
        if r["method"] in ("PUT", "PATCH") and str(r["path"]).startswith("/v2/apps/")
    ]
    return sorted(out, key=lambda w: w.wall)


def i1_epochs_never_decrease(writes: list[Write]) -> list[str]:
    """I1: per app, in arrival order, X-Oceand-Epoch never goes down (no stale owner after a newer)."""
    out, last = [], dict[str, int]()
    for w in sorted(writes, key=lambda w: w.wall):
        if w.epoch is None:
            continue
        prev = last.get(w.app)
        if prev is not None and w.epoch < prev:
            out.append(
                f"I1 {w.app}: epoch {w.epoch} (decision {w.decision}) at {w.wall:.3f} after epoch {prev}"
            )
        last[w.app] = max(w.epoch, prev or 0)
    return out


def i2_one_actuation_per_decision(writes: list[Write], intents: list[Intent]) -> list[str]:
    """I2: each decision is taken by Marathon at most once, and has at most one applied attempt."""
    out = []
    taken = defaultdict(list)
    for w in writes:
        if w.taken and w.decision is not None:
            taken[w.decision].append(w)
    for d, ws in sorted(taken.items()):
        if len(ws) > 1:
            out.append(
                f"I2 decision {d}: {len(ws)} writes taken by Marathon (attempts {[w.attempt for w in ws]})"
            )
    applied = defaultdict(int)
    for i in intents:
        if i.status == "applied":
            applied[i.decision] += 1
    out += [f"I2 decision {d}: {n} applied attempts" for d, n in sorted(applied.items()) if n > 1]
    return out


def i3_no_unrecorded_writes(writes: list[Write], intents: list[Intent]) -> list[str]:
    """I3: every write has its intent row (same decision, attempt and epoch), inserted before it arrived."""
    rows = {(i.decision, i.attempt): i for i in intents}
    out = []
    for w in writes:
        if w.decision is None or w.attempt is None:
            out.append(f"I3 {w.app}: a write at {w.wall:.3f} names no decision")
            continue
        i = rows.get((w.decision, w.attempt))
        if i is None:
            out.append(f"I3 decision {w.decision} attempt {w.attempt}: written, no intent row")
        elif i.epoch != w.epoch:
            out.append(f"I3 decision {w.decision}: written with epoch {w.epoch}, intent fenced by {i.epoch}")
        elif w.wall + EPS < i.sent_at:
            out.append(f"I3 decision {w.decision}: arrived {i.sent_at - w.wall:.3f}s before its intent")
    return out


def i4_writes_within_budget(writes: list[Write], intents: list[Intent], eps: float = EPS) -> list[str]:
    """I4: a write arrives by its intent's deadline (+eps); and a write of a newer epoch for a job never
    arrives while an older epoch's intent for that job is unresolved (the new owner waits out
    deadline + takeover_grace and settles it first, HA.md §6.7)."""
    rows = {(i.decision, i.attempt): i for i in intents}
    by_job = defaultdict(list)
    for i in intents:
        by_job[i.job].append(i)
    out = []
    for w in writes:
        i = rows.get((w.decision, w.attempt)) if w.decision is not None and w.attempt is not None else None
        if i is None:
            continue
        if w.wall > i.deadline + eps:
            out.append(f"I4 decision {w.decision}: arrived {w.wall - i.deadline:.3f}s after its deadline")
        for old in by_job[i.job]:
            if old.epoch is None or i.epoch is None or old.epoch >= i.epoch or old.sent_at > w.wall:
                continue
            if old.status == "pending" or old.updated_at > w.wall:
                out.append(
                    f"I4 decision {w.decision} (epoch {i.epoch}) written at {w.wall:.3f} while decision "
                    f"{old.decision} of epoch {old.epoch} was unresolved ({old.status} at {old.updated_at:.3f})"
                )
    return out


def i5_no_double_scale(
    writes: list[Write],
    decided_at: Mapping[int, float],
    start: Mapping[str, int],
    step: int,
    cooldown: float,
    slack: float = 0.1,
) -> list[str]:
    """I5 for a constant breach (every bucket proposes +`step`, held back by a scale-out `cooldown`): per
    app, each write Marathon takes goes exactly `step` above the previous one (from `start`), and its
    decision (`decided_at`: decision id -> time of the decision) comes at least a cooldown (less `slack`)
    after the previous taken write's decision. Decision times, not arrivals: a retried write may land
    late, the cooldown runs from the decision."""
    out = []
    apps = defaultdict(list)
    for w in sorted(writes, key=lambda w: w.wall):
        if w.taken:
            apps[w.app].append(w)
    for app, ws in sorted(apps.items()):
        count, at = start.get(app), None
        for w in ws:
            if count is not None and w.instances != count + step:
                out.append(f"I5 {app}: decision {w.decision} wrote {w.instances} after {count} (step {step})")
            t = decided_at.get(w.decision, w.wall) if w.decision is not None else w.wall
            if at is not None and t - at < cooldown - slack:
                out.append(
                    f"I5 {app}: decision {w.decision} {t - at:.2f}s after the last (cooldown {cooldown})"
                )
            count, at = w.instances, t
    return out


def i6_no_lost_decisions(intents: list[Intent], outcomes: list[Outcome]) -> list[str]:
    """I6: at the end (after the rig settled) no intent and no decision's outcome is left pending."""
    out = [
        f"I6 decision {i.decision} attempt {i.attempt} ({i.job}): intent still pending"
        for i in intents
        if i.status == "pending"
    ]
    out += [
        f"I6 decision {o.decision} ({o.job}): outcome still pending"
        for o in outcomes
        if o.status == "pending"
    ]
    return out


def i7_failover_time(seconds: list[float], bound: float) -> list[str]:
    """I7: every measured takeover (fault to a survivor acting) within `bound` seconds."""
    return [f"I7 takeover {s:.2f}s > {bound}s" for s in seconds if s > bound]


def i8_fencing(intents: list[Intent]) -> list[str]:
    """I8: no stale intent accepted: per shard, in insertion (`sent_at`) order, the epochs of the intents
    the database took never go down (an old owner's insert after the takeover must get 0 rows)."""
    out, last = [], dict[int, tuple[int, int]]()
    for i in sorted(intents, key=lambda i: i.sent_at):
        if i.shard is None or i.epoch is None:
            continue
        prev = last.get(i.shard)
        if prev is not None and i.epoch < prev[0]:
            out.append(
                f"I8 shard {i.shard}: decision {i.decision} fenced by epoch {i.epoch} after decision {prev[1]} of epoch {prev[0]}"
            )
        else:
            last[i.shard] = (i.epoch, i.decision)
    return out
