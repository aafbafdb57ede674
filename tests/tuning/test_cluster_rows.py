"""Ray Tune results -> trial rows: a trial that ASHA stopped is pruned, even though Ray marks its
last result ``done`` (as it does for a trial that ran to its end)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from warmrec.tuning.cluster import _rows


def _result(reports: list[dict], error=None) -> SimpleNamespace:
    last = {**reports[-1], "done": True, "trial_id": "t"}  # Ray sets its own `done` at the end
    return SimpleNamespace(
        metrics=last, metrics_dataframe=pd.DataFrame(reports), config={"model.x": 1}, error=error
    )


def test_asha_stopped_trials_are_pruned_and_finished_ones_complete() -> None:
    finished = _result(
        [
            {"value": 0.1, "epoch": 1, "finished": False},
            {"value": 0.2, "epoch": 2, "finished": False},
            {"value": 0.2, "epoch": 2, "finished": True, "valid": {"recall@10": 0.2}},
        ]
    )
    stopped = _result([{"value": 0.05, "epoch": 1, "finished": False}])
    rows = _rows(_Grid([finished, stopped]))
    assert [r.state for r in rows] == ["complete", "pruned"]
    assert rows[0].curve == [0.1, 0.2] and rows[0].epochs == 2 and rows[0].value == 0.2
    assert rows[1].curve == [0.05] and rows[1].epochs == 1


class _Grid(list):
    _experiment_analysis = SimpleNamespace(trials=[])


def test_curve_plot_shows_trials_pruned_after_one_epoch(tmp_path, monkeypatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from warmrec.tuning.results import TrialRow, plot

    drawn = []
    real = Axes.plot

    def spy(self, *args, **kw):
        lines = real(self, *args, **kw)
        drawn.extend(lines)
        return lines

    monkeypatch.setattr(Axes, "plot", spy)
    rows = [
        TrialRow(0, "complete", {"x": 1}, 0.2, epochs=3, curve=[0.1, 0.15, 0.2]),
        TrialRow(1, "pruned", {"x": 2}, 0.05, epochs=1, curve=[0.05]),
    ]
    plot(rows, tmp_path, "recall@10", {})
    one = [ln for ln in drawn if list(ln.get_ydata()) == [0.05]]
    assert one and one[0].get_marker() not in (None, "None", "", " ")  # a visible point


def test_ray_rows_score_pruned_and_failed_trials_as_the_local_rows_do() -> None:
    """A pruned Ray trial scored its last epoch (the local backend: its best before it was
    stopped), and a failed one the last epoch it reported (local: no score)."""
    stopped = _result(
        [
            {"value": 0.3, "epoch": 1, "finished": False},
            {"value": 0.1, "epoch": 2, "finished": False},
        ]
    )
    failed = _result([{"value": 0.25, "epoch": 1, "finished": False}], error=RuntimeError("x"))
    rows = _rows(_Grid([stopped, failed]))
    assert [(r.state, r.value) for r in rows] == [("pruned", 0.3), ("failed", None)]
