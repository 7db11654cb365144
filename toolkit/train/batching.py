"""Training batches: length-bucketed (sorted within random pools, so padding stays small), or cut
by a token budget (``max_tokens``) for long texts; :class:`TaskStream` serves one task's batches
endlessly and can be checkpointed and resumed exactly.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .features import Feature

if TYPE_CHECKING:
    from .recipe import TaskData


def length_batches(features: list[Feature], batch_size: int, rng: np.random.Generator, bucket: int = 50, max_tokens: int | None = None) -> list[list[int]]:
    """Shuffled batches of similar lengths: shuffle, sort inside pools of ``bucket`` batches
    (``bucket * batch_size`` sequences; ``bucket=0``: no sorting), cut into batches, shuffle the batches.

    ``max_tokens``: a batch also holds at most ``max_tokens`` padded tokens (its longest sequence
    times its size), so batches of long texts hold fewer sequences; never more than ``batch_size``,
    and a sequence longer than the budget forms a batch of its own. Unset: batches of
    ``batch_size`` (the draws of the random generator are the same as before the option existed).

    >>> from types import SimpleNamespace as F
    >>> feats = [F(ids=[0] * n) for n in (3, 9, 4, 8)]
    >>> sorted(sorted(map(int, b)) for b in length_batches(feats, 4, np.random.default_rng(0), max_tokens=18))
    [[0, 2], [1, 3]]
    """
    order = rng.permutation(len(features))
    batches = []
    chunk = batch_size * bucket if bucket > 0 else len(order) or 1
    for i in range(0, len(order), chunk):
        part = order[i : i + chunk]
        if bucket > 0:
            part = sorted(part, key=lambda j: len(features[j].ids))
        if max_tokens is None:
            batches += [list(part[k : k + batch_size]) for k in range(0, len(part), batch_size)]
        else:
            batches += _token_batches(features, part, batch_size, max_tokens)
    rng.shuffle(batches)
    return batches


def _token_batches(features: list[Feature], part, batch_size: int, max_tokens: int) -> list[list[int]]:
    """``part`` (in its order) cut into batches of at most ``batch_size`` sequences and ``max_tokens`` padded tokens."""
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = 0
    for j in part:
        n = len(features[j].ids)
        if batch and (len(batch) == batch_size or (len(batch) + 1) * max(longest, n) > max_tokens):
            batches.append(batch)
            batch, longest = [], 0
        batch.append(j)
        longest = max(longest, n)
    if batch:
        batches.append(batch)
    return batches


class TaskStream:
    """Endless length-bucketed batches of one task's training features (see :func:`length_batches`)."""

    def __init__(self, data: TaskData, batch_size: int, rng: np.random.Generator, max_tokens: int | None = None, pool: int = 50) -> None:
        self.data, self.batch_size, self.rng = data, batch_size, rng
        self.max_tokens, self.pool = max_tokens, pool
        self.queue: list[list[int]] = []
        self.epoch = 0

    def state(self) -> dict[str, Any]:
        """JSON-able position in the data (for exact resume)."""
        return {"queue": [[int(i) for i in b] for b in self.queue], "epoch": self.epoch}

    def restore(self, state: dict[str, Any]) -> None:
        self.queue, self.epoch = [list(b) for b in state["queue"]], int(state["epoch"])

    def next(self) -> list[Feature]:
        if not self.queue:
            self.queue = length_batches(self.data.train, self.batch_size, self.rng, self.pool, self.max_tokens)
            self.epoch += 1
        return [self.data.train[i] for i in self.queue.pop()]

    def batches_per_epoch(self) -> int:
        """Batches in one pass over the data (with a token budget: counted on a fixed shuffle, not this stream's)."""
        if self.max_tokens is None:
            return math.ceil(len(self.data.train) / self.batch_size)
        return len(length_batches(self.data.train, self.batch_size, np.random.default_rng(0), self.pool, self.max_tokens))
