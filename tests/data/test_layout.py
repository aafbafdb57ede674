"""The data layer's reading modules: one concern each, no import cycle, old import paths kept."""

from __future__ import annotations

import ast
from pathlib import Path

import warmrec.data

DATA = Path(warmrec.data.__file__).parent
# the modules below readers.py / datasets.py: they must never import those two
LOWER = ("text", "columns", "checks", "formats", "interactions", "parsers", "catalogue", "download")


def imports(module: str) -> list[tuple[str, bool]]:
    """``(imported module, at function level)`` for every warmrec import in ``data/module.py``."""
    tree = ast.parse((DATA / f"{module}.py").read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("warmrec"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            out += [(n, id(node) not in top) for n in [node.module, *names]]
        elif isinstance(node, ast.Import):
            out += [
                (a.name, id(node) not in top) for a in node.names if a.name.startswith("warmrec")
            ]
    return out


def test_lower_modules_never_import_readers_or_datasets():
    for module in LOWER:
        for name, _ in imports(module):
            assert name not in ("warmrec.data.readers", "warmrec.data.datasets"), (module, name)


def test_no_function_level_imports_between_readers_and_datasets():
    for module in ("readers", "datasets", *LOWER):
        nested = [name for name, inner in imports(module) if inner]
        assert nested == [], (module, nested)


def test_every_reading_module_has_a_docstring():
    for module in ("readers", "datasets", *LOWER):
        doc = ast.get_docstring(ast.parse((DATA / f"{module}.py").read_text()))
        assert doc and len(doc) > 40, module


def test_old_import_paths_still_work():
    from warmrec.data.datasets import download, list_datasets, load_dataset
    from warmrec.data.readers import Interactions, concat_logs, folder_files, load_interactions

    assert "movielens-100k" in list_datasets()
    assert callable(download) and callable(load_dataset) and callable(load_interactions)
    assert Interactions.__module__ == "warmrec.data.interactions"
    assert concat_logs.__module__ == folder_files.__module__ == "warmrec.data.formats"
