"""Clients that send what falcon-plus sends to a transfer, built from falcon-plus's source.

- `RpcClient`: Go's `net/rpc/jsonrpc` client codec as a falcon-agent (`modules/agent/g/transfer.go`,
  `SingleConnRpcClient`) and a transfer's `transfer` backend (`modules/transfer/sender/send_tasks.go`,
  `forward2TransferTask`) use it: `client.Call("Transfer.Update", []*MetricValue, &TransferResponse)`.
  Each call is one line, `{"method":..., "params":[<args>], "id":<seq>}\\n` (Go's json.Encoder; `id` counts
  from 0 per connection), the MetricValue keys in struct order with their json tags.
- `agent_item` / `transfer_item`: a MetricValue as the agent fills it (value as measured, tags as
  configured, often "") and as a transfer forwards it (`convert`: value float64, tags `SortedTags`).
- `TsdbClient`: the `tsdb` backend (`forward2TsdbTask`): a batch of `TsdbItem.TsdbString()` lines per write,
  never reading the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson

from collectors.opentsdb import put_line


def agent_item(
    endpoint: str, metric: str, ts: int, value: float, tags: str = "", step: int = 60, ctype: str = "GAUGE"
) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "metric": metric,
        "value": value,
        "step": step,
        "counterType": ctype,
        "tags": tags,
        "timestamp": ts,
    }


def sorted_tags(tags: dict[str, str]) -> str:
    """falcon-plus common/utils SortedTags."""
    return ",".join(f"{k}={tags[k]}" for k in sorted(tags))


def transfer_item(
    endpoint: str, metric: str, ts: int, value: float, tags: dict[str, str] | None = None, step: int = 60
) -> dict[str, Any]:
    return agent_item(endpoint, metric, ts, float(value), sorted_tags(tags or {}), step)


class RpcClient:
    """One connection, calls answered in order (Go's client matches replies by id; so do we)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.seq = 0

    @classmethod
    async def connect(cls, host: str, port: int) -> RpcClient:
        r, w = await asyncio.open_connection(host, port, limit=64 * 1024 * 1024)
        return cls(r, w)

    def request(self, method: str, params: Any) -> tuple[int, bytes]:
        seq = self.seq
        self.seq += 1
        return seq, orjson.dumps({"method": method, "params": [params], "id": seq}) + b"\n"

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, timeout: float = 5.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line:
            raise ConnectionError("connection closed by the server")
        out: dict[str, Any] = orjson.loads(line)
        return out

    async def call(self, method: str, params: Any) -> Any:
        """client.Call: the result, or RuntimeError(error text) as Go's ServerError."""
        seq, data = self.request(method, params)
        await self.send_raw(data)
        rep = await self.reply()
        assert rep["id"] == seq, rep
        if rep["error"] is not None:
            raise RuntimeError(rep["error"])
        return rep["result"]

    async def update(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = await self.call("Transfer.Update", items)
        return out

    async def closed(self, timeout: float = 5.0) -> bytes:
        """Everything the server still sends until it closes the connection."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


class TsdbClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> TsdbClient:
        r, w = await asyncio.open_connection(host, port)
        return cls(r, w)

    async def put(self, items: list[tuple[str, str, int, float, dict[str, str]]]) -> None:
        """(endpoint, metric, ts, value, tags) items, one write per batch, as forward2TsdbTask."""
        await self.send_raw(b"".join(put_line(e, m, ts, v, tags) for e, m, ts, v, tags in items))

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), timeout)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
