"""Evaluation on the ORIGINAL texts: normalisation and tokenisation errors count.

NER: strict span micro P/R/F1 overall and per type against the original (possibly nested) gold.
Classification: accuracy and macro-F1. Pairs: accuracy, macro-F1 and micro-F1.

Example:
    >>> scores = evaluate("path/to/model", "cmeee:dev", task="ner_medical")  # doctest: +SKIP
    >>> sorted(scores)  # doctest: +SKIP
    ['dataset', 'main', 'metric', 'micro', 'model', 'n', 'per_type', 'seconds', 'task']
"""
from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from .metrics import classification_scores, span_prf
from .data.validation import example_key
from .pipeline import build_pipeline

logger = logging.getLogger(__name__)

MAIN = {"tagger": "micro_f1", "classifier": "accuracy", "matcher": "macro_f1"}


def evaluate_task(model, task: str, examples: Sequence, batch_size: int = 64, progress: bool = False, device: str = "cpu") -> dict[str, Any]:
    """Scores of ``model``'s head ``task`` on ``examples``; ``"main"`` is the task's headline metric."""
    kind = model.heads[task].kind
    pipe = build_pipeline(model, [task], device=device, batch_size=batch_size, progress=progress)
    start = time.perf_counter()
    if kind == "tagger":
        preds = pipe([ex.text for ex in examples])
        scores = span_prf([[(e.start, e.end, e.label) for e in p] for p in preds], [[s.as_tuple() for s in ex.spans] for ex in examples])
        main = scores["micro"]["f1"]
    else:
        preds = pipe([ex.text for ex in examples] if kind == "classifier" else [(ex.text_a, ex.text_b) for ex in examples])
        scores = classification_scores([p["label"] for p in preds], [ex.label for ex in examples])
        main = scores[MAIN[kind]]
    result = {"metric": MAIN[kind], "main": main, **scores}
    result["n"] = len(examples)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def evaluate(
    model_or_path,
    dataset: str | dict,
    task: str | None = None,
    data_root: str | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    progress: bool = True,
    exclude: str | dict | None = None,
) -> dict[str, Any]:
    """Evaluate a model folder / registered name (or a loaded model) on a catalogue split
    (``"cmeee:dev"``) or a file (``{"path": ..., "format": ...}``, see :func:`toolkit.recipe.load_examples`).

    ``exclude`` names another split (e.g. ``"chnsenticorp:train"``): examples whose text occurs
    there are left out, for a score free of train/test leakage.
    """
    from .model import MultiTaskModel
    from .recipe import load_examples
    from .registry import resolve

    if isinstance(model_or_path, MultiTaskModel):
        model, selected = model_or_path, None
    else:
        path, selected = resolve(model_or_path)
        model = MultiTaskModel.load(path, tasks=[task] if task else selected)
    task = task or (selected[0] if selected else None)
    if task is None:
        if len(model.tasks) != 1:
            raise ValueError(f"the model has several tasks {model.tasks}; say which one to evaluate (task=...)")
        task = model.tasks[0]
    examples = load_examples(dataset, data_root, limit)
    extra: dict[str, Any] = {}
    if exclude:
        seen = {example_key(ex) for ex in load_examples(exclude, data_root)}
        kept = [ex for ex in examples if example_key(ex) not in seen]
        extra = {"excluded": len(examples) - len(kept), "exclude": exclude}
        examples = kept
    return {"model": model.name, "task": task, "dataset": dataset, **extra, **evaluate_task(model, task, examples, batch_size, progress)}

