"""The walk of one push sample (issue 11 Show, docs/operations.md §1 "Walk of one sample"): the modules a
sample passes through from the HTTP handler to the Marathon PUT, recorded from the running daemon.

The daemon runs in this process against the fake Marathon. A profiler hook (sys.setprofile) watches for
landmark functions — where the body is decoded, where the sample is written into its bucket and the
bucket closes, where the rule proposes and the behavior decides, where the PUT is sent — and at each one
records the chain of calls that led there. The walk is the union of those chains: every call that crossed
into a module of the four packages on the way to a landmark is one entry of that module, in the order
the entries happened. What the sample's path calls on the side (metrics, logs, the store) is not on a
chain to a landmark and is not part of the walk.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import pytest

import actuators
import collectors
import oceand
import policies
import policies.engine
from tests.conftest import DaemonFactory
from tests.fakes.marathon import FakeMarathon
from tests.marathon.conftest import until
from tests.marathon.test_actuation import job_doc

JOB = "job.walk.xiaomi"
APP = "/walk/web"
ROOTS = [Path(p.__file__).parent.parent for p in (oceand, policies, collectors, actuators)]
TOP = ROOTS[0]

# (module, function qualname): where the sample's data is handled on its way to the PUT
LANDMARKS = [
    ("collectors/falcon_items.py", "decode_items"),
    ("collectors/falcon_items.py", "check_items"),
    ("oceand/ingest.py", "JobBuckets.add"),
    ("oceand/ingest.py", "JobBuckets._close"),
    ("policies/engine.py", "step"),
    ("policies/threshold.py", "propose_threshold"),
    ("policies/behavior.py", "apply_limits"),
    ("actuators/marathon/client.py", "MarathonClient.scale"),
]
OURS = ("oceand/", "policies/", "collectors/", "actuators/")


def module_of(code: CodeType) -> str | None:
    """The file of `code` relative to the repository when it is one of the four packages', else None."""
    path = Path(code.co_filename)
    if not path.is_absolute() or not path.is_relative_to(TOP):
        return None
    rel = path.relative_to(TOP).as_posix()
    return rel if rel.startswith(OURS) else None


class Walk:
    def __init__(self) -> None:
        self.landmarks_hit: list[tuple[str, str]] = []
        self._entries: dict[int, tuple[FrameType, str]] = {}  # id(frame) -> frame (kept alive), module

    def on_landmark(self, frame: FrameType, landmark: tuple[str, str]) -> None:
        self.landmarks_hit.append(landmark)
        chain: list[FrameType] = []
        f: FrameType | None = frame
        while f is not None:
            chain.append(f)
            f = f.f_back
        chain.reverse()  # outermost first
        previous: str | None = None
        for f in chain:
            module = module_of(f.f_code)
            if module is not None and module != previous and id(f) not in self._entries:
                self._entries[id(f)] = (f, module)  # a call that crossed into `module`
            previous = module

    def entries(self) -> list[str]:
        """The module of every entry on the way to a landmark, in the order the entries were first seen
        (a chain seen later adds only its new entries)."""
        return [module for _, module in self._entries.values()]


@contextmanager
def recording() -> Iterator[Walk]:
    walk = Walk()
    wanted = {name for _, name in LANDMARKS}

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        if code.co_qualname not in wanted:
            return
        module = module_of(code)
        if (module, code.co_qualname) in LANDMARKS:
            walk.on_landmark(frame, (module, code.co_qualname))  # type: ignore[arg-type]

    old = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield walk
    finally:
        sys.setprofile(old)


IN_C = {"policies/threshold.py", "policies/behavior.py"}  # the C step's share of the walk (_faststep.c)


@pytest.mark.parametrize(
    "native",
    [
        pytest.param(False, id="python step: the walk of docs/operations.md"),
        pytest.param(
            True,
            id="C step: the same without the rule and behavior modules",
            marks=pytest.mark.skipif(not policies.engine.NATIVE, reason="policies._faststep not built"),
        ),
    ],
)
async def test_one_push_sample_walks_from_the_handler_to_the_put_through_each_module_once(
    start_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    if not native:  # the usual job's bucket is stepped in C when the extension is built: not here
        monkeypatch.setattr(policies.engine, "_native", None)
    fake = FakeMarathon(heartbeat=0.5, deploy_time=0.05)
    fake.add_app(APP, 1)
    await fake.start()
    try:
        d, c = await start_daemon(
            marathon={"lg": {"urls": [fake.url], "timeout": "1s", "connect_timeout": "0.5s"}}
        )
        doc = job_doc(JOB, APP) | {"period": 1, "behavior": {"scale_out": {"cooldown": 0}}}
        assert (await c.call("POST", "/api/v1/jobs", doc))[0] == 201
        await until(lambda: d.engine.status(JOB)["app_known"] and d.engine.status(JOB)["running"] == 1, 5)
        item = {
            "endpoint": "h0",
            "metric": "cpu.used",
            "tags": f"job={JOB}",
            "timestamp": int(time.time()),  # the current second: complete, so the bucket closes at once
            "step": 1,
            "value": 95.0,
            "counterType": "GAUGE",
        }
        with recording() as walk:
            status, body = await c.call("POST", "/v1/push", [item])
            assert status == 200 and body["data"]["Total"] == 1, body
            async with asyncio.timeout(5):
                while not any(r.method == "PUT" for r in fake.requests):
                    await asyncio.sleep(0.01)
        assert fake.apps[APP].instances == 2
    finally:
        await fake.stop()

    entries = walk.entries()
    handler = entries.index("oceand/api/ingest.py")
    middlewares, entries = entries[:handler], entries[handler:]
    print("\nbefore the handler (middlewares):", ", ".join(middlewares))
    print("walk of one push sample:\n" + "\n".join(f"{i}. {m}" for i, m in enumerate(entries, 1)))
    expected = [lm for lm in LANDMARKS if lm[1] != "check_items" and not (native and lm[0] in IN_C)]
    assert set(expected) <= set(walk.landmarks_hit)
    assert native is not bool(IN_C & set(entries))
    documented = [m for m in documented_walk() if not (native and m in IN_C)]
    assert entries == documented, "docs/operations.md §1 'Walk of one sample' is not the walk"
    marathon = [m for m in entries if m.startswith("actuators/")]
    assert marathon == ["actuators/marathon/apply.py", "actuators/marathon/client.py"]
    # the push writes and closes the bucket in the ingest module (the buckets live there), which hands the
    # closed bucket to the worker: the engine is entered once, after it, and nothing is entered twice
    assert entries.index("oceand/engine.py") == entries.index("oceand/ingest.py") + 1
    twice = sorted({m for m in entries if entries.count(m) > 1})
    assert twice == [], f"entered more than once: {twice}"
    assert len(entries) <= 9


def documented_walk() -> list[str]:
    """The modules of docs/operations.md §1 "Walk of one sample", in order (one numbered line each)."""
    text = (TOP / "docs" / "operations.md").read_text()
    section = text.split("### Walk of one sample", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"^\d+\. `([^`]+)`", section, re.M)
