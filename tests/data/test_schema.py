"""Column helpers of ``warmrec.data.schema``."""

import polars as pl
import pytest

from warmrec.data.schema import whole_seconds


def test_whole_seconds_writes_integral_float_times_as_integers_and_keeps_fractions():
    df = pl.DataFrame({"item_id": ["a", "b"], "timestamp": [1_600_000_000.0, 1_600_000_060.0]})
    out = whole_seconds(df)
    assert out.schema["timestamp"] == pl.Int64
    assert out["timestamp"].to_list() == [1_600_000_000, 1_600_000_060]
    half = df.with_columns(pl.Series("timestamp", [1_600_000_000.5, 1.0]))
    assert whole_seconds(half).equals(half)  # a fraction of a second is kept
    assert whole_seconds(df.drop("timestamp")).equals(df.drop("timestamp"))
    nulls = pl.DataFrame({"timestamp": [1.0, None]})
    assert whole_seconds(nulls).schema["timestamp"] == pl.Float64


def test_a_table_in_memory_is_checked_as_a_file_is():
    import pytest

    from warmrec.data.columns import canonical_table
    from warmrec.errors import DataError

    base = {"user_id": [1, 1, 2], "item_id": [4, 5, 4], "timestamp": [1.6e9, 1.6e9 + 60, 1.6e9]}
    ms = canonical_table(pl.DataFrame({**base, "timestamp": [1.6e12, 1.6e12 + 6e4, 1.6e12]}))
    assert ms["timestamp"].to_list() == [1.6e9, 1.6e9 + 60, 1.6e9]  # milliseconds, as a file's
    for bad, what in [(-3.0, "negative timestamp"), (float("inf"), "not a finite number")]:
        with pytest.raises(DataError, match=what):
            canonical_table(pl.DataFrame({**base, "timestamp": [1.6e9, bad, 1.6e9]}))
    same = canonical_table(pl.DataFrame({**base, "item_id": ["4", "4.0", "5"]}))
    assert same["item_id"].to_list() == [4, 4, 5]  # "4" and "4.0" are one item, as in a file
    kept = canonical_table(pl.DataFrame({**base, "item_id": ["007", "7", "5"]}))
    assert kept["item_id"].to_list() == ["007", "7", "5"]


def test_validate_interactions_keeps_the_microseconds_of_a_datetime():
    """A date-time column is converted to the microsecond, as the readers do: cut to the
    millisecond, events 0.3 ms apart tied and came in file order."""
    from datetime import datetime

    from warmrec.data.schema import validate_interactions

    t = [datetime(2024, 1, 1, 0, 0, 0, 700), datetime(2024, 1, 1, 0, 0, 0, 400)]
    df = pl.DataFrame({"session_id": [1, 1], "item_id": [2, 1], "timestamp": t})
    out = validate_interactions(df)["timestamp"].to_list()
    assert out[0] - out[1] == pytest.approx(3e-4, abs=1e-6)
