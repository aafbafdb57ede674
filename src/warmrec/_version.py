"""The package version: one place that imports nothing, read by the artifact and split writers
(which must not import the package root) and by packaging (``pyproject.toml``)."""

__version__ = "0.1.0"
