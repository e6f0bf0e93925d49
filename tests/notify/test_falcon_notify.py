"""notify.group the Falcon way (issue 12, PRODUCT §9 and §4.3): a falcon-plus team resolved through the
falcon-plus API (cached), SMS / mail / IM posted to Falcon's sender endpoints with the fields falcon-plus's
alarm posts, bounded retries, failures counted, and a hanging sender never delays scaling."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from actuators.marathon import RecordingActuator
from oceand.config import NotifySettings
from oceand.notify import Notifier
from policies.document import parse_job
from policies.types import ActuationOutcome, Decision
from tests.api.test_admin import JOB, doc
from tests.conftest import Client, DaemonFactory
from tests.fakes.falcon_api import DEFAULT_TOKEN, FalconFake
from tests.notify.conftest import notify_config, until

FORM = "application/x-www-form-urlencoded"
PHONES = "13800000001,13800000002"  # alice, bob (carol shares alice's phone)


def metric(text: str, name: str, label: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{{label}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def scale(c: Client, n: int) -> dict[str, Any]:
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": n, "reason": "launch"})
    assert status == 200, body
    return body["decision"]  # type: ignore[no-any-return]


async def job(c: Client, group: str = "sre_ocean", **over: Any) -> None:
    body = doc(mode="active", max_instances=20, notify={"group": group}, **over)
    status, answer = await c.call("POST", "/api/v1/jobs", body)
    assert status == 201, answer


async def test_a_scale_with_notify_group_reaches_the_sender_as_falcon_plus_sends_it(
    start_daemon: DaemonFactory, falcon: FalconFake
) -> None:
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, notify=notify_config(falcon))
    await job(c)
    decision = await scale(c, 3)
    did = decision["id"]
    assert isinstance(did, int) and act.calls == [(JOB, 3)]
    await until(lambda: len(falcon.sent) == 3, "sms, mail and im at the sender")

    # the team lookup: modules/alarm/api/uic.go CurlUic, Apitoken JSON with the configured name and sig
    assert falcon.team_lookups == [("sre_ocean", '{"name":"oceand","sig":"' + DEFAULT_TOKEN + '"}')]

    line = f"[oceand][applied][{JOB}][1->3][Manual][decision {did}]"
    (sms,) = falcon.to("/sms")
    assert (sms.content_type, sms.form) == (FORM, {"tos": [PHONES], "content": [line]})
    (im,) = falcon.to("/wechat")
    assert im.content_type == FORM and im.form == {"tos": ["alice.im"], "content": [line]}
    (mail,) = falcon.to("/mail")
    assert mail.content_type == FORM
    assert set(mail.form) == {"tos", "subject", "content"}
    assert mail.form["tos"] == ["alice@example.com,carol@example.com"]
    assert mail.form["subject"] == [line]
    body = mail.form["content"][0]
    assert body.startswith("oceand applied\r\n") and body.endswith("\r\n")
    for want in (f"Job:{JOB}\r\n", "Instances:1 -> 3\r\n", "Reason:Manual\r\n", f"Decision:{did}\r\n"):
        assert want in body

    def sent() -> list[float]:
        text = d.metrics.render().decode()
        return [metric(text, "oceand_notify_sent_total", f'kind="{k}"') for k in ("sms", "mail", "im")]

    await until(lambda: sent() == [1.0, 1.0, 1.0], "the answers counted")  # the fake records first
    text = d.metrics.render().decode()
    assert metric(text, "oceand_notify_team_lookups_total", 'result="fetched"') == 1.0


async def test_team_lookup_is_cached_within_its_ttl(start_daemon: DaemonFactory, falcon: FalconFake) -> None:
    d, c = await start_daemon(actuator=RecordingActuator(), notify=notify_config(falcon))
    await job(c)
    for n, sent in ((3, 3), (4, 6), (5, 9)):
        await scale(c, n)
        await until(lambda sent=sent: len(falcon.sent) == sent, f"{sent} sender posts")  # type: ignore[misc]
    assert [t for t, _ in falcon.team_lookups] == ["sre_ocean"]
    text = d.metrics.render().decode()
    assert metric(text, "oceand_notify_team_lookups_total", 'result="cached"') == 2.0


class Ticker:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _decision(n: int, did: int) -> tuple[Decision, ActuationOutcome]:
    decision = Decision(job=JOB, at=1.8e9, trigger="manual", current=n - 1, desired=n, id=did)
    return decision, ActuationOutcome("applied")


class Run:
    """A Notifier with its tasks running, a moved clock and a sleep that only records its delay."""

    def __init__(self, settings: NotifySettings) -> None:
        self.clock = Ticker()
        self.sleeps: list[float] = []
        self.errors: list[str] = []
        self.events: list[tuple[str, str]] = []
        self.notifier = Notifier(
            settings,
            on_error=self.errors.append,
            on_event=lambda e, k: self.events.append((e, k)),
            monotonic=self.clock,
            sleep=self._sleep,
        )
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.notifier.run(self.stop))

    async def _sleep(self, delay: float) -> None:
        self.sleeps.append(delay)

    def submit(self, n: int, did: int, group: str = "sre_ocean") -> None:
        self.notifier.submit(parse_job(doc(max_instances=20, notify={"group": group})), *_decision(n, did))

    async def close(self) -> None:
        self.stop.set()
        await self.task


def settings(fake: FalconFake, **over: Any) -> NotifySettings:
    return NotifySettings.model_validate(notify_config(fake, **over))


async def test_team_lookup_expires_after_team_cache_ttl(falcon: FalconFake) -> None:
    run = Run(settings(falcon, team_cache_ttl=300.0, mail=None, im=None))
    try:
        run.submit(2, 1)
        await until(lambda: len(falcon.sent) == 1, "the first sms")
        run.clock.t += 299
        run.submit(3, 2)
        await until(lambda: len(falcon.sent) == 2, "the second sms")
        assert len(falcon.team_lookups) == 1
        run.clock.t += 2  # 301 s after the lookup
        run.submit(4, 3)
        await until(lambda: len(falcon.sent) == 3, "the third sms")
        assert len(falcon.team_lookups) == 2
    finally:
        await run.close()
    teams = [e for e in run.events if e[0].startswith("team_")]
    assert teams == [
        ("team_fetched", "falcon_api"),
        ("team_cached", "falcon_api"),
        ("team_fetched", "falcon_api"),
    ]


async def test_several_teams_in_a_group_are_merged_each_address_once(falcon: FalconFake) -> None:
    run = Run(settings(falcon))
    try:
        run.submit(2, 7, group="sre_ocean, dba")
        await until(lambda: len(falcon.sent) == 3, "the three channels")
    finally:
        await run.close()
    assert falcon.to("/sms")[0].form["tos"] == [PHONES]
    assert falcon.to("/mail")[0].form["tos"] == ["alice@example.com,carol@example.com,dave@example.com"]
    assert falcon.to("/wechat")[0].form["tos"] == ["alice.im,dave.im"]


async def test_retries_are_bounded_with_backoff_and_counted(falcon: FalconFake) -> None:
    falcon.fail["/sms"] = 100  # the SMS sender is down: 500 to everything
    falcon.fail["/mail"] = 1  # the mail sender fails once, then takes it
    run = Run(settings(falcon, attempts=3, backoff=2.0, im=None))
    try:
        run.submit(2, 9)
        await until(lambda: run.errors and falcon.to("/mail"), "the sms failure and the mail")
    finally:
        await run.close()
    assert falcon.arrived.count("/sms") == 3 and falcon.to("/sms") == []
    assert falcon.arrived.count("/mail") == 2 and len(falcon.to("/mail")) == 1
    assert run.errors == ["sms"]
    assert run.events.count(("retry", "sms")) == 2 and run.events.count(("retry", "mail")) == 1
    assert sorted(run.sleeps) == [2.0, 2.0, 4.0]  # sms: 2 then 4; mail: 2


@pytest.mark.parametrize(
    ("status_path", "retried"),
    [pytest.param("fail", True, id="500 is retried"), pytest.param("unknown team", False, id="400 is not")],
)
async def test_only_transient_failures_are_retried(
    falcon: FalconFake, status_path: str, retried: bool
) -> None:
    run = Run(settings(falcon, attempts=4, backoff=0.5))
    group = "sre_ocean" if status_path == "fail" else "nobody"
    if status_path == "fail":
        falcon.fail["/sms"] = 100
    try:
        run.submit(2, 1, group=group)
        await until(lambda: run.errors, "a counted failure")
    finally:
        await run.close()
    if retried:
        assert falcon.arrived.count("/sms") == 4 and run.errors == ["sms"]
    else:  # falcon-plus answers 400 {"error":"record not found"}: nothing is sent, nothing retried
        assert len(falcon.team_lookups) == 1 and falcon.arrived == [] and run.errors == ["falcon_api"]


async def test_a_failed_lookup_uses_the_last_answer_and_never_logs_the_token(
    falcon: FalconFake, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-default-token-xyz"
    falcon.default_token = secret
    run = Run(settings(falcon, falcon_api_token=secret, team_cache_ttl=60.0, attempts=1))
    try:
        with caplog.at_level(logging.DEBUG):
            run.submit(2, 1)
            await until(lambda: len(falcon.sent) == 3, "the first notification")
            falcon.default_token = "rotated"  # the API now refuses the token: 401
            run.clock.t += 61
            run.submit(3, 2)
            await until(lambda: len(falcon.sent) == 6, "the second, to the cached members")
            run.notifier.falcon.teams._cache.clear()  # type: ignore[union-attr]
            run.clock.t += 61
            run.submit(4, 3)
            await until(lambda: run.errors, "the lookup failure")
    finally:
        await run.close()
    assert ("team_stale", "falcon_api") in run.events and run.errors == ["falcon_api"]
    failed = [r for r in caplog.records if getattr(r, "event", "") == "notify_failed"]
    assert failed and "401" in failed[0].getMessage() and "not found this user" in failed[0].getMessage()
    for r in caplog.records:
        assert secret not in r.getMessage() + repr(r.__dict__)


async def test_a_hanging_sender_delays_neither_the_next_scale_nor_other_channels(
    start_daemon: DaemonFactory, falcon: FalconFake
) -> None:
    falcon.hang.add("/sms")  # takes the request and never answers (until released)
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, notify=notify_config(falcon, queue=2, timeout=3600))
    await job(c)
    await scale(c, 2)
    await until(lambda: "/sms" in falcon.arrived, "the first sms to reach the hanging sender")
    for n in range(3, 8):  # five more scales while the sms sender holds the first request
        decision = await scale(c, n)
        assert decision["status"] == "applied"
    assert act.calls == [(JOB, n) for n in range(2, 8)]
    await until(lambda: len(falcon.to("/mail")) == 6 and len(falcon.to("/wechat")) == 6, "mail and im")
    assert falcon.arrived.count("/sms") == 1 and falcon.to("/sms") == []  # still hanging
    text = d.metrics.render().decode()
    # sms queue of 2 behind the hanging one: 5 waiting messages, the 3 oldest dropped and counted
    assert metric(text, "oceand_notify_dropped_total", 'kind="sms"') == 3.0
    assert metric(text, "oceand_notify_dropped_total", 'kind="mail"') == 0.0
    falcon.release.set()
    await until(lambda: len(falcon.to("/sms")) == 3, "the hanging sms and the 2 queued ones")
    contents = [r.form["content"][0] for r in falcon.to("/sms")]
    assert [s.split("][")[3] for s in contents] == ["1->2", "5->6", "6->7"]

    # and a sender hanging at shutdown does not hold the stop: the notifier ends by itself, uncancelled
    falcon.release.clear()
    await scale(c, 8)
    await until(lambda: falcon.arrived.count("/sms") == 4, "another sms to the hanging sender")
    (task,) = [t for t in d.runtime.tasks if t.get_name() == "notifier"]
    await d.stop()
    assert task.done() and not task.cancelled() and task.exception() is None and d.runtime.failures == []


async def test_failures_and_retries_show_in_metrics(start_daemon: DaemonFactory, falcon: FalconFake) -> None:
    falcon.fail["/sms"] = 100
    d, c = await start_daemon(
        actuator=RecordingActuator(), notify=notify_config(falcon, attempts=2, backoff=0)
    )
    await job(c)
    await scale(c, 2)

    def counts() -> tuple[float, float]:
        text = d.metrics.render().decode()
        label = 'kind="sms"'
        return metric(text, "oceand_notify_errors_total", label), metric(
            text, "oceand_notify_retries_total", label
        )

    await until(lambda: counts() == (1.0, 1.0), "one sms error after one retry")
    assert falcon.arrived.count("/sms") == 2


BAD_ANSWERS = [
    pytest.param(
        401,
        b'{"error": "bad Apitoken: {\\"name\\":\\"oceand\\",\\"sig\\":\\"%s\\"}"}',
        "401",
        id="echoes the token",
    ),
    pytest.param(
        200, b'{"users": [' + b'{"name": "x"},' * 400_000 + b"{}]}", "more than 4194304 bytes", id="5 MB team"
    ),
    pytest.param(200, b"<html>proxy error</html>", "not a falcon-plus team answer", id="not JSON"),
    pytest.param(200, b'{"users": {"name": "x"}}', "not a falcon-plus team answer", id="users not a list"),
]


@pytest.mark.parametrize(("status", "body", "said"), BAD_ANSWERS)
async def test_a_bad_team_answer_is_one_counted_failure_without_the_token(
    falcon: FalconFake, caplog: pytest.LogCaptureFixture, status: int, body: bytes, said: str
) -> None:
    secret = "tok-9c1e5d0b"
    falcon.team_answer = (status, body.replace(b"%s", secret.encode()))
    run = Run(settings(falcon, falcon_api_token=secret))
    try:
        with caplog.at_level(logging.WARNING, logger="oceand.notify"):
            run.submit(2, 1)
            await until(lambda: run.errors, "the failure")
    finally:
        await run.close()
    assert run.errors == ["falcon_api"] and falcon.arrived == [] and len(falcon.team_lookups) == 1
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "notify_failed"]
    assert said in record.getMessage()
    assert secret not in record.getMessage()
