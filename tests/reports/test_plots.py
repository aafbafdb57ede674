"""Plots are written as valid PNG files; bad input raises warmrec errors."""

from __future__ import annotations

import struct

import numpy as np
import polars as pl
import pytest

from warmrec.errors import ConfigError, DataError
from warmrec.reports.plots import (
    bar_plot,
    figure_png,
    line_plot,
    new_figure,
    plot_gap_histogram,
    plot_length_distribution,
    plot_popularity,
)

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


CURVE = pl.DataFrame(
    {
        "frac": [0.5, 0.1, 0.2] * 2,
        "ndcg": [0.2, 0.1, 0.15, 0.22, 0.12, 0.14],
        "lo": [0.19, 0.09, 0.14, 0.2, 0.11, 0.13],
        "hi": [0.21, 0.11, 0.16, 0.24, 0.13, 0.15],
        "strategy": ["scratch"] * 3 + ["finetune"] * 3,
    }
)


def test_line_plot(tmp_path):
    p = line_plot(
        CURVE, "frac", "ndcg", "strategy", tmp_path / "a" / "line.png", "NDCG", lo="lo", hi="hi"
    )
    w, h = png_size(p)
    assert w > 300 and h > 200
    assert line_plot(CURVE, "frac", "ndcg", None, tmp_path / "plain.png", logx=True).is_file()
    assert sorted(x.name for x in (tmp_path / "a").iterdir()) == ["line.png"]  # no temp files


def test_bar_plot(tmp_path):
    p = bar_plot(CURVE, "frac", "ndcg", "strategy", tmp_path / "bar.png", "bars", lo="lo", hi="hi")
    png_size(p)
    df = pl.DataFrame({"model": ["pop", "sasrec"], "hr": [0.1, 0.3]})
    png_size(bar_plot(df, "model", "hr", None, tmp_path / "bar2.png"))


def test_plots_reject_bad_columns_and_empty_tables(tmp_path):
    with pytest.raises(ConfigError, match="recall"):
        line_plot(CURVE, "frac", "recall", "strategy", tmp_path / "x.png")
    with pytest.raises(ConfigError, match="model"):
        bar_plot(CURVE, "frac", "ndcg", "model", tmp_path / "x.png")
    with pytest.raises(DataError, match="nothing to plot"):
        line_plot(CURVE.head(0), "frac", "ndcg", None, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_data_stats_plots(tmp_path):
    rng = np.random.default_rng(0)
    png_size(plot_length_distribution(rng.integers(1, 30, 500), tmp_path / "len_small.png"))
    png_size(plot_length_distribution(rng.geometric(0.01, 5000), tmp_path / "len_tail.png"))
    png_size(plot_popularity(np.r_[0, rng.zipf(1.5, 2000)], tmp_path / "pop.png"))
    edges = np.r_[0.0, np.geomspace(1, 1e7, 30)]
    png_size(plot_gap_histogram(edges, rng.integers(0, 100, 30), 1800.0, tmp_path / "gap.png"))
    png_size(plot_gap_histogram([1, 2, 3], [5, 6], None, tmp_path / "gap_lin.png"))


def test_data_stats_plots_reject_bad_input(tmp_path):
    with pytest.raises(DataError, match="lengths"):
        plot_length_distribution([], tmp_path / "x.png")
    with pytest.raises(DataError, match="counts"):
        plot_popularity([0, 0], tmp_path / "x.png")
    with pytest.raises(DataError, match="edges"):
        plot_gap_histogram([0, 1, 2], [1, 2, 3], 10, tmp_path / "x.png")
    with pytest.raises(DataError, match="increase"):
        plot_gap_histogram([0, 2, 1], [1, 2], 10, tmp_path / "x.png")


def test_figure_png_bytes():
    fig, ax = new_figure()
    ax.plot([1, 2], [3, 4])
    assert figure_png(fig).startswith(PNG)


def test_a_point_without_an_interval_gets_no_error_bar():
    """One seed gives NaN bounds: they had become a zero-width bar with caps, drawn under a
    caption naming a 95 % interval."""
    from warmrec.reports.plots import _yerr

    y = np.array([0.2, 0.3])
    assert _yerr(y, np.array([np.nan, np.nan]), np.array([np.nan, np.nan])) is None
    err = _yerr(y, np.array([0.1, np.nan]), np.array([0.25, np.nan]))
    assert np.allclose(err[:, 0], [0.1, 0.05]) and np.isnan(err[:, 1]).all()


def test_bar_plot_draws_a_missing_value_as_missing_not_as_zero(tmp_path, monkeypatch):
    """A NaN (or null) bar was drawn as a bar of height 0: a missing value looked measured."""
    import warmrec.reports.plots as plots

    figs = []
    save = plots.save_figure
    monkeypatch.setattr(
        plots, "save_figure", lambda fig, path: (figs.append(fig), save(fig, path))[1]
    )
    df = pl.DataFrame(
        {
            "model": ["pop", "sasrec", "gru4rec", "sknn"],
            "hr": [0.1, float("nan"), 0.3, None],
            "lo": [0.05, float("nan"), 0.2, None],
            "hi": [0.15, float("nan"), 0.4, None],
        }
    )
    png_size(bar_plot(df, "model", "hr", None, tmp_path / "bar.png", lo="lo", hi="hi"))
    ax = figs[0].axes[0]
    bars = sorted((round(p.get_x() + p.get_width() / 2, 6), p.get_height()) for p in ax.patches)
    assert bars == [(0.0, 0.1), (2.0, 0.3)]  # no bar at 1 (NaN) or 3 (null)
    marks = sorted((round(t.get_position()[0], 6), t.get_text()) for t in ax.texts)
    assert marks == [(1.0, "n/a"), (3.0, "n/a")]
    # grouped: a category a group has no row for is marked too (model b has no "x")
    figs.clear()
    df = pl.DataFrame({"data": ["x", "y", "y"], "model": ["a", "a", "b"], "hr": [0.2, None, 0.4]})
    bar_plot(df, "data", "hr", "model", tmp_path / "grouped.png")
    ax = figs[0].axes[0]
    bars = sorted((round(p.get_x() + p.get_width() / 2, 6), p.get_height()) for p in ax.patches)
    assert bars == [(-0.2, 0.2), (1.2, 0.4)]
    marks = sorted((round(t.get_position()[0], 6), t.get_text()) for t in ax.texts)
    assert marks == [(0.2, "n/a"), (0.8, "n/a")]
