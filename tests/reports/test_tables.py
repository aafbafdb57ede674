"""Result tables as Markdown, HTML and CSV text and files."""

from __future__ import annotations

import polars as pl
import pytest

from warmrec.errors import ConfigError
from warmrec.reports.report import write_table
from warmrec.reports.tables import (
    format_value,
    to_html_table,
    to_markdown,
    with_ci,
    write_csv,
    write_markdown,
)

DF = pl.DataFrame(
    {
        "model": ["pop", "sas|rec"],
        "ndcg@10": [0.123456, 0.25],
        "n": [100, 100],
        "p_value": [None, 0.0000321],
    }
)


def test_format_value():
    assert format_value(0.123456) == "0.1235"
    assert format_value(0.123456, digits=2) == "0.12"
    assert format_value(3.21e-5) == "3.21e-05"
    assert format_value(0.0) == "0.0000"
    assert format_value(None) == "" and format_value(float("nan")) == "nan"
    assert format_value(12) == "12" and format_value(True) == "true"
    assert format_value([1, 0.5]) == "1, 0.5000"


def test_markdown_table_exact():
    md = to_markdown(DF, title="Results")
    assert md.splitlines() == [
        "## Results",
        "",
        "| model | ndcg@10 | n | p_value |",
        "|---|---:|---:|---:|",
        "| pop | 0.1235 | 100 |  |",
        "| sas\\|rec | 0.2500 | 100 | 3.21e-05 |",
    ]


def test_html_table_escapes_and_marks_numbers():
    h = to_html_table(pl.DataFrame({"name": ["<b>&"], "v": [0.5]}), caption="cap <x>")
    assert "<th>name</th>" in h and '<th class="num">v</th>' in h
    assert "<td>&lt;b&gt;&amp;</td>" in h and '<td class="num">0.5000</td>' in h
    assert "<caption>cap &lt;x&gt;</caption>" in h


def test_with_ci_column():
    df = pl.DataFrame({"mean": [0.5], "lo": [0.4], "hi": [0.61234]})
    assert with_ci(df)["mean_ci"].to_list() == ["0.5000 [0.4000, 0.6123]"]
    assert with_ci(df, name="ci", digits=2)["ci"].to_list() == ["0.50 [0.40, 0.61]"]
    with pytest.raises(ConfigError, match="low"):
        with_ci(df, lo="low")


def test_write_markdown_and_csv(tmp_path):
    md = write_markdown(DF, tmp_path / "sub" / "t.md")
    assert md.read_text() == to_markdown(DF)
    csv = write_csv(DF, tmp_path / "t.csv")
    back = pl.read_csv(csv)
    assert back["model"].to_list() == ["pop", "sas|rec"]
    assert back["ndcg@10"].to_list() == [0.123456, 0.25]  # full precision in CSV
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub", "t.csv"]  # no temp files left


def test_write_table_by_suffix(tmp_path):
    assert write_table(DF, tmp_path / "a.md").read_text().startswith("| model |")
    assert pl.read_csv(write_table(DF, tmp_path / "a.csv")).shape == DF.shape
    assert "<table" in write_table(DF, tmp_path / "a.html").read_text()
    assert pl.read_parquet(write_table(DF, tmp_path / "a.parquet")).equals(DF)
    with pytest.raises(ConfigError, match="unknown table format"):
        write_table(DF, tmp_path / "a.xlsx")
