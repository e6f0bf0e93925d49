"""schemathesis over the OpenAPI description (PRODUCT §10, issue 13): bounded, derandomized examples
against a real daemon; zero 5xx, and every response matches its documented schema.

The daemon runs in a thread with its own event loop (schemathesis calls are synchronous `requests`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error, response_schema_conformance  # noqa: E402

from oceand.api.openapi import spec  # noqa: E402
from oceand.daemon import Daemon  # noqa: E402
from tests.conftest import make_config  # noqa: E402

schema = schemathesis.openapi.from_dict(spec())


class Background:
    """A daemon on 127.0.0.1 in a thread of its own (auth off, no write limit)."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.daemon = Daemon(make_config(tmp, auth={"write_burst": 1_000_000}))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.daemon.start(), self.loop).result(30)
        assert self.daemon.url is not None
        return self.daemon.url

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.daemon.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with Background(tmp_path_factory.mktemp("fuzz")) as url:
        yield url


@schema.parametrize()
@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api(case: schemathesis.Case, base_url: str) -> None:
    response = case.call(base_url=base_url, timeout=10)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
