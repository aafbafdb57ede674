"""The CLI's terminal tables: floats as the reports write them."""

from __future__ import annotations

import polars as pl

from warmrec.cli.common import format_table


def test_a_small_figure_keeps_its_digits_and_a_missing_one_stays_missing():
    """polars' 4 decimals printed an NDCG@10 of 3e-05 as 0.0000, the same as zero."""
    df = pl.DataFrame({"model": ["a", "b", "c"], "ndcg@10": [0.43, 3e-05, None], "n": [1, 2, 3]})
    rows = {
        ln.split("|")[1].strip(): ln.split("|")[2].strip()
        for ln in format_table(df).splitlines()[2:]
    }
    assert rows == {"a": "0.4300", "b": "3.00e-05", "c": "null"}
    assert "| 2000 " in format_table(pl.DataFrame({"n": [2000]}))  # integers as they are
