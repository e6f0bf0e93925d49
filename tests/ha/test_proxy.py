"""The chaos suite's pausable TCP proxy (tests/ha/proxy.py) against an echo server in this process."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.e2e.harness import wait_for
from tests.ha.proxy import ProxyThread

RECEIVED: list[bytes] = []  # what the echo server got, in order


def _echo(c: socket.socket) -> None:
    with contextlib.suppress(OSError), c:
        while data := c.recv(4096):
            RECEIVED.append(data)
            c.sendall(data)


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    RECEIVED.clear()
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
        assert proxy.command("pause") == "ok pause 1 held 0"
        s.sendall(b"held")
        # the proxy has read the 4 bytes and holds them: the server has not got them, the connection stays
        wait_for(lambda: proxy.command("status") == "ok pause 1 held 4", 5, "the bytes held")
        assert RECEIVED == [b"a"]
        assert proxy.command("resume") == "ok open 1 held 4"
        assert s.recv(4096) == b"held"
        assert RECEIVED == [b"a", b"held"]
        assert proxy.command("status") == "ok open 1 held 0"


def test_cut_resets_open_connections_and_refuses_new_ones_until_resume(proxy: ProxyThread) -> None:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    assert talk(s, b"a") == b"a"
    assert proxy.command("cut").startswith("ok cut")
    with pytest.raises(ConnectionResetError):
        talk(s, b"b")
        talk(s, b"c")  # the RST may surface on the second call
    s.close()
    # a new connection is reset: at the connect itself when the proxy's RST comes first, else at the talk
    with (
        pytest.raises(ConnectionResetError),
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s2,
    ):
        talk(s2, b"d")
    proxy.command("resume")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s3:
        assert talk(s3, b"e") == b"e"


def test_an_unknown_command_is_an_error(proxy: ProxyThread) -> None:
    assert proxy.command("explode").startswith("error unknown command")
