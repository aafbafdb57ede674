"""Column helpers of ``warmrec.data.schema``."""

import polars as pl

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
