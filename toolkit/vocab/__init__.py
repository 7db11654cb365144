"""Vocabulary extension of a model folder: scanning corpora for missing characters and terms
(:mod:`.scan`), adding them with initial embeddings (:mod:`.extend`) and the command (:mod:`.cli`)."""
