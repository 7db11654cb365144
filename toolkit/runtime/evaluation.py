"""Evaluation on the ORIGINAL texts: normalisation and tokenisation errors count.

NER: strict span micro P/R/F1 overall and per type against the original (possibly nested) gold.
Classification: accuracy and macro-F1. Pairs: accuracy, macro-F1 and micro-F1.

Any runtime: :func:`evaluate` scores a model folder on PyTorch (``runtime="torch"``) or on ONNX
Runtime (``runtime="onnx"``, optionally ``quantize="int8"``); both go through the same pipeline
call and the same scorer (:func:`evaluate_pipeline`). :func:`compare_runtimes` runs several
runtimes on the same examples and counts, per runtime, the examples whose prediction (entity set or
label) differs from the first runtime's: the check behind "fp32 ONNX predicts exactly what PyTorch
predicts" and "int8 loses at most x points".

Example:
    >>> scores = evaluate("path/to/model", "cmeee:dev", task="ner_medical")  # doctest: +SKIP
    >>> sorted(scores)  # doctest: +SKIP
    ['dataset', 'main', 'metric', 'micro', 'model', 'n', 'per_type', 'runtime', 'seconds', 'task']
    >>> both = compare_runtimes("path/to/model", "cmeee:dev", task="ner_medical", runtimes=["torch", "onnx"])  # doctest: +SKIP
    >>> both["agreement"]["onnx"], both["disagreements"]["onnx"]  # doctest: +SKIP
    (1.0, 0)
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

from .. import kinds
from ..data.validation import example_key
from ..errors import InputError
from ..kinds.metrics import calibration
from .specs import RUNTIMES, agreement, runtime_spec  # noqa: F401  (re-exported: toolkit.runtime.evaluation.RUNTIMES)

logger = logging.getLogger(__name__)

def predict(pipe, task: str, examples: Sequence) -> list:
    """Predictions of a pipeline's head ``task`` (either runtime) on ``examples``, in comparable
    form (:meth:`toolkit.kinds.base.HeadKind.comparable`: sorted ``(start, end, label)`` per text for
    entities, the label for a classifier or matcher)."""
    kind = pipe.kinds[task]
    return kind.comparable(_outputs(pipe, task, examples))


def _outputs(pipe, task: str, examples: Sequence) -> list:
    """The pipeline's results of head ``task`` on ``examples`` (entities per text, labels ...)."""
    if task not in pipe.kinds:
        raise ValueError(f"the pipeline has no task {task!r}; its tasks: {list(pipe.kinds)}")
    inputs = pipe.kinds[task].pipeline_inputs(examples)
    if not inputs:
        return []
    sub = getattr(pipe, "pair" if pipe.kinds[task].input == "pair" else "text", pipe)  # a MultiTaskPipeline's part
    return [r[task] for r in sub.run(inputs)]


def confidence_report(kind, outputs: list, examples: Sequence, bins: int = 10) -> dict[str, Any]:
    """Per-class P/R/F1 and :func:`~toolkit.kinds.metrics.calibration` of the confidences of raw pipeline
    ``outputs`` of a head of ``kind`` (a :class:`~toolkit.kinds.base.HeadKind` or its name): an
    entity's ``score`` (correct = the span is in gold), a label's ``score`` (correct = the label is gold's).

    Example:
        >>> rep = confidence_report("classifier", [{"label": "pos", "score": 0.9}], [Example("好", label="pos")])  # doctest: +SKIP
        >>> rep["calibration"]["hist_correct"][9], rep["per_class"]["pos"]["f1"]  # doctest: +SKIP
        (1, 1.0)
    """
    kind = kinds.get(kind) if isinstance(kind, str) else kind
    per_class, pairs = kind.confidence(outputs, examples)
    return {"per_class": per_class, "calibration": calibration([c for c, _ in pairs], [ok for _, ok in pairs], bins)}


def score(kind, predictions: Sequence, examples: Sequence) -> dict[str, Any]:
    """Scores of :func:`predict`'s output against the gold of ``examples``; ``"main"`` is the
    headline metric of the head kind (``kind.metric``)."""
    kind = kinds.get(kind) if isinstance(kind, str) else kind
    predicted = set(kind.labels_in(predictions))
    gold = set(kind.labels_in(kind.gold(examples)))
    if predicted and gold and not predicted & gold:
        logger.warning("the model predicts %s but the gold labels are %s: none in common, so the score is 0; do the label names match?", sorted(predicted), sorted(gold))
    return kind.score(predictions, examples)


def evaluate_pipeline(pipe, task: str, examples: Sequence, keep_predictions: bool = False, confidence: bool = False) -> dict[str, Any]:
    """Run a one-task pipeline (PyTorch or ONNX) over ``examples`` and score it: the one home of the
    scoring logic. ``seconds`` is the prediction time; ``keep_predictions`` adds ``"predictions"``,
    ``confidence`` adds ``"confidence"`` (:func:`confidence_report`); the scores are the same."""
    kind = pipe.kinds[task]
    start = time.perf_counter()
    outputs = _outputs(pipe, task, examples)
    predictions = kind.comparable(outputs)
    seconds = round(time.perf_counter() - start, 1)
    result = {**score(kind, predictions, examples), "n": len(examples), "seconds": seconds}
    if keep_predictions:
        result["predictions"] = predictions
    if confidence:
        result["confidence"] = confidence_report(kind, outputs, examples)
    return result


def evaluate_task(model, task: str, examples: Sequence, batch_size: int = 64, progress: bool = False, device: str = "cpu", confidence: bool = False) -> dict[str, Any]:
    """Scores of a loaded :class:`~toolkit.model.multitask.MultiTaskModel`'s head ``task`` on ``examples``
    (PyTorch); ``confidence=True`` adds per-class P/R/F1 and calibration (:func:`confidence_report`)."""
    from .pipeline import build_pipeline

    return evaluate_pipeline(build_pipeline(model, [task], device=device, batch_size=batch_size, progress=progress), task, examples, confidence=confidence)


def load_split(dataset: str | dict, data_root: str | None = None, limit: int | None = None, exclude: str | dict | None = None) -> tuple[list, dict[str, Any]]:
    """``(examples, extra)``: the first ``limit`` examples of ``dataset``, less those whose text (or
    pair of texts) occurs in ``exclude``; ``extra`` is ``{"excluded": count, "exclude": exclude}``
    when ``exclude`` is given, else ``{}``.

    Example:
        >>> examples, extra = load_split("chnsenticorp:test", exclude="chnsenticorp:train")  # doctest: +SKIP
        >>> extra["excluded"]  # doctest: +SKIP
        331
    """
    from ..data.refs import load_examples

    examples = load_examples(dataset, data_root, limit)
    if not exclude:
        return examples, {}
    seen = {example_key(ex) for ex in load_examples(exclude, data_root)}
    kept = [ex for ex in examples if example_key(ex) not in seen]
    return kept, {"excluded": len(examples) - len(kept), "exclude": exclude}


def _pipeline(model_or_path, task: str | None, spec: str, batch_size: int | None, progress: bool, threads: int | None = None) -> tuple[Any, str, str]:
    """``(one-task pipeline, model name, task)`` for a loaded model, a model folder or a registered name
    (``spec``: a key of :data:`RUNTIMES`, or ``"auto"``: the pipeline's ``runtime_choice`` says which ran)."""
    options = {"runtime": "auto"} if spec == "auto" else RUNTIMES[spec]
    if hasattr(model_or_path, "heads") and hasattr(model_or_path, "encoder"):  # a live MultiTaskModel (no torch import otherwise)
        from .pipeline import build_pipeline

        if spec != "torch":
            raise ValueError(f"runtime {spec!r} needs the model's folder (or registered name), not a loaded MultiTaskModel")
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        task = _pick_task(task, None, model_or_path.tasks)
        return build_pipeline(model_or_path, [task], batch_size=batch_size, progress=progress), model_or_path.name, task
    from .. import load

    path, manifest, task = _model_task(model_or_path, task)
    pipe = load(str(path), tasks=[task], batch_size=batch_size, progress=progress, threads=threads, **options)  # type: ignore[arg-type]
    return pipe, manifest.name, task


def _model_task(model: str, task: str | None):
    """``(folder, manifest, task)`` of a model folder or registered name and the task to score."""
    from ..model.manifest import Manifest
    from ..registry import resolve

    path, selected = resolve(model)
    manifest = Manifest.read(path)
    return path, manifest, manifest.select([_pick_task(task, selected, list(manifest.tasks))])[0]


def data_reference(model, dataset: str, task: str | None = None, format: str | None = None,
                   options: dict[str, Any] | None = None) -> str | dict[str, Any]:
    """What :func:`evaluate` takes for ``dataset``: a catalogue id stays as it is; a file (or any
    ``dataset`` with ``format``) becomes ``{"path", "format", **options}``, the format guessed from
    the file's extension and the head kind of ``task`` when not given.

    Example:
        >>> data_reference("ner-medical", "cmeee:dev")
        'cmeee:dev'
        >>> data_reference("ner-medical", "my_test.bio", format="columns", options={"scheme": "BIO"})
        {'path': 'my_test.bio', 'format': 'columns', 'scheme': 'BIO'}
    """
    from pathlib import Path

    if not format and not Path(dataset).is_file():
        if options:
            raise InputError(f"reader options {sorted(options)} apply to a file, and {dataset!r} is not one: give the path of your file")
        return dataset
    if not format:
        from ..data.readers import guess_format

        if isinstance(model, str):
            _, manifest, task = _model_task(model, task)
            kind = manifest.tasks[task].kind
        else:
            kind = model.heads[_pick_task(task, None, model.tasks)].kind
        format = guess_format(kinds.get(kind).data, dataset)  # type: ignore[arg-type]
        logger.info("reading %s as %s", dataset, format)
    return {"path": str(dataset), "format": format, **(options or {})}


def _pick_task(task: str | None, selected: list[str] | None, tasks: list[str]) -> str:
    task = task or (selected[0] if selected else None)
    if task is None:
        if len(tasks) != 1:
            raise ValueError(f"the model has several tasks {tasks}; say which one to evaluate (task=...)")
        task = tasks[0]
    return task


def evaluate(
    model_or_path,
    dataset: str | dict,
    task: str | None = None,
    data_root: str | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    exclude: str | dict | None = None,
    runtime: Literal["torch", "onnx", "auto"] = "torch",
    quantize: Literal["int8"] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Evaluate a model folder / registered name (or a loaded model) on a catalogue split
    (``"cmeee:dev"``) or a file (``{"path": ..., "format": ...}``, see :func:`toolkit.train.recipe.load_examples`).

    ``exclude`` names another split (e.g. ``"chnsenticorp:train"``): examples whose text occurs
    there are left out, for a score free of train/test leakage.

    ``batch_size`` defaults to the pipeline's (:data:`toolkit.runtime.pipeline.BATCH_SIZE`), so the score is
    what :func:`toolkit.load` users get: int8 activation scales are computed per batch, so int8
    predictions depend a little on which texts share a batch.

    ``runtime="onnx"`` scores the ONNX Runtime pipeline of :func:`toolkit.load` (exported on first
    use), ``quantize="int8"`` its int8 graph; a loaded ``MultiTaskModel`` runs on torch only. The
    result's ``"runtime"`` says which ran (``"torch"``, ``"onnx"``, ``"onnx-int8"``; with ``runtime="auto"``
    the one :mod:`toolkit.runtime.auto` chose, e.g. ``"torch-bf16"``). ``threads``: as in
    :func:`toolkit.load` (for torch, ``torch.set_num_threads``, process-wide).

    Example:
        >>> evaluate("path/to/model", "msra:test", task="ner_general", runtime="onnx", quantize="int8")["main"]  # doctest: +SKIP
        0.9102
    """
    if runtime == "auto":
        from .auto import check_options

        check_options(quantize)
    spec = "auto" if runtime == "auto" else runtime_spec(runtime, quantize)
    pipe, name, task = _pipeline(model_or_path, task, spec, batch_size, progress, threads)
    choice = getattr(pipe, "runtime_choice", None)
    spec = choice["name"] if choice else spec
    examples, extra = load_split(dataset, data_root, limit, exclude)
    return {"model": name, "task": task, "dataset": dataset, "runtime": spec, **extra, **evaluate_pipeline(pipe, task, examples)}


def compare_runtimes(
    model_or_path,
    dataset: str | dict,
    task: str | None = None,
    runtimes: Sequence[str] = ("torch", "onnx"),
    data_root: str | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    exclude: str | dict | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Score one split on several runtimes (specs from :data:`RUNTIMES`) and compare their predictions.

    Each runtime runs once on the same examples. Returns ``{"model", "task", "dataset", "n",
    "reference", "runtimes": {spec: evaluate-style result}, "agreement": {spec: fraction},
    "disagreements": {spec: count}}``: agreement is the fraction of examples whose predicted entity
    set (taggers) or label (classifiers, matchers) is identical to the first runtime's (the
    reference, 1.0 against itself).

    Example:
        >>> out = compare_runtimes("path/to/model", "chnsenticorp:test", task="sentiment", runtimes=["torch", "onnx", "onnx-int8"])  # doctest: +SKIP
        >>> out["disagreements"]  # doctest: +SKIP
        {'torch': 0, 'onnx': 0, 'onnx-int8': 3}
    """
    specs = list(dict.fromkeys(runtimes))
    if not specs:
        raise ValueError("compare_runtimes needs at least one runtime")
    for spec in specs:
        if spec not in RUNTIMES:
            raise ValueError(f"unknown runtime {spec!r}; available: {', '.join(RUNTIMES)}")
    examples, extra = load_split(dataset, data_root, limit, exclude)
    results: dict[str, dict[str, Any]] = {}
    predictions: dict[str, list] = {}
    name = None
    for spec in specs:
        pipe, name, task = _pipeline(model_or_path, task, spec, batch_size, progress, threads)
        result = evaluate_pipeline(pipe, task, examples, keep_predictions=True)
        predictions[spec] = result.pop("predictions")
        results[spec] = {"model": name, "task": task, "dataset": dataset, "runtime": spec, **extra, **result}
        del pipe
        logger.info("%s on %s (%s): %s %.4f", name, dataset, spec, result["metric"], result["main"])
    ref = specs[0]
    same = {spec: agreement(predictions[ref], predictions[spec]) for spec in specs}
    differ = {spec: sum(x != y for x, y in zip(predictions[ref], predictions[spec])) for spec in specs}
    return {"model": name, "task": task, "dataset": dataset, **extra, "n": len(examples), "reference": ref, "runtimes": results, "agreement": same, "disagreements": differ}
