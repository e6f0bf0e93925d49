"""Per-series windows: the last WINDOW period values of every routed series, in one preallocated array.

One float64 row of WINDOW slots per series plus its newest timestamp (PRODUCT §8: ≤ 2 KiB per active
series with a 60-bucket window; a row is 60 × 8 = 480 bytes). Rows are handed out by `allocate` and the
arrays grow by doubling. A slot holds the series' last value in that period (timestamp // step).
"""

from __future__ import annotations

import numpy as np

WINDOW = 60


class SeriesWindows:
    def __init__(self, window: int = WINDOW, step: int = 10, capacity: int = 1024) -> None:
        self.window = window
        self.step = step
        self._values = np.full((capacity, window), np.nan)
        self._last = np.zeros(capacity, dtype=np.int64)
        self._n = 0

    def clear(self) -> None:
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def allocate(self) -> int:
        if self._n == len(self._last):
            cap = 2 * len(self._last)
            values = np.full((cap, self.window), np.nan)
            values[: self._n] = self._values[: self._n]
            last = np.zeros(cap, dtype=np.int64)
            last[: self._n] = self._last[: self._n]
            self._values, self._last = values, last
        slot = self._n
        self._values[slot].fill(np.nan)
        self._last[slot] = 0
        self._n += 1
        return slot

    def put(self, slot: int, ts: int, value: float) -> None:
        if slot < 0:
            return
        period = ts // self.step
        last = int(self._last[slot])
        row = self._values[slot]
        if last and period > last:
            # clear the periods skipped since the last sample (no data there)
            gap = min(period - last - 1, self.window)
            for k in range(1, gap + 1):
                row[(last + k) % self.window] = np.nan
        if period >= last:
            self._last[slot] = period
        elif last - period >= self.window:
            return  # older than the window
        row[period % self.window] = value

    def values(self, slot: int) -> list[float | None]:
        """Oldest first, None where the series had no sample."""
        last = int(self._last[slot])
        row = self._values[slot]
        out: list[float | None] = []
        for p in range(last - self.window + 1, last + 1):
            v = float(row[p % self.window])
            out.append(None if v != v else v)
        return out

    def nbytes(self) -> int:
        return int(self._values.nbytes + self._last.nbytes)
