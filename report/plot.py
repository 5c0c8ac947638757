"""`--png FILE`: success rate over time, backend alone (first attempts) vs through the proxy.

Top: the two rates per time bucket (empty buckets leave a gap), the target as a dashed line.
Bottom: served requests per bucket and the failures clients saw. matplotlib's Agg backend: no
display needed (CI, servers).
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

from .analyze import Report
from .render import bucket_name, percent


def _nan(value: float | None) -> float:
    return math.nan if value is None else value * 100


def plot_png(report: Report, path: Path, target: float | None = None) -> None:
    # The Agg canvas directly, no pyplot: no display, no global figure state, faster to import.
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    points = report.timeline
    half = timedelta(seconds=report.bucket_seconds / 2)
    times = [p.start for p in points]
    middles = [t + half for t in times]  # a rate belongs to its whole bucket: drawn mid-bar
    proxy = [_nan(p.through_proxy) for p in points]
    backend = [_nan(p.backend_alone) for p in points]
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    bucket = bucket_name(report.bucket_seconds)
    if report.first_time and report.last_time:
        span = f"{report.first_time:%Y-%m-%d %H:%M} to {report.last_time:%Y-%m-%d %H:%M} UTC"
    else:
        span = "no request"
    fig.suptitle(f"Success rate per {bucket}, {span}: {report.served:,} requests served")
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
                label=f"through the proxy below target: {len(below)} of {len(points)} buckets",
            )
    known = [v for v in proxy + backend if not math.isnan(v)]
    low = min(known, default=0.0)
    # Room below the lowest point, a little above 100%, whole numbers on the axis.
    top.set_ylim(max(0.0, math.floor(low - max(2.0, (100 - low) * 0.1))), 100.5)
    top.set_ylabel("success rate (%)")
    top.grid(True, alpha=0.3)
    # Above the plot: inside it would hide the line that runs along 100%.
    top.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncols=2, fontsize=9, frameon=False)
    if not points:
        top.text(0.5, 0.5, "no request in the logs", ha="center", transform=top.transAxes)

    width = report.bucket_seconds / 86400 * 0.9  # bar width in days (matplotlib's date unit)
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
    if points:
        locator = mdates.AutoDateLocator()
        bottom.xaxis.set_major_locator(locator)
        bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    else:
        bottom.set_xticks([])  # no time axis to show (matplotlib would show 1970)
    fig.savefig(path, dpi=110)
