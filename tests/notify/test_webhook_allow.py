"""Webhook destinations restricted by `[notify] allow` (PRODUCT §10, issue 13): loopback, link-local and
the daemon's own listeners refused unless a CIDR lists them; the address checked is the one connected to."""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Any, ClassVar

import pytest
from aiohttp.abc import ResolveResult

from oceand import notify
from oceand.config import ConfigError, NotifySettings, validate_config
from oceand.notify import Destinations, Notifier
from tests.api.test_admin import JOB, doc
from tests.api.test_secrets import SECRET, Hooks, _decision, _job, _send, hooks, until
from tests.conftest import DaemonFactory

assert hooks  # the fixture, shared with the redirect tests


def dest(allow: list[str], listeners: tuple[tuple[str, int], ...] = ()) -> Destinations:
    d = Destinations(allow)
    for host, port in listeners:
        d.listener(host, port)
    return d


@pytest.mark.parametrize(
    ("allow", "listeners", "host", "addr", "port", "refused"),
    [
        pytest.param([], (), "hooks.example.com", "93.184.216.34", 443, None, id="public, no list"),
        pytest.param([], (), "10.1.2.3", "10.1.2.3", 80, None, id="private, no list"),
        pytest.param([], (), "localhost", "127.0.0.1", 80, "loopback", id="loopback"),
        pytest.param([], (), "x", "::1", 80, "loopback", id="loopback v6"),
        pytest.param([], (), "x", "::ffff:127.0.0.1", 80, "loopback", id="v4-mapped loopback"),
        pytest.param([], (), "x", "169.254.169.254", 80, "link-local", id="cloud metadata"),
        pytest.param([], (), "x", "fe80::1", 80, "link-local", id="link-local v6"),
        pytest.param([], (), "x", "0.0.0.0", 80, "unspecified", id="unspecified"),
        pytest.param([], (), "x", "224.0.0.1", 80, "multicast", id="multicast"),
        pytest.param(["127.0.0.1"], (), "x", "127.0.0.1", 80, None, id="loopback listed"),
        pytest.param(["localhost"], (), "localhost", "127.0.0.1", 80, "loopback", id="name alone: no"),
        pytest.param([], (("10.0.0.5", 8080),), "x", "10.0.0.5", 8080, "own listener", id="own listener"),
        pytest.param([], (("10.0.0.5", 8080),), "x", "10.0.0.5", 9000, None, id="other port"),
        pytest.param(
            ["10.0.0.0/8"], (("10.0.0.5", 8080),), "x", "10.0.0.5", 8080, None, id="own listener listed"
        ),
        pytest.param([], (("0.0.0.0", 8080),), "x", "127.0.0.2", 8080, "loopback", id="wildcard listener"),
        pytest.param(["10.0.0.0/8"], (), "hooks", "10.9.9.9", 80, None, id="in listed CIDR"),
        pytest.param(
            ["10.0.0.0/8"], (), "hooks", "192.168.1.1", 80, "not in [notify] allow", id="not listed"
        ),
        pytest.param(["Hooks.Example.com"], (), "hooks.example.com.", "8.8.8.8", 80, None, id="name listed"),
        pytest.param(["hooks.example.com"], (), "evil.example.com", "8.8.8.8", 80, "not in", id="other name"),
    ],
)
def test_destinations(
    allow: list[str],
    listeners: tuple[tuple[str, int], ...],
    host: str,
    addr: str,
    port: int,
    refused: str | None,
) -> None:
    why = dest(allow, listeners).check(host, addr, port)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused.split()[0] in why, why


@pytest.mark.parametrize("entry", ["10.0.0.300/8", "a b", "-bad-", "1.2.3"])
def test_allow_entries_are_checked(tmp_path: Any, entry: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate_config({"notify": {"allow": [entry]}}, file="oceand.toml", base_dir=tmp_path, path=None)
    assert e.value.key.startswith("notify.allow") and "host name" in e.value.message, str(e.value)


def notifier(allow: list[str], errors: list[str], events: list[str]) -> Notifier:
    settings = NotifySettings.model_validate({"allow": allow})
    return Notifier(settings, on_error=errors.append, on_event=lambda e, k: events.append(e))


@pytest.mark.parametrize(
    ("allow", "host", "delivered"),
    [
        pytest.param([], "127.0.0.1", False, id="literal loopback refused"),
        pytest.param([], "localhost", False, id="loopback name refused"),
        pytest.param(["localhost"], "localhost", False, id="loopback by name alone refused"),
        pytest.param(["127.0.0.1"], "127.0.0.1", True, id="listed literal"),
        pytest.param(["127.0.0.0/8"], "localhost", True, id="listed CIDR, by name"),
    ],
)
async def test_send_time_check(
    hooks: Hooks, caplog: pytest.LogCaptureFixture, allow: list[str], host: str, delivered: bool
) -> None:
    errors: list[str] = []
    events: list[str] = []
    n = notifier(allow, errors, events)
    url = hooks.urls[0].replace("127.0.0.1", f"hook:{SECRET}@{host}") + f"/ok?token={SECRET}"
    with caplog.at_level(logging.WARNING, logger="oceand.notify"):
        await _send(n, url, lambda: bool(errors or events))
    if delivered:
        assert events == ["sent"] and errors == [] and len(hooks.hits) == 1
        return
    assert hooks.hits == [] and errors == ["webhook"] and events == ["refused"] and n.refused == 1
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "notify_failed"]
    text = record.getMessage()
    assert "refused by [notify] allow" in text and "loopback" in text
    assert SECRET not in text + repr(record.__dict__)


class Rebinding:
    """A resolver whose answers the test sets (a name that a rebinding DNS server points at 127.0.0.1)."""

    answers: ClassVar[list[str]] = []

    def __init__(self) -> None:
        pass

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        addr = Rebinding.answers.pop(0)
        return [ResolveResult(hostname=host, host=addr, port=port, family=socket.AF_INET, proto=0, flags=0)]

    async def close(self) -> None:
        pass


async def test_the_connected_address_is_checked(hooks: Hooks, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listed host name whose DNS now answers 127.0.0.1: the loopback address is refused at connect."""
    monkeypatch.setattr(notify, "DefaultResolver", Rebinding)
    Rebinding.answers = ["127.0.0.1"]
    errors: list[str] = []
    events: list[str] = []
    n = notifier(["hooks.example.com"], errors, events)
    port = hooks.urls[0].rsplit(":", 1)[1]
    await _send(n, f"http://hooks.example.com:{port}/ok", lambda: bool(errors or events))
    assert hooks.hits == [] and events == ["refused"] and Rebinding.answers == []
    # listed as an address, the same answer is delivered
    Rebinding.answers = ["127.0.0.1"]
    n = notifier(["hooks.example.com", "127.0.0.1/32"], errors, events)
    await _send(n, f"http://hooks.example.com:{port}/ok", lambda: "sent" in events)
    assert len(hooks.hits) == 1


async def test_daemon_counts_refused_webhooks(start_daemon: DaemonFactory, hooks: Hooks) -> None:
    d, _ = await start_daemon()
    d.notifier.submit(_job(f"{d.url}/api/v1/jobs"), *_decision())  # its own admin listener
    refused = 'oceand_notify_refused_total{kind="webhook"} 1.0'
    await until(lambda: refused in d.metrics.render().decode())
    assert 'oceand_notify_errors_total{kind="webhook"} 1.0' in d.metrics.render().decode()
    assert d.notifier.destinations.listeners  # the bound admin address is known
    assert hooks.hits == []


async def test_the_transfer_listeners_are_own_listeners(start_daemon: DaemonFactory) -> None:
    """`[ingest] rpc_listen`, `tsdb_listen` and `http_listen` are the daemon's own listeners too: a webhook
    to them is refused like one to the admin or ingest listener (a loopback CIDR in `allow` is needed to
    send there)."""
    ingest = {"rpc_listen": "127.0.0.1:0", "tsdb_listen": "127.0.0.1:0", "http_listen": "127.0.0.1:0"}
    d, _ = await start_daemon(ingest=ingest)
    own = d.notifier.destinations.listeners
    for name in ("rpc", "tsdb", "http"):
        host, port = d.listeners[name].address
        assert (ipaddress.ip_address(host), port) in own, name


async def test_a_refused_webhook_shows_in_the_job_status(start_daemon: DaemonFactory, hooks: Hooks) -> None:
    """The job's status says its webhook was refused, why and where to (redacted), until one is delivered."""
    d, c = await start_daemon(notify={"allow": ["127.0.0.1/32"]})
    metadata = f"http://hook:{SECRET}@169.254.169.254/latest?token={SECRET}"
    status, body = await c.call("POST", "/api/v1/jobs", doc(notify={"webhook": metadata}))
    assert status == 201, body
    status, body = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert status == 200 and body["notify"] == {"webhook_refused": None}
    d.notifier.submit(_job(metadata), *_decision())
    await until(lambda: d.notifier.refused == 1)
    status, body = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    refused = body["notify"]["webhook_refused"]
    assert refused["url"] == "http://***@169.254.169.254/latest?token=***", refused
    assert "refused by [notify] allow" in refused["reason"] and "link-local" in refused["reason"]
    assert isinstance(refused["at"], float) and SECRET not in str(body)
    d.notifier.submit(_job(hooks.urls[0] + "/ok"), *_decision())  # the job's webhook now goes through
    await until(lambda: len(hooks.hits) == 1)
    status, body = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert body["notify"] == {"webhook_refused": None}
