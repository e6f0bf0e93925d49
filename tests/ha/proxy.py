"""A pausable TCP proxy for the chaos suite (HA.md §5.1): one per daemon and upstream (MySQL, Marathon).

`pause` stops forwarding both ways (a black hole: connections stay open, bytes wait), `cut` aborts every
connection (RST) and refuses new ones, `resume` undoes both. The commands arrive as one line each on a
control port (`ProxyThread.command` sends them), so a test, a shell (`echo pause | nc ...`) or another
process can drive it. `ProxyThread` runs the proxy on an event loop of its own in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


class Proxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.mode = "open"  # open | pause | cut
        self._open = asyncio.Event()
        self._open.set()
        self._conns: set[asyncio.StreamWriter] = set()
        self.writers: list[asyncio.StreamWriter] = []  # every one ever opened, closed at shutdown
        self.held = 0  # bytes read while paused and not forwarded yet

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await r.read(65536):
                if not self._open.is_set():  # paused: hold the bytes, keep the connection
                    self.held += len(data)
                    await self._open.wait()
                    self.held -= len(data)
                w.write(data)
                await w.drain()
        with contextlib.suppress(OSError, RuntimeError):
            w.close()

    async def _client(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.writers.append(cw)
        if self.mode == "cut":
            _reset(cw)
            return
        try:
            ur, uw = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(cw)
            return
        self.writers.append(uw)
        self._conns |= {cw, uw}
        try:
            await asyncio.gather(self._pipe(cr, uw), self._pipe(ur, cw))
        finally:
            self._conns -= {cw, uw}

    def command(self, line: str) -> str:
        cmd = line.strip()
        if cmd == "pause":
            self.mode = "pause"
            self._open.clear()
        elif cmd == "cut":
            self.mode = "cut"
            for w in list(self._conns):
                _reset(w)
            self._open.set()
        elif cmd == "resume":
            self.mode = "open"
            self._open.set()
        elif cmd != "status":
            return f"error unknown command {cmd!r}"
        return f"ok {self.mode} {len(self._conns) // 2} held {self.held}"

    async def _control(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.writers.append(w)
        with contextlib.suppress(OSError):
            while line := await r.readline():
                w.write((self.command(line.decode()) + "\n").encode())
                await w.drain()
            w.close()


def _reset(w: asyncio.StreamWriter) -> None:
    """Abort with RST (SO_LINGER 0), not a FIN: the peer sees 'connection reset'."""
    sock = w.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    w.transport.abort()


class ProxyThread:
    """A `Proxy` to `upstream` listening on 127.0.0.1:`port` (control on `control_port`), in a thread."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.proxy = Proxy(upstream)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True, name="ha-proxy")
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        data = self.loop.run_until_complete(asyncio.start_server(self.proxy._client, "127.0.0.1", 0))
        ctl = self.loop.run_until_complete(asyncio.start_server(self.proxy._control, "127.0.0.1", 0))
        self.port = data.sockets[0].getsockname()[1]
        self.control_port = ctl.sockets[0].getsockname()[1]
        self._servers = (data, ctl)
        ready.set()
        self.loop.run_forever()

    def command(self, cmd: str) -> str:
        """Send one command line over the control port; returns the reply line
        ('ok <mode> <connections> held <bytes held while paused>')."""
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=5) as s:
            s.sendall(cmd.encode() + b"\n")
            return s.makefile().readline().strip()

    def close(self) -> None:
        async def stop() -> None:
            for s in self._servers:
                s.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in self.proxy.writers:
                w.transport.abort()
            for s in self._servers:
                await s.wait_closed()
            await asyncio.sleep(0)  # let the aborted transports close their sockets
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self.loop)
        self.thread.join(5)
        self.loop.close()
