"""Data layer: canonical table, readers, sessionisation, filters, splits, vocabulary, sequences."""

from warmrec.data.dataset import Batch, EvalSet, SequenceDataset
from warmrec.data.sequences import SequenceData
from warmrec.data.vocab import ItemVocab

__all__ = ["Batch", "EvalSet", "SequenceDataset", "SequenceData", "ItemVocab"]
