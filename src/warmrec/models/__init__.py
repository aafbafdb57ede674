"""Built-in models; importing this package registers them."""

from warmrec.models.base import Recommender
from warmrec.models.bert4rec import BERT4Rec
from warmrec.models.bst import BST
from warmrec.models.gru4rec import GRU4Rec
from warmrec.models.hybrid import Hybrid
from warmrec.models.knn import SKNN, VSKNN, ItemKNN  # noqa: F401
from warmrec.models.narm import NARM
from warmrec.models.neural import NeuralRecommender
from warmrec.models.popularity import Pop, SessionPop
from warmrec.models.rules import AssociationRules, Markov, SequentialRules  # noqa: F401
from warmrec.models.sasrec import SASRec
from warmrec.models.ssept import SSEPT

try:  # Item2Vec fits with gensim (extra warmrec[item2vec]); warmrec imports without it
    from warmrec.models.item2vec import Item2Vec  # noqa: F401
except ImportError:  # pragma: no cover
    pass

__all__ = [
    "Recommender",
    "Pop",
    "SessionPop",
    "NeuralRecommender",
    "SASRec",
    "GRU4Rec",
    "Hybrid",
    "NARM",
    "SSEPT",
    "BERT4Rec",
    "BST",
]
