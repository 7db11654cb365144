"""Batch inference over files: chunked, atomic outputs (:mod:`.run`), on a Ray Data actor pool
(:mod:`.ray_data`), and the ``toolkit batch`` command (:mod:`.cli`)."""
