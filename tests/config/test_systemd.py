"""oceand.systemd.Notifier against a real unix datagram socket, as systemd would hold it."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from oceand.systemd import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        pytest.param(lambda n: n.ready(), ["READY=1"], id="ready"),
        pytest.param(lambda n: n.ready("12 jobs"), ["READY=1", "STATUS=12 jobs"], id="ready with status"),
        pytest.param(lambda n: n.stopping(), ["STOPPING=1"], id="stopping"),
        pytest.param(lambda n: n.watchdog(), ["WATCHDOG=1"], id="watchdog"),
        pytest.param(
            lambda n: n.status("draining\n3 actions"), ["STATUS=draining 3 actions"], id="status one line"
        ),
        pytest.param(
            lambda n: n.notify("EXTEND_TIMEOUT_USEC=5000000"), ["EXTEND_TIMEOUT_USEC=5000000"], id="raw"
        ),
        pytest.param(
            lambda n: n.starting(30, "stored 500 of\n1200"),
            ["EXTEND_TIMEOUT_USEC=30000000", "STATUS=stored 500 of 1200"],
            id="starting: more time, and why",
        ),
    ],
)
def test_messages(listener: tuple[socket.socket, str], call: object, expected: list[str]) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert callable(call) and call(n) is True
    assert received(sock) == expected
    n.close()


def test_reloading_carries_monotonic_usec(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = received(sock)
    assert first == "RELOADING=1"
    key, _, usec = second.partition("=")
    assert key == "MONOTONIC_USEC" and before <= int(usec) <= after
    n.close()


def test_abstract_socket() -> None:
    name = f"oceand-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert n.watchdog()
        assert received(sock) == ["READY=1"]
        assert received(sock) == ["WATCHDOG=1"]
        n.close()
    finally:
        sock.close()


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="no NOTIFY_SOCKET"),
        pytest.param({"NOTIFY_SOCKET": ""}, id="empty"),
        pytest.param({"NOTIFY_SOCKET": "vsock:2:1234"}, id="vsock, not spoken"),
        pytest.param({"NOTIFY_SOCKET": "@"}, id="bare @"),
    ],
)
def test_disabled_is_a_no_op(env: dict[str, str]) -> None:
    n = Notifier({**env, "WATCHDOG_USEC": "30000000"})
    assert not n.enabled
    assert n.watchdog_interval() is None
    assert n.ready() is False and n.watchdog() is False and n.reloading() is False and n.stopping() is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({"WATCHDOG_USEC": "30000000"}, 30.0, id="30s"),
        pytest.param({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "4242"}, 0.5, id="pid is ours"),
        pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None, id="pid is another's"),
        pytest.param({}, None, id="no watchdog"),
        pytest.param({"WATCHDOG_USEC": "0"}, None, id="zero"),
        pytest.param({"WATCHDOG_USEC": "soon"}, None, id="garbage"),
    ],
)
def test_watchdog_interval(
    listener: tuple[socket.socket, str], env: dict[str, str], expected: float | None
) -> None:
    _, path = listener
    n = Notifier({"NOTIFY_SOCKET": path, **env}, pid=4242)
    assert n.watchdog_interval() == expected


def test_reads_os_environ_by_default(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier()
    assert n.watchdog_interval() == 2.0
    assert n.stopping()
    assert received(sock) == ["STOPPING=1"]
    n.close()


def test_send_failure_is_logged_once_and_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = str(tmp_path / "later")
    n = Notifier({"NOTIFY_SOCKET": path})
    with caplog.at_level(logging.INFO, logger="oceand.systemd"):
        assert n.watchdog() is False  # nobody listens yet
        assert n.watchdog() is False
        failures = [r for r in caplog.records if getattr(r, "event", None) == "sd_notify_failed"]
        assert len(failures) == 1
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(2)
        try:
            assert n.watchdog() is True
            assert received(sock) == ["WATCHDOG=1"]
        finally:
            sock.close()
        assert [getattr(r, "event", None) for r in caplog.records][-1] == "sd_notify_recovered"
    n.close()
