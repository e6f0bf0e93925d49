"""The chaos suite's pausable TCP proxy (tests/ha/proxy.py) against an echo server in this process."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.ha.proxy import ProxyThread


def _echo(c: socket.socket) -> None:
    with contextlib.suppress(OSError), c:
        while data := c.recv(4096):
            c.sendall(data)


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=_echo, args=(c,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()
    srv.close()


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[ProxyThread]:
    p = ProxyThread(echo)
    yield p
    p.close()


def talk(s: socket.socket, data: bytes) -> bytes:
    s.sendall(data)
    return s.recv(4096)


def test_forwards_both_ways(proxy: ProxyThread) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        assert talk(s, b"hello") == b"hello"
    assert proxy.command("status").startswith("ok open")


def test_pause_holds_the_bytes_on_an_open_connection_until_resume(proxy: ProxyThread) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        assert talk(s, b"a") == b"a"
        assert proxy.command("pause") == "ok pause 1"
        s.sendall(b"held")
        s.settimeout(0.3)  # the black hole: nothing comes back while paused (the connection stays open)
        with pytest.raises(TimeoutError):
            s.recv(4096)
        assert proxy.command("resume") == "ok open 1"
        s.settimeout(5)
        assert s.recv(4096) == b"held"


def test_cut_resets_open_connections_and_refuses_new_ones_until_resume(proxy: ProxyThread) -> None:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    assert talk(s, b"a") == b"a"
    assert proxy.command("cut").startswith("ok cut")
    with pytest.raises(ConnectionResetError):
        talk(s, b"b")
        talk(s, b"c")  # the RST may surface on the second call
    s.close()
    with (
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s2,
        pytest.raises(ConnectionResetError),
    ):
        talk(s2, b"d")
    proxy.command("resume")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s3:
        assert talk(s3, b"e") == b"e"


def test_an_unknown_command_is_an_error(proxy: ProxyThread) -> None:
    assert proxy.command("explode").startswith("error unknown command")
