"""Self-contained HTML and Markdown reports from blocks."""

from __future__ import annotations

import base64
import re

import numpy as np
import polars as pl
import pytest

from warmrec.errors import ConfigError, DataError
from warmrec.reports import Heading, Image, Table, Text, render_html, write_report
from warmrec.reports.plots import plot_popularity

DF = pl.DataFrame({"model": ["pop", "sasrec"], "ndcg@10": [0.1, 0.3]})


@pytest.fixture
def png(tmp_path):
    return plot_popularity(np.arange(1, 50), tmp_path / "img" / "pop.png")


def test_html_report_is_self_contained(tmp_path, png):
    blocks = [
        Heading("Results"),
        Text("ml-100k <loo>\n\nsecond"),
        Table(DF, caption="NDCG"),
        Image(png, alt="popularity", caption="Figure 1"),
    ]
    out = write_report(tmp_path / "r.html", "Bench & more", blocks)
    h = out.read_text()
    assert h.startswith("<!DOCTYPE html>") and "<title>Bench &amp; more</title>" in h
    assert "<h2>Results</h2>" in h and "<p>ml-100k &lt;loo&gt;</p>" in h and "<p>second</p>" in h
    assert '<table class="wr-table"><caption>NDCG</caption>' in h
    assert "<td>sasrec</td>" in h and '<td class="num">0.3000</td>' in h
    m = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', h)
    assert m and base64.b64decode(m.group(1)) == png.read_bytes()
    assert "<figcaption>Figure 1</figcaption>" in h
    assert "http" not in h and 'src="/' not in h  # nothing external


def test_markdown_report_links_and_saves_images(tmp_path, png):
    data = png.read_bytes()
    blocks = [Text("intro"), Table(DF), Image(png, alt="pop"), Image(data, caption="again")]
    out = write_report(tmp_path / "r.md", "Bench", blocks)
    md = out.read_text()
    assert md.startswith("# Bench\n\nintro\n")
    assert "| model | ndcg@10 |\n|---|---:|\n| pop | 0.1000 |\n| sasrec | 0.3000 |" in md
    assert "![pop](img/pop.png)" in md
    assert "![again](r_files/fig1.png)" in md and "*again*" in md
    assert (tmp_path / "r_files" / "fig1.png").read_bytes() == data


def test_bad_blocks_raise(tmp_path):
    with pytest.raises(ConfigError, match="block 0"):
        render_html("t", [DF])
    with pytest.raises(DataError, match="not a PNG"):
        render_html("t", [Image(b"GIF89a...")])
    with pytest.raises(DataError, match="image not found"):
        render_html("t", [Image(tmp_path / "missing.png")])
    with pytest.raises(ConfigError, match="unknown report format"):
        write_report(tmp_path / "r.pdf", "t", [])
    assert list(tmp_path.iterdir()) == []


def test_study_report_writes_both_formats_with_setting_table_and_plot(tmp_path, png):
    from warmrec.reports.report import write_study_report

    paths = write_study_report(
        tmp_path, "Curve", {"protocol": "loo", "seeds": 3}, "Ratios vs scratch.", DF, png,
        "ndcg@10 vs fraction; loo",
    )  # fmt: skip
    assert set(paths) == {"report_md", "report_html"}
    md = paths["report_md"].read_text()
    # one setting per line: plain lines ran together into one paragraph in both formats
    assert md.startswith("# Curve\n") and "## Setting\n\n- protocol: loo\n- seeds: 3\n\n" in md
    assert md.index("Ratios vs scratch.") < md.index("| sasrec | 0.3000 |")
    assert "![ndcg@10 vs fraction](img/pop.png)" in md and "*ndcg@10 vs fraction; loo*" in md
    h = paths["report_html"].read_text()
    assert "<title>Curve</title>" in h and "<figcaption>ndcg@10 vs fraction; loo</figcaption>" in h
    assert "<li>protocol: loo</li><li>seeds: 3</li>" in h
