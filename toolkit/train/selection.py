"""Model selection during training: score the dev data (after the kinds choose their decoding
options on it, e.g. a span head's threshold), and save the best model folder.

The loop (:mod:`toolkit.train.loop`) calls :func:`evaluate_dev` at each evaluation and
:func:`save_best` when the mean dev score improves; :func:`save_best` is the only place training
writes the model folder.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

from .. import kinds
from ..model.multitask import MultiTaskModel
from ..runtime.evaluation import evaluate_task
from .recipe import Recipe, TaskData, _ref
from .state import EMA

logger = logging.getLogger(__name__)


def evaluate_dev(model: MultiTaskModel, data: dict[str, TaskData], ema: EMA | None, batch_size: int, device: str = "cpu") -> dict[str, dict]:
    model.eval()
    with ema.applied(model) if ema is not None else nullcontext():
        for t, d in data.items():
            if d.dev:
                tune_decoding(model, t, d.dev, batch_size, device)
        return {t: evaluate_task(model, t, d.dev, batch_size=batch_size, device=device, confidence=True) for t, d in data.items() if d.dev}


def tune_decoding(model: MultiTaskModel, task: str, dev: list, batch_size: int, device: str) -> None:
    """Let the head's kind choose its decoding options on dev (e.g. a span head's threshold); they
    go into the head's options, so the saved manifest carries them."""
    from ..runtime.pipeline import build_pipeline

    head = model.heads[task]
    kind = kinds.get(head.kind)

    def outputs_at(overrides: dict) -> list:
        saved = dict(head.options)
        head.options.update(overrides)
        try:
            pipe = build_pipeline(model, [task], device=device, batch_size=batch_size, keyed=True)
            return [r[task] for r in pipe.run(kind.pipeline_inputs(dev))]
        finally:
            head.options.clear()
            head.options.update(saved)

    chosen = kind.tune(outputs_at, dev)
    if chosen:
        head.options.update(chosen)
        logger.info("task %s: decoding options chosen on dev: %s", task, chosen)


def save_best(model: MultiTaskModel, ema: EMA | None, scores: dict, path: Path, recipe: Recipe, data: dict[str, TaskData]) -> None:
    """The only place training writes the model folder (through ``model.save``)."""
    model.metrics = {**model.metrics, **{t: {dev_name(recipe.tasks[t]): s} for t, s in scores.items()}}
    with ema.applied(model) if ema is not None else nullcontext():
        model.save(path, card=recipe.card(scores, data))


def dev_name(task) -> str:
    return f"holdout:{task.holdout} of {_ref(task.train)}" if task.holdout else _ref(task.dev)
