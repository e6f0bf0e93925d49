"""Fixtures for the Falcon notification tests: the falcon-plus API + sender fake, settings pointing at it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.fakes.falcon_api import DEFAULT_TOKEN, FalconFake, User

TEAMS = {
    "sre_ocean": [
        User(1, "alice", email="alice@example.com", phone="13800000001", im="alice.im"),
        User(2, "bob", phone="13800000002"),  # no mail, no IM: left out of those `tos`
        User(3, "carol", email="carol@example.com", phone="13800000001"),  # a shared phone: sent to once
    ],
    "dba": [User(4, "dave", email="dave@example.com", im="dave.im"), User(1, "alice", phone="13800000001")],
}


@pytest.fixture
async def falcon() -> AsyncIterator[FalconFake]:
    fake = await FalconFake(teams={k: list(v) for k, v in TEAMS.items()}).start()
    yield fake
    await fake.stop()


def notify_config(fake: FalconFake, **over: Any) -> dict[str, Any]:
    """A `[notify]` table for `fake`: every channel, falcon-plus's default token."""
    table: dict[str, Any] = {
        "falcon_api": fake.url,
        "falcon_api_token": DEFAULT_TOKEN,
        "sms": f"{fake.url}/sms",
        "mail": f"{fake.url}/mail",
        "im": f"{fake.url}/wechat",
    }
    table.update(over)
    return table


async def until(cond: Callable[[], Any], what: str, timeout: float = 5.0) -> None:
    """Wait for `cond` (a state change made by another task); fail naming `what` after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
