"""Built-in models; importing this package registers them."""

from warmrec.models.base import Recommender
from warmrec.models.popularity import Pop, SessionPop

__all__ = ["Recommender", "Pop", "SessionPop"]
