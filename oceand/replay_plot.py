"""The `oceand replay --plot` PNG: load against served capacity, and the policy's actions, over time.

Top panel: the load (what the trace asks for) and the capacity (ready × capacity); where the load line
is above the capacity line the job is overloaded and the gap is unserved (shaded red). Triangles mark
the actions at the capacity the decision asked for: ▲ scale-out, ▼ scale-in. Bottom panel: instance
counts — ready, and ready + starting (the gap is instances still starting). Times are UTC.

Matplotlib runs on the Agg backend and the PNG carries no software/version metadata, so the same
replay gives the same bytes on the same matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from oceand.replay import ReplayResult


class PlotError(ValueError):
    """The plot could not be written (the message names the file)."""


def write_plot(result: ReplayResult, path: str | Path, *, title: str | None = None) -> None:
    tl, cap = result.timeline, result.options.capacity
    edges = np.append(tl.t, tl.t[-1] + result.period).astype("datetime64[s]")
    when = edges[:-1]
    capacity = tl.ready * cap
    before = tl.ready + tl.starting
    out = tl.desired > before
    in_ = tl.desired < before
    summary = result.summary()
    x = _steps_x(edges)
    load_s, capacity_s = _steps_y(tl.load), _steps_y(capacity)
    fig, (ax, axn) = plt.subplots(
        2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, layout="constrained"
    )
    try:
        ax.fill_between(
            x, capacity_s, load_s, where=load_s > capacity_s, color="tab:red", alpha=0.3, linewidth=0,
            label="unserved",
        )  # fmt: skip
        ax.plot(x, load_s, color="tab:blue", linewidth=0.7, label="load")
        ax.plot(x, capacity_s, color="tab:green", linewidth=1.0, label="capacity (ready × capacity)")
        ax.plot(
            when[out],
            tl.desired[out] * cap,
            "^",
            color="darkgreen",
            markersize=4,
            label="scale-out",
            zorder=3,
        )
        ax.plot(
            when[in_],
            tl.desired[in_] * cap,
            "v",
            color="darkorange",
            markersize=4,
            label="scale-in",
            zorder=3,
        )
        ax.set_ylabel(f"load (capacity {cap:g} per instance)")
        top = max(float(np.max(tl.load)), float(np.max(tl.desired)) * cap, float(np.max(capacity)), 1e-9)
        ax.set_ylim(0, top * 1.15)  # headroom for the legend
        ax.legend(loc="upper left", fontsize="small", ncols=5)
        ax.grid(True, alpha=0.3)
        ax.set_title(
            title
            or (
                f"{Path(result.trace.path).name} — {result.doc.job}\n"
                f"unserved {100 * summary['unserved_fraction']:.2f}%, "
                f"overload {summary['overload_seconds']:g} s, "
                f"cost ratio {summary['cost_ratio']:.2f}, {summary['actions']} actions"
            ),
            fontsize="medium",
        )
        axn.plot(x, _steps_y(before), color="tab:gray", linewidth=0.8, label="ready + starting")
        axn.plot(x, _steps_y(tl.ready), color="tab:green", linewidth=1.0, label="ready")
        axn.set_ylabel("instances")
        axn.set_ylim(bottom=0, top=max(1, int(np.max(before, initial=0))) * 1.15)
        axn.legend(loc="upper left", fontsize="small", ncols=2)
        axn.grid(True, alpha=0.3)
        locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
        axn.xaxis.set_major_locator(locator)
        axn.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        axn.set_xlabel("time (UTC)")
        try:
            fig.savefig(path, format="png", dpi=90, metadata={"Software": None})
        except OSError as e:
            raise PlotError(f"{path}: cannot write the plot ({e.strerror or e})") from None
    finally:
        plt.close(fig)


def _steps_x(edges: npt.NDArray[np.datetime64]) -> npt.NDArray[np.datetime64]:
    """Period edges e0..en as e0, e1, e1, e2, e2, ..., en: each period drawn as a flat segment."""
    return np.repeat(edges, 2)[1:-1]


def _steps_y(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return np.repeat(values, 2)
