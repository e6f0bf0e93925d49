"""The store suite's `backend` fixture (a fresh SQLite file, and a fresh MariaDB database when MariaDB at
127.0.0.1:3306 answers) for engine tests that must hold on both stores."""

from tests.store.conftest import backend, mysql_server  # noqa: F401
