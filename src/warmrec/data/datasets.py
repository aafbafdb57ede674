"""Named public datasets: the public names, re-exported from the modules that hold them.

- :mod:`warmrec.data.catalogue`: the registry (:class:`DatasetSpec`, :func:`list_datasets`,
  :func:`get_spec`, :func:`load_dataset`), URLs, checksums and licences;
- :mod:`warmrec.data.parsers`: one parser per raw format, and the table of the assumptions each makes;
- :mod:`warmrec.data.download`: :func:`download`, checksum verification, unzipping.
"""

from __future__ import annotations

from warmrec.data.catalogue import (
    AMAZON_CATEGORIES,
    DATASET_ALIASES,
    DATASETS,
    DatasetSpec,
    detect_dataset,
    get_spec,
    has_dataset,
    list_datasets,
    load_dataset,
)
from warmrec.data.download import download
from warmrec.data.parsers import (
    HAHOW_COURSE_LISTS,
    HAHOW_USER_LISTS,
    MARS_COLUMNS,
    MARS_EXTRAS,
    MARS_ITEM_COLUMNS,
    ML100K_GENRES,
    RETAIL_COLUMNS,
    RETAIL_REQUIRED,
    RETAIL_TIME_FORMATS,
    YOOCHOOSE_TIME,
    locate,
    parse_amazon_ratings,
    parse_diginetica,
    parse_hahow,
    parse_mars,
    parse_mars_explicit,
    parse_mars_merged,
    parse_movielens_1m,
    parse_movielens_100k,
    parse_movielens_csv,
    parse_online_retail,
    parse_retailrocket,
    parse_sasrec,
    parse_yoochoose_buys,
    parse_yoochoose_clicks,
    read_multichar,
)

__all__ = [
    "HAHOW_COURSE_LISTS",
    "HAHOW_USER_LISTS",
    "MARS_COLUMNS",
    "MARS_EXTRAS",
    "MARS_ITEM_COLUMNS",
    "RETAIL_COLUMNS",
    "RETAIL_REQUIRED",
    "RETAIL_TIME_FORMATS",
    "YOOCHOOSE_TIME",
    "AMAZON_CATEGORIES",
    "DATASETS",
    "DATASET_ALIASES",
    "ML100K_GENRES",
    "DatasetSpec",
    "detect_dataset",
    "download",
    "get_spec",
    "has_dataset",
    "list_datasets",
    "load_dataset",
    "locate",
    "parse_amazon_ratings",
    "parse_diginetica",
    "parse_hahow",
    "parse_mars",
    "parse_mars_explicit",
    "parse_mars_merged",
    "parse_movielens_1m",
    "parse_movielens_100k",
    "parse_movielens_csv",
    "parse_online_retail",
    "parse_retailrocket",
    "parse_sasrec",
    "parse_yoochoose_buys",
    "parse_yoochoose_clicks",
    "read_multichar",
]
