"""warmrec: session-based and sequential next-item recommendation for small, cold domains."""

__version__ = "0.1.0"

from warmrec.data import Batch, EvalSet, ItemVocab, SequenceData, SequenceDataset  # noqa: E402
from warmrec.data.datasets import download, list_datasets, load_dataset  # noqa: E402
from warmrec.data.readers import Interactions, load_interactions  # noqa: E402
from warmrec.data.sessionize import gap_analysis, sessionize  # noqa: E402
from warmrec.data.split import Split, split  # noqa: E402
from warmrec.evaluation import evaluate  # noqa: E402
from warmrec.registry import available_models, get_model  # noqa: E402

__all__ = [
    "__version__",
    "Batch",
    "EvalSet",
    "ItemVocab",
    "SequenceData",
    "SequenceDataset",
    "Interactions",
    "load_interactions",
    "load_dataset",
    "list_datasets",
    "download",
    "gap_analysis",
    "sessionize",
    "Split",
    "split",
    "evaluate",
    "get_model",
    "available_models",
]
