"""Matplotlib plots written as PNG: result curves and bars, and data-statistics plots.

Figures are built with the object API on an Agg canvas (``Figure`` + ``FigureCanvasAgg``), never
through ``pyplot``: no global backend switch, no window, no figure kept alive, safe in threads and
on headless machines. Every function writes its PNG atomically (``warmrec.io``) and returns the
path; :func:`figure_png` gives the bytes for embedding (``reports.report.Image``).
"""

from __future__ import annotations

import io as _io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from warmrec import io
from warmrec.errors import ConfigError, DataError

DPI = 120


def new_figure(figsize: tuple[float, float] = (6.4, 4.2)) -> tuple[Figure, Axes]:
    """A figure with one axes on an Agg canvas (no pyplot state)."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    return fig, ax


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes."""
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write the figure as PNG atomically."""
    io.atomic_write_bytes(path, figure_png(fig, dpi))
    return Path(path)


def _frame(df: pl.DataFrame, cols: Sequence[str | None]) -> pl.DataFrame:
    if not isinstance(df, pl.DataFrame):
        df = pl.DataFrame(df)
    need = [c for c in cols if c is not None]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ConfigError(
            f"column(s) {', '.join(missing)} not in the table; it has: {', '.join(df.columns)}"
        )
    if df.height == 0:
        raise DataError("nothing to plot", expected="at least one row", found="an empty table")
    return df


def _groups(df: pl.DataFrame, group: str | None) -> list[tuple[str | None, pl.DataFrame]]:
    if group is None:
        return [(None, df)]
    keys = df[group].unique(maintain_order=True).to_list()
    return [(str(k), df.filter(pl.col(group) == k)) for k in keys]


def _yerr(y: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None) -> np.ndarray | None:
    if lo is None and hi is None:
        return None
    below = np.clip(y - lo, 0, None) if lo is not None else np.zeros_like(y)
    above = np.clip(hi - y, 0, None) if hi is not None else np.zeros_like(y)
    err = np.vstack([below, above])
    # a point without an interval (one seed: NaN bounds) gets no bar: a zero-width bar with
    # its caps had drawn one, under a caption naming a 95 % interval
    return None if np.isnan(err).all() else err


def _col(d: pl.DataFrame, c: str | None) -> np.ndarray | None:
    return None if c is None else d[c].cast(pl.Float64).to_numpy()


def line_plot(
    df: pl.DataFrame,
    x: str,
    y: str,
    group: str | None,
    path: str | Path,
    title: str = "",
    *,
    lo: str | None = None,
    hi: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    logx: bool = False,
    logy: bool = False,
) -> Path:
    """One line per ``group`` of ``y`` against ``x`` (sorted by ``x``), error bars from ``lo``/``hi``.

    E.g. NDCG@10 against the fraction of target-domain data, one line per transfer strategy,
    with ``lo``/``hi`` the bootstrap or seed interval.
    """
    df = _frame(df, [x, y, group, lo, hi]).filter(pl.col(y).is_not_null())
    fig, ax = new_figure()
    for name, d in _groups(df, group):
        d = d.sort(x)
        xs = d[x].to_numpy()
        ys = _col(d, y)
        err = _yerr(ys, _col(d, lo), _col(d, hi))
        ax.errorbar(
            xs, ys, yerr=err, marker="o", ms=4, capsize=3 if err is not None else 0, label=name
        )
    if group is not None:
        ax.legend(title=group, fontsize="small")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    return save_figure(fig, path)


def bar_plot(
    df: pl.DataFrame,
    x: str,
    y: str,
    group: str | None,
    path: str | Path,
    title: str = "",
    *,
    lo: str | None = None,
    hi: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> Path:
    """Bars of ``y`` for each category of ``x``, side by side per ``group``, error bars from
    ``lo``/``hi`` (e.g. NDCG@10 per dataset, one bar per model).

    A missing value (null or NaN, or no row for a category in a group) gets no bar but an
    ``n/a`` mark in its place: a NaN was drawn as a zero bar, which read as a measured 0."""
    df = _frame(df, [x, y, group, lo, hi])
    cats = df[x].unique(maintain_order=True).to_list()
    pos = {c: i for i, c in enumerate(cats)}
    groups = _groups(df, group)
    width = 0.8 / len(groups)
    fig, ax = new_figure((max(6.4, 0.5 * len(cats) * len(groups) + 2), 4.2))
    for j, (name, d) in enumerate(groups):
        shift = -0.4 + width * (j + 0.5)
        xs = np.array([pos[c] for c in d[x].to_list()], dtype=np.float64) + shift
        present = set(d[x].to_list())
        absent = np.array([pos[c] for c in cats if c not in present], dtype=np.float64) + shift
        ys = _col(d, y)
        known = np.isfinite(ys)
        los, his = _col(d, lo), _col(d, hi)
        err = _yerr(
            ys[known],
            None if los is None else los[known],
            None if his is None else his[known],
        )
        bars = ax.bar(xs[known], ys[known], width, yerr=err, capsize=3, label=name)
        color = bars.patches[0].get_facecolor() if bars.patches else "#555555"
        for xm in [*xs[~known], *absent]:  # x in data units, y in axes units: at the foot
            ax.text(
                xm,
                0.02,
                "n/a",
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                rotation=90,
                fontsize="x-small",
                color=color,
            )
    ax.set_xticks(range(len(cats)), [str(c) for c in cats])
    ax.set_xlim(-0.5, len(cats) - 0.5)  # an n/a mark, not a bar, may stand at either end
    if max((len(str(c)) for c in cats), default=0) * len(cats) > 60:
        ax.tick_params(axis="x", labelrotation=30)
    ax.grid(False, axis="x")
    if group is not None:
        ax.legend(title=group, fontsize="small")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    return save_figure(fig, path)


def _values(values, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    if a.size == 0:
        raise DataError("nothing to plot", field=name, expected="at least one value", found="none")
    return a


def plot_length_distribution(
    lengths: Sequence[int] | np.ndarray,
    path: str | Path,
    title: str = "Sequence lengths",
    *,
    max_bins: int = 60,
) -> Path:
    """Histogram of sequence lengths (log counts; log-spaced bins for long tails), with the
    median and mean marked."""
    a = _values(lengths, "lengths")
    fig, ax = new_figure()
    lo, hi = max(a.min(), 1.0), a.max()
    if hi - a.min() + 1 <= max_bins:
        bins = np.arange(a.min() - 0.5, hi + 1.5)
    else:
        bins = np.unique(np.round(np.geomspace(lo, hi + 1, max_bins)))
        bins = np.concatenate([[min(a.min(), lo) - 0.5], bins[1:]])
        if bins[0] > 0:
            ax.set_xscale("log")
    ax.hist(a, bins=bins, color="#4c72b0", edgecolor="white", linewidth=0.4)
    ax.axvline(np.median(a), color="#c44e52", ls="--", label=f"median {np.median(a):g}")
    ax.axvline(a.mean(), color="#55a868", ls=":", label=f"mean {a.mean():.1f}")
    ax.set_yscale("log")
    ax.set_xlabel("length (events)")
    ax.set_ylabel("sequences")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_popularity(
    counts: Sequence[int] | np.ndarray, path: str | Path, title: str = "Item popularity"
) -> Path:
    """Rank-frequency plot on log-log axes (items by count, most popular first; zeros dropped)."""
    a = _values(counts, "counts")
    a = np.sort(a[a > 0])[::-1]
    if a.size == 0:
        raise DataError("nothing to plot", field="counts", expected="a positive count", found="0")
    fig, ax = new_figure()
    ranks = np.arange(1, len(a) + 1)
    ax.loglog(ranks, a, color="#4c72b0", lw=1.5)
    top = max(1, int(np.ceil(0.01 * len(a))))
    share = a[:top].sum() / a.sum()
    ax.text(
        0.98,
        0.95,
        f"{len(a):,} items; top 1% hold {share:.0%} of events",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize="small",
    )
    ax.set_xlabel("item rank")
    ax.set_ylabel("events")
    ax.set_title(title)
    return save_figure(fig, path)


def _duration(seconds: float) -> str:
    for unit, s in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= s:
            return f"{seconds / s:.3g} {unit}"
    return f"{seconds:.3g} s"


def plot_gap_histogram(
    edges: Sequence[float] | np.ndarray,
    counts: Sequence[float] | np.ndarray,
    threshold: float | None,
    path: str | Path,
    title: str = "Inactivity gaps",
) -> Path:
    """A precomputed histogram of gaps between consecutive events (seconds), with the session
    threshold marked. Log-spaced edges are drawn on a log axis (symlog when the first edge is 0).
    """
    e = np.asarray(edges, dtype=np.float64).ravel()
    c = np.asarray(counts, dtype=np.float64).ravel()
    if e.size != c.size + 1 or c.size == 0:
        raise DataError(
            "histogram edges and counts do not match",
            field="edges",
            expected=f"len(counts) + 1 = {c.size + 1} edges (and at least one bin)",
            found=f"{e.size} edges",
        )
    if not np.all(np.diff(e) > 0):
        raise DataError("histogram edges must increase", field="edges", found="non-increasing")
    fig, ax = new_figure()
    ax.stairs(c, e, fill=True, color="#4c72b0", alpha=0.8)
    pos = e[e > 0]
    if pos.size >= 2 and pos[-1] / pos[0] > 100:
        if e[0] > 0:
            ax.set_xscale("log")
        else:
            ax.set_xscale("symlog", linthresh=pos[0])
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="#c44e52", ls="--", label=f"threshold {_duration(threshold)}")
        ax.legend(fontsize="small")
    ax.set_xlabel("gap between consecutive events (seconds)")
    ax.set_ylabel("gaps")
    ax.set_title(title)
    return save_figure(fig, path)
