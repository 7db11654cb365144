"""Corpus readers, the dataset catalogue and validation; the in-memory forms are in ``examples``."""
