"""The catalogue of named public datasets: where to get them, their checksums, their parsers.

``load_dataset(name, path)`` always works on a local copy: ``path`` is the raw file itself or a
folder holding it (searched recursively, so an extracted archive works as it is). Downloads are
:mod:`warmrec.data.download`; the raw formats and each parser's assumptions are described in
:mod:`warmrec.data.parsers`.

Checksums: ``None`` means not known. MovieLens MD5s are the ones GroupLens publishes beside each
archive; the MovieLens SHA-256s and the Amazon 2014 SHA-256s are those recorded by other
projects that pin these files (OmniRec, TensorFlow Recommenders examples), not computed here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warmrec.data.interactions import Interactions
from warmrec.data.parsers import (
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
)
from warmrec.errors import ConfigError, DataError

_ML = "https://files.grouplens.org/datasets/movielens"
_ML_LICENSE = (
    "GroupLens research licence: research use only, no redistribution without "
    "permission, cite Harper & Konstan (2015), ACM TiiS 5(4)"
)
_AMAZON = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
_AMAZON_LICENSE = (
    "research use; cite McAuley et al. (SIGIR 2015) and He & McAuley (WWW 2016); no redistribution"
)


@dataclass(frozen=True)
class DatasetSpec:
    """A named public dataset: where it comes from and how its raw files are parsed.

    ``files`` are the names the parser looks for (the first is the interaction log);
    ``sha256`` and ``md5`` hold one digest per URL, ``None`` where unknown (empty: all unknown).
    """

    name: str
    description: str
    urls: tuple[str, ...]
    files: tuple[str, ...]
    sha256: tuple[str | None, ...]
    license: str
    parser: Callable[..., Interactions]
    md5: tuple[str | None, ...] = ()
    homepage: str = ""
    detect: tuple[str, ...] = ()
    """Glob patterns that all match files directly in a folder of this dataset: such a folder
    read without a format is read as this dataset (:func:`detect_dataset`); empty: never."""


# --------------------------------------------------------------------------- registry

DATASETS: dict[str, DatasetSpec] = {}
DATASET_ALIASES = {
    "ml-100k": "movielens-100k",
    "ml-1m": "movielens-1m",
    "ml-20m": "movielens-20m",
    "ml-25m": "movielens-25m",
    "rsc15": "yoochoose-clicks",
    "yoochoose": "yoochoose-clicks",
    "sasrec-txt": "sasrec",
    "online-retail-ii": "online-retail",
}


def _register(spec: DatasetSpec) -> None:
    DATASETS[spec.name] = spec


def _movielens(
    name: str,
    size: str,
    files: tuple[str, ...],
    parser: Callable[..., Interactions],
    sha256: str | None,
    md5: str | None,
) -> None:
    _register(
        DatasetSpec(
            name=name,
            description=f"MovieLens {size.upper()} movie ratings (GroupLens)",
            urls=(f"{_ML}/ml-{size}.zip",),
            files=files,
            sha256=(sha256,),
            md5=(md5,),
            license=_ML_LICENSE,
            parser=parser,
            homepage=f"https://grouplens.org/datasets/movielens/{size}/",
        )
    )


_movielens(
    "movielens-100k",
    "100k",
    ("u.data", "u.item", "u.user"),
    parse_movielens_100k,
    "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
    "0e33842e24a9c977be4e0107933c0723",
)
_movielens(
    "movielens-1m",
    "1m",
    ("ratings.dat", "movies.dat", "users.dat"),
    parse_movielens_1m,
    "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
    "c4d9eecfca2ab87c1945afe126590906",
)
_movielens(
    "movielens-20m",
    "20m",
    ("ratings.csv", "movies.csv"),
    parse_movielens_csv,
    "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
    "cd245b17a1ae2cc31bb14903e1204af3",
)
_movielens(
    "movielens-25m",
    "25m",
    ("ratings.csv", "movies.csv"),
    parse_movielens_csv,
    "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
    "6b51fb2759a8657d3bfcbfc42b592ada",
)

_YC_URL = "https://s3-eu-west-1.amazonaws.com/yc-rdata/yoochoose-data.7z"
_YC_LICENSE = (
    "RecSys Challenge 2015 data by YOOCHOOSE: research use; the archive is .7z: "
    "extract it with 7z before load_dataset"
)
_register(
    DatasetSpec(
        "yoochoose-clicks",
        "RecSys Challenge 2015 click sessions (33M clicks)",
        (_YC_URL,),
        ("yoochoose-clicks.dat",),
        (None,),
        _YC_LICENSE,
        parse_yoochoose_clicks,
        homepage="https://recsys.acm.org/recsys15/challenge/",
    )
)
_register(
    DatasetSpec(
        "yoochoose-buys",
        "RecSys Challenge 2015 purchases",
        (_YC_URL,),
        ("yoochoose-buys.dat",),
        (None,),
        _YC_LICENSE,
        parse_yoochoose_buys,
        homepage="https://recsys.acm.org/recsys15/challenge/",
    )
)

_register(
    DatasetSpec(
        "amazon-ratings",
        "Amazon 2014 ratings-only CSV of any category (local file)",
        (),
        ("ratings_*.csv",),
        (),
        _AMAZON_LICENSE,
        parse_amazon_ratings,
        homepage="https://jmcauley.ucsd.edu/data/amazon/",
    )
)
AMAZON_CATEGORIES: dict[str, tuple[str, str]] = {
    "books": ("Books", "87d923ddac2aacf40c1d0e0e056dbf4bf69c9c7d41852c6b434e781e759c0707"),
    "electronics": (
        "Electronics",
        "a8e5b66b7f5371d1659ff88ae4acec91604125d6850f4f7e1c418120f2f9c16c",
    ),
    "movies-tv": (
        "Movies_and_TV",
        "05fd3bbb387bca99f16b7a64a26abb736429da416e3cc0cc7423483e9ec4c265",
    ),
    "cds-vinyl": (
        "CDs_and_Vinyl",
        "74b503152bc8f92f389a1f841ec00361f903772e5ebb2b664ce678c023dbbceb",
    ),
    "kindle": ("Kindle_Store", "616edbb9ee9b5e1f0212e0a75e226df3abb66548d833df3ea8a3c53942541200"),
    "toys-games": (
        "Toys_and_Games",
        "e28a342ca89a79036a9a840c0385a3a3342a08d3d3450ea3eaf3d544cd65d3af",
    ),
    "video-games": (
        "Video_Games",
        "f0ca171050c2e0f208d47f5267992476b21ab68a01439c21c8be1a4432982cfa",
    ),
    "beauty": ("Beauty", "17d5232b90444beecfe758ce1446e5300230491f3a88ac802992ca95fc4c150f"),
    "digital-music": (
        "Digital_Music",
        "fdf164882460ff26fa2521e01f6a9cf8005ad252ddce308dd03519064f02d80e",
    ),
    "musical-instruments": (
        "Musical_Instruments",
        "c541cf84fcc75d98cc595ebd856b0ebd351efce134671171c2de0d54b9573b9c",
    ),
    "office-products": (
        "Office_Products",
        "4cd5f3d454e744b7017ad5918e995ec2893b577c2109dbaa6d65b375092f9630",
    ),
    "grocery": (
        "Grocery_and_Gourmet_Food",
        "ae9b32803a9f0ddf98222e00871e7a8ff7709e792f2ba8048131ca214617e33c",
    ),
}
for _key, (_cat, _sha) in AMAZON_CATEGORIES.items():
    _register(
        DatasetSpec(
            f"amazon-{_key}",
            f"Amazon 2014 ratings, category {_cat.replace('_', ' ')}",
            (f"{_AMAZON}/ratings_{_cat}.csv",),
            (f"ratings_{_cat}.csv",),
            (_sha,),
            _AMAZON_LICENSE,
            parse_amazon_ratings,
            homepage="https://jmcauley.ucsd.edu/data/amazon/",
        )
    )

_MARS_HOME = "https://doi.org/10.7910/DVN/BMY3UD"
_MARS_LICENSE = "CC0 1.0 (Hafsa et al., Data in Brief 47, 108942, 2023)"
_MARS_FILES = ("implicit_ratings_en.csv", "explicit_ratings_en.csv", "items_en.csv", "users_en.csv")
_register(
    DatasetSpec(
        "mars",
        "MARS MOOC (Office 365 training videos): page views, with video text and tags, learner "
        "jobs and watch-time ratings",
        (),
        _MARS_FILES,
        (),
        _MARS_LICENSE,
        parse_mars,
        homepage=_MARS_HOME,
        detect=("implicit_ratings*.csv", "items*.csv"),
    )
)
_register(
    DatasetSpec(
        "mars-merged",
        "MARS MOOC page views and watch events merged into one log (the outside anchor's)",
        (),
        _MARS_FILES,
        (),
        _MARS_LICENSE,
        parse_mars_merged,
        homepage=_MARS_HOME,
    )
)
_register(
    DatasetSpec(
        "mars-explicit",
        "MARS MOOC watch-time ratings (rating 1-10, watch percentage) as the log",
        (),
        ("explicit_ratings_en.csv", "items_en.csv", "users_en.csv"),
        (),
        _MARS_LICENSE,
        parse_mars_explicit,
        homepage=_MARS_HOME,
    )
)
_register(
    DatasetSpec(
        "hahow",
        "Hahow online-course purchases with user interests and course groups "
        "(NTU ADL 2022 final project data)",
        (),
        ("train.csv", "courses.csv", "users.csv"),
        (),
        "course-competition data: research and teaching use, see the competition's terms",
        parse_hahow,
    )
)
_register(
    DatasetSpec(
        "online-retail",
        "UCI Online Retail: 2010-2011 UK online shop invoices (session = invoice)",
        ("https://archive.ics.uci.edu/static/public/352/online+retail.zip",),
        ("Online Retail.xlsx",),
        (None,),
        "CC BY 4.0 (UCI ML Repository, Chen et al. 2012)",
        parse_online_retail,
        homepage="https://archive.ics.uci.edu/dataset/352/online+retail",
    )
)
_register(
    DatasetSpec(
        "diginetica",
        "CIKM Cup 2016 (DIGINETICA) product-view sessions",
        (),
        ("train-item-views.csv",),
        (),
        "CIKM Cup 2016 terms: research use; download by hand",
        parse_diginetica,
        homepage="https://competitions.codalab.org/competitions/11161",
    )
)
_register(
    DatasetSpec(
        "retailrocket",
        "RetailRocket e-commerce events (view, addtocart, transaction)",
        (),
        ("events.csv",),
        (),
        "CC BY-NC-SA 4.0; download by hand from Kaggle",
        parse_retailrocket,
        homepage="https://www.kaggle.com/datasets/retailrocket/ecommerce-dataset",
    )
)
_register(
    DatasetSpec(
        "sasrec",
        "SASRec plain 'user item' lines, file order = time order (local file)",
        (),
        ("*.txt",),
        (),
        "as the data it was made from",
        parse_sasrec,
        homepage="https://github.com/kang205/SASRec",
    )
)
_register(
    DatasetSpec(
        "sasrec-ml-1m",
        "MovieLens-1M as preprocessed by the SASRec authors ('user item' lines)",
        ("https://raw.githubusercontent.com/kang205/SASRec/master/data/ml-1m.txt",),
        ("ml-1m.txt",),
        (None,),
        _ML_LICENSE,
        parse_sasrec,
        homepage="https://github.com/kang205/SASRec",
    )
)


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return sorted(DATASETS)


def has_dataset(name: str) -> bool:
    key = name.lower()
    return key in DATASETS or key in DATASET_ALIASES


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name`` (aliases such as ``ml-1m`` accepted)."""
    key = name.lower()
    key = DATASET_ALIASES.get(key, key)
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    return DATASETS[key]


def detect_dataset(folder: str | Path) -> str | None:
    """The dataset whose :attr:`DatasetSpec.detect` patterns all match files in ``folder``
    (not recursive), or ``None`` (also for a file)."""
    p = Path(folder)
    if not p.is_dir():
        return None
    for name in list_datasets():
        patterns = DATASETS[name].detect
        if patterns and all(any(f.is_file() for f in p.glob(g)) for g in patterns):
            return name
    return None


def load_dataset(name: str, path: str | Path, **options: Any) -> Interactions:
    """Parse a local copy of dataset ``name``; ``options`` go to its parser (see the table)."""
    spec = get_spec(name)
    allowed = [p for p in inspect.signature(spec.parser).parameters if p != "path"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"dataset {spec.name!r} takes no option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(allowed) or 'none'}"
        )
    p = Path(path)
    if not p.exists():
        raise DataError(
            "no such file or folder",
            path=p,
            expected=f"the {spec.name} files ({', '.join(spec.files)}) or a folder holding them",
            found="nothing",
        )
    return spec.parser(p, **options)
