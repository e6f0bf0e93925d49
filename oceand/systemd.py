"""systemd service notifications (sd_notify(3)) without libsystemd: one datagram per message.

The unit (conf/oceand.service) is `Type=notify` with `WatchdogSec=`. The runtime calls:
- `ready()` once the API listens and the jobs are loaded (READY=1),
- `watchdog()` every `watchdog_interval() / 2` seconds while the event loop is healthy (WATCHDOG=1),
- `reloading()` when SIGHUP starts a reload, then `ready()` again when it is done (or rejected),
- `stopping()` when SIGTERM/SIGINT starts the drain (STOPPING=1),
- `status(text)` for the one-line state `systemctl status` shows.
- `starting(seconds, text)` while a long start makes progress (storing and loading many jobs):
  EXTEND_TIMEOUT_USEC= gives the start `seconds` more from now, so TimeoutStartSec= bounds each step of
  the start rather than the whole of it; a start that stops making progress is still killed.

RELOADING=1 carries MONOTONIC_USEC= (CLOCK_MONOTONIC in µs) as systemd >= 253 requires for
`Type=notify-reload`; older systemd ignores the extra field. We keep `Type=notify` with
`ExecReload=kill -HUP` so the unit works on systemd 252 (Debian 12) too.

Without NOTIFY_SOCKET (not started by systemd) every call is a no-op. A failed send is logged (once per
run of failures) and never raises: notification trouble must not stop scaling.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """sd_notify over the NOTIFY_SOCKET unix datagram socket (path, or '@name' for an abstract one)."""

    def __init__(self, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        self._pid = os.getpid() if pid is None else pid
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog = _watchdog_seconds(env, self._pid) if self._address is not None else None
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """WatchdogSec= in seconds (from WATCHDOG_USEC) if it is meant for this process, else None.
        Ping at half of it."""
        return self._watchdog

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *_status(status))

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        return self.notify(*_status(text))

    def starting(self, seconds: float, text: str) -> bool:
        return self.notify(f"EXTEND_TIMEOUT_USEC={round(seconds * 1_000_000)}", *_status(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def notify(self, *fields: str) -> bool:
        """Send `fields` (KEY=VALUE each) as one message; True if sent, False if disabled or failed."""
        if self._address is None or not fields:
            return False
        message = "\n".join(fields).encode("utf-8")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message, self._address)
        except OSError as e:
            if not self._warned:
                self._warned = True
                log.warning(
                    "systemd notification failed: %s",
                    e,
                    extra={"event": "sd_notify_failed", "socket": _shown(self._address)},
                )
            self.close()
            return False
        if self._warned:
            self._warned = False
            log.info("systemd notifications work again", extra={"event": "sd_notify_recovered"})
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(value: str) -> str | bytes | None:
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode("utf-8")
    if value.startswith("/"):
        return value
    return None  # unset, or a form we do not speak (e.g. systemd 254's vsock:)


def _watchdog_seconds(env: Mapping[str, str], pid: int) -> float | None:
    watchdog_pid = env.get("WATCHDOG_PID")
    if watchdog_pid is not None and watchdog_pid.strip() != str(pid):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


def _status(text: str | None) -> list[str]:
    if text is None:
        return []
    return ["STATUS=" + " ".join(text.split())]


def _shown(address: str | bytes) -> str:
    return "@" + address[1:].decode("utf-8", "replace") if isinstance(address, bytes) else address
