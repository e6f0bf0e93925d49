"""Per-series windows: the last WINDOW period values of every routed series, in one flat array.

One float64 run of WINDOW slots per series plus the number of its newest period (PRODUCT §8: ≤ 2 KiB
per active series with a 60-bucket window; a run is 60 × 8 = 480 bytes). Runs are handed out by
`allocate`; `array` keeps element access cheap on the ingest hot path (no numpy scalar boxing).
A slot holds the series' last value in that period (timestamp // step); NaN = no sample.
"""

from __future__ import annotations

from array import array

WINDOW = 60
_NAN = float("nan")


class SeriesWindows:
    def __init__(self, window: int = WINDOW, step: int = 10) -> None:
        self.window = window
        self.step = step
        self.values = array("d")
        self.last = array("q")  # newest period number per series (0 = none yet)

    def clear(self) -> None:
        del self.values[:]  # in place: the ingest loop holds these arrays
        del self.last[:]

    def __len__(self) -> int:
        return len(self.last)

    def allocate(self, period: int = 0) -> int:
        """A new run; `period`: the newest period it starts at (0: none yet)."""
        self.values.extend([_NAN] * self.window)
        self.last.append(period)
        return len(self.last) - 1

    def remove(self, slot: int) -> int:
        """Free a run: the last run moves into it and the arrays shrink by one run. Returns the slot the
        moved run had (the new len(self)), or `slot` itself when it was the last."""
        w = self.window
        end = len(self.last) - 1
        if slot != end:
            self.values[slot * w : slot * w + w] = self.values[end * w :]
            self.last[slot] = self.last[end]
        del self.values[end * w :]
        del self.last[end:]
        return end

    def put(self, slot: int, ts: int, value: float) -> None:
        w = self.window
        period = ts // self.step
        last = self.last[slot]
        base = slot * w
        if period > last:
            if last:
                # the periods skipped since the last sample hold no data
                for k in range(last + 1, min(period, last + w + 1)):
                    self.values[base + k % w] = _NAN
            self.last[slot] = period
        elif last - period >= w:
            return  # older than the window
        self.values[base + period % w] = value

    def series(self, slot: int) -> list[float | None]:
        """Oldest first, None where the series had no sample."""
        last = self.last[slot]
        w = self.window
        out: list[float | None] = []
        for p in range(last - w + 1, last + 1):
            v = self.values[slot * w + p % w]
            out.append(None if v != v else v)
        return out
