"""A MariaDB server of the chaos rig's own (`Rig.with_mysql()`), for the fault that restarts MySQL: the
shared server on 3306 is never stopped. Its data directory is initialised once (`mariadb-install-db`,
root without a password like the shared one) and kept across restarts; `shutdown()` is a clean
`mariadb-admin shutdown`, `start()` runs `mariadbd` on the same port and data again."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pymysql

from bench.common import free_port

INSTALL = ("mariadb-install-db", "mysql_install_db")
SERVER = ("/usr/sbin/mariadbd", "/usr/sbin/mysqld")
ADMIN = ("mariadb-admin", "mysqladmin")


def _first(names: tuple[str, ...]) -> str | None:
    for n in names:
        found = shutil.which(n) or (n if os.path.isabs(n) and os.access(n, os.X_OK) else None)
        if found:
            return found
    return None


def missing() -> str | None:
    """What is missing to run a private server (None: all there)."""
    for names in (INSTALL, SERVER, ADMIN):
        if _first(names) is None:
            return f"none of {names} is installed"
    return None


class MariaDBServer:
    """`mariadbd` on 127.0.0.1:`port` with its data in `workdir`, root without a password."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.datadir = workdir / "data"
        # a Unix socket path is limited to 107 bytes: pytest's tmp_path can be longer
        self._sockdir = tempfile.mkdtemp(prefix="ohm-")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "mariadb.log"

    def install(self) -> None:
        self.workdir.mkdir(exist_ok=True)
        subprocess.run(
            [
                str(_first(INSTALL)),
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    def start(self, timeout: float = 30.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        args = [
            str(_first(SERVER)),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            f"--socket={self._sockdir}/s",
            "--bind-address=127.0.0.1",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
            f"--log-error={self.log}",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")  # mariadbd refuses to run as root unless told so
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect().close()
                return
            except pymysql.err.OperationalError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mariadbd exited {self.proc.returncode}, see {self.log}") from None
                assert time.monotonic() < deadline, f"mariadbd not up within {timeout}s, see {self.log}"
                time.sleep(0.05)

    def connect(self, database: str | None = None) -> Any:
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            database=database,
            autocommit=True,
            connect_timeout=2,
        )

    def shutdown(self) -> None:
        """A clean shutdown (`mariadb-admin shutdown`), waiting for the process to exit."""
        subprocess.run(
            [str(_first(ADMIN)), "-h127.0.0.1", f"-P{self.port}", "-uroot", "shutdown"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        if self.proc is not None:
            self.proc.wait(60)

    def stop(self) -> None:
        """At the end: clean shutdown if it runs (kill if that fails); the data and socket dirs go."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.shutdown()
            except (subprocess.SubprocessError, OSError):
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self._sockdir, ignore_errors=True)
        shutil.rmtree(self.datadir, ignore_errors=True)
