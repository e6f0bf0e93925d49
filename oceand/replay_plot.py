"""The `oceand replay --plot` PNG: load against served capacity, instances and actions over time.

Three panels sharing a UTC time axis:
1. load and capacity (ready × capacity). The red area is the load left unserved. Where the timeline
   has more periods than the plot has room for (over `MAX_BINS`), periods are grouped into equal bins:
   the load is drawn as its range in the bin (light band) and its mean (line), the capacity as its mean,
   the unserved area as the largest unserved load in the bin. Otherwise every period is drawn as is
   and each action is also marked at the capacity it asked for (▲ scale-out, ▼ scale-in).
2. instances: ready (mean in a bin) and ready + starting (max in a bin); the gap is instances starting.
3. actions: scale-outs (up, green) and scale-ins (down, orange) per bin.

Matplotlib runs on the Agg backend; the PNG is reduced to a 128-colour palette and carries no
software/version metadata, so the same replay gives the same bytes on the same matplotlib and Pillow.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from PIL import Image

from oceand.replay import ReplayResult

MAX_BINS = 800
Array = npt.NDArray[Any]


class PlotError(ValueError):
    """The plot could not be written (the message names the file)."""


@dataclass(frozen=True, slots=True)
class Bins:
    """The timeline grouped into consecutive bins of (about) equal numbers of periods."""

    edges: Array  # datetime64[s], len = bins + 1
    seconds: float  # typical bin width
    load_mean: Array
    load_min: Array
    load_max: Array
    capacity_mean: Array
    unserved_max: Array
    ready_mean: Array
    total_max: Array  # ready + starting
    outs: Array
    ins: Array


def group(result: ReplayResult, max_bins: int = MAX_BINS) -> Bins:
    tl, cap, period = result.timeline, result.options.capacity, result.period
    n = len(tl.t)
    nb = min(n, max_bins)
    starts = np.linspace(0, n, nb + 1).astype(np.int64)
    first = starts[:-1]
    size = np.diff(starts)
    before = tl.ready + tl.starting
    t_edges = np.append(tl.t[first], tl.t[-1] + period)
    return Bins(
        edges=t_edges.astype("datetime64[s]"),
        seconds=float(n * period / nb),
        load_mean=np.add.reduceat(tl.load, first) / size,
        load_min=np.minimum.reduceat(tl.load, first),
        load_max=np.maximum.reduceat(tl.load, first),
        capacity_mean=np.add.reduceat(tl.ready * cap, first) / size,
        unserved_max=np.maximum.reduceat(tl.unserved, first),
        ready_mean=np.add.reduceat(tl.ready, first) / size,
        total_max=np.maximum.reduceat(before, first),
        outs=np.add.reduceat((tl.desired > before).astype(np.int64), first),
        ins=np.add.reduceat((tl.desired < before).astype(np.int64), first),
    )


def _steps_x(edges: Array) -> Array:
    """Bin edges e0..en as e0, e1, e1, e2, e2, ..., en: each bin drawn as a flat segment."""
    return np.repeat(edges, 2)[1:-1]


def _steps_y(values: Array) -> Array:
    return np.repeat(values, 2)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def write_plot(result: ReplayResult, path: str | Path, *, title: str | None = None) -> None:
    tl, cap = result.timeline, result.options.capacity
    b = group(result)
    per_period = len(b.load_mean) == len(tl.t)
    x = _steps_x(b.edges)
    s = result.summary()
    fig, (ax, axn, axa) = plt.subplots(
        3, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1, 1]}, layout="constrained"
    )
    try:
        if not per_period:
            ax.fill_between(x, _steps_y(b.load_min), _steps_y(b.load_max), color="tab:blue", alpha=0.2,
                            linewidth=0, label="load (range in bin)")  # fmt: skip
        ax.fill_between(x, 0, _steps_y(b.unserved_max), color="tab:red", alpha=0.5, linewidth=0,
                        label="unserved" if per_period else "unserved (max in bin)")  # fmt: skip
        ax.plot(x, _steps_y(b.load_mean), color="tab:blue", linewidth=0.8,
                label="load" if per_period else "load (mean)")  # fmt: skip
        ax.plot(x, _steps_y(b.capacity_mean), color="tab:green", linewidth=1.0,
                label="capacity = ready × capacity" + ("" if per_period else " (mean)"))  # fmt: skip
        if per_period:
            before = tl.ready + tl.starting
            when = b.edges[:-1]
            for mask, marker, color, label in (
                (tl.desired > before, "^", "darkgreen", "scale-out"),
                (tl.desired < before, "v", "darkorange", "scale-in"),
            ):
                ax.plot(
                    when[mask],
                    tl.desired[mask] * cap,
                    marker,
                    color=color,
                    markersize=4,
                    label=label,
                    zorder=3,
                )
        top = max(float(np.max(b.load_max)), float(np.max(b.total_max)) * cap, 1e-9)
        ax.set_ylim(0, top * 1.18)  # headroom for the legend
        ax.set_ylabel(f"load (one instance serves {cap:g})")
        ax.legend(loc="upper left", fontsize="small", ncols=6)
        ax.grid(True, alpha=0.3)
        default_title = (
            f"{Path(result.trace.path).name} — {result.doc.job}\n"
            f"unserved {100 * s['unserved_fraction']:.2f}% · overload {s['overload_seconds']:g} s · "
            f"cost ratio {s['cost_ratio']:.2f} · {s['actions']} actions"
            + ("" if per_period else f" · one bin = {_duration(b.seconds)}")
        )
        ax.set_title(title or default_title, fontsize="medium")

        axn.plot(x, _steps_y(b.total_max), color="tab:gray", linewidth=0.8,
                 label="ready + starting" + ("" if per_period else " (max)"))  # fmt: skip
        axn.plot(x, _steps_y(b.ready_mean), color="tab:green", linewidth=1.0,
                 label="ready" + ("" if per_period else " (mean)"))  # fmt: skip
        axn.set_ylim(0, max(1, int(np.max(b.total_max))) * 1.3)
        axn.set_ylabel("instances")
        axn.legend(loc="upper left", fontsize="small", ncols=2)
        axn.grid(True, alpha=0.3)

        width = b.seconds / 86400.0  # matplotlib date units are days
        axa.bar(b.edges[:-1], b.outs, width=width, align="edge", color="darkgreen", label="scale-outs")
        axa.bar(b.edges[:-1], -b.ins, width=width, align="edge", color="darkorange", label="scale-ins")
        axa.axhline(0, color="black", linewidth=0.5)
        peak = max(1, int(np.max(b.outs)), int(np.max(b.ins)))
        axa.set_ylim(-peak * 1.2, peak * 1.6)
        axa.set_ylabel("actions" if per_period else "actions / bin")
        axa.legend(loc="upper left", fontsize="small", ncols=2)
        axa.grid(True, alpha=0.3)

        locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
        axa.xaxis.set_major_locator(locator)
        axa.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        axa.set_xlabel("time (UTC)")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    finally:
        plt.close(fig)
    _save_small_png(buf, path)


def _save_small_png(rendered: io.BytesIO, path: str | Path) -> None:
    """The rendered PNG with a 128-colour palette (no dithering): a third of the size, same look.
    Pillow (a matplotlib dependency) writes no time stamp or software name, so bytes are reproducible."""
    rendered.seek(0)
    with Image.open(rendered) as im:
        small = im.convert("RGB").quantize(
            colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
    try:
        small.save(path, format="PNG", optimize=True)
    except OSError as e:
        raise PlotError(f"{path}: cannot write the plot ({e.strerror or e})") from None
