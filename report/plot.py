"""`--png FILE`: success rate over time, backend alone (first attempts) vs through the proxy.

Top: the two rates per time bucket (empty buckets leave a gap), the target as a dashed line.
Bottom: served requests per bucket and the failures clients saw. matplotlib's Agg backend: no
display needed (CI, servers).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from .analyze import Report
from .render import bucket_name, percent

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _nan(value: float | None) -> float:
    return math.nan if value is None else value * 100


def plot_png(report: Report, path: Path, target: float | None = None) -> None:
    """Draw the timeline into `path`: the two rates on top, requests and failures below."""
    # The Agg canvas directly, no pyplot: no display, no global figure state, faster to import.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    bucket = bucket_name(report.bucket_seconds)
    fig.suptitle(f"Success rate per {bucket}, {_span(report)}: {report.served:,} requests served")
    _draw_rates(top, report, target)
    _draw_volumes(bottom, report, bucket)
    fig.savefig(path, dpi=110)


def _span(report: Report) -> str:
    """The time range for the title, to the minute."""
    if report.first_time and report.last_time:
        return f"{report.first_time:%Y-%m-%d %H:%M} to {report.last_time:%Y-%m-%d %H:%M} UTC"
    return "no request"


def _draw_rates(top: Axes, report: Report, target: float | None) -> None:
    """Top panel: both rates per bucket in %, the target and the buckets below it."""
    points = report.timeline
    half = timedelta(seconds=report.bucket_seconds / 2)
    middles = [p.start + half for p in points]  # a rate belongs to its whole bucket: drawn mid-bar
    proxy = [_nan(p.through_proxy) for p in points]
    backend = [_nan(p.backend_alone) for p in points]
    marker = "o" if len(points) <= 60 else None
    top.plot(
        middles,
        proxy,
        color="tab:green",
        linewidth=2,
        marker=marker,
        markersize=3,
        label=f"through the proxy (final status): {percent(report.through_proxy)}",
    )
    top.plot(
        middles,
        backend,
        color="tab:red",
        linewidth=1.5,
        marker=marker,
        markersize=3,
        label=f"backend alone (first attempt): {percent(report.backend_alone)}",
    )
    if target is not None:
        _draw_target(top, middles, proxy, target)
    _finish_rate_axis(top, proxy + backend)
    if not points:
        top.text(0.5, 0.5, "no request in the logs", ha="center", transform=top.transAxes)


def _draw_target(top: Axes, middles: list[datetime], proxy: list[float], target: float) -> None:
    """The target as a dashed line; a black marker on each bucket whose proxy rate is below it."""
    top.axhline(
        target * 100,
        color="grey",
        linestyle="--",
        linewidth=1,
        label=f"target {target * 100:g}%",
    )
    below = [(m, v) for m, v in zip(middles, proxy, strict=True) if v < target * 100]
    if below:
        top.plot(
            [m for m, _ in below],
            [v for _, v in below],
            linestyle="none",
            marker="v",
            markersize=5,
            color="black",
            label=f"through the proxy below target: {len(below)} of {len(middles)} buckets",
        )


def _finish_rate_axis(top: Axes, rates: list[float]) -> None:
    """Limits, labels and legend of the top panel, once every line is drawn."""
    known = [v for v in rates if not math.isnan(v)]
    low = min(known, default=0.0)
    # Room below the lowest point, a little above 100%, whole numbers on the axis.
    top.set_ylim(max(0.0, math.floor(low - max(2.0, (100 - low) * 0.1))), 100.5)
    top.set_ylabel("success rate (%)")
    top.grid(True, alpha=0.3)
    # Above the plot: inside it would hide the line that runs along 100%.
    top.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncols=2, fontsize=9, frameon=False)


def _draw_volumes(bottom: Axes, report: Report, bucket: str) -> None:
    """Bottom panel: requests served per bucket, over them failed first attempts and the
    failures clients saw; the shared time axis."""
    from matplotlib.ticker import MaxNLocator

    points = report.timeline
    width = report.bucket_seconds / 86400 * 0.9  # bar width in days (matplotlib's date unit)
    times = [p.start for p in points]
    served = [p.served for p in points]
    failed = [p.served - p.client_ok for p in points]
    first_failed = [p.reached_backend - p.first_ok for p in points]
    bottom.bar(times, served, width=width, align="edge", color="lightgrey", label="served")
    bottom.bar(
        times,
        first_failed,
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.5,
        label="first attempt failed",
    )
    bottom.bar(times, failed, width=width, align="edge", color="black", label="failed (client saw)")
    bottom.set_ylim(0, max(served, default=0) * 1.4 or 1)  # headroom for the legend
    bottom.set_ylabel(f"requests / {bucket}")
    bottom.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    bottom.grid(True, axis="y", alpha=0.3)
    bottom.legend(loc="upper left", fontsize=8, ncols=3, framealpha=0.9)
    _time_axis(bottom, has_points=bool(points))


def _time_axis(bottom: Axes, *, has_points: bool) -> None:
    """Concise dates under the bottom panel; none without a point (matplotlib would show 1970)."""
    import matplotlib.dates as mdates

    if has_points:
        locator = mdates.AutoDateLocator()
        bottom.xaxis.set_major_locator(locator)
        bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    else:
        bottom.set_xticks([])
