"""Task heads. Each is built from ``(hidden_size, labels, **options)``; each head kind (:mod:`toolkit.kinds`) names its class."""
from .base import Head
from .classifier import ClassifierHead
from .matcher import MatcherHead
from .tagger import TaggerHead

__all__ = ["Head", "TaggerHead", "ClassifierHead", "MatcherHead"]
