"""A multi-task NLP toolkit for Chinese: one shared BERT-family encoder, several task heads.

Example:
    >>> from toolkit import load
    >>> ner = load("ner-medical")  # doctest: +SKIP
    >>> ner("患者三天前出现发热、咳嗽。")  # doctest: +SKIP

Importing the package is cheap: torch and transformers load on the first :func:`load`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

from .registry import list_models
from .version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import MultiTaskPipeline, PairPipeline, TextPipeline

__all__ = ["load", "list_models", "__version__"]


def load(
    name_or_path: str,
    tasks: str | Sequence[str] | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    progress: bool = False,
    runtime: Literal["torch", "onnx"] = "torch",
    quantize: Literal["int8"] | None = None,
    threads: int = 2,
) -> "TextPipeline | PairPipeline | MultiTaskPipeline":
    """A ready pipeline for a registered model name or a model folder. Never downloads anything.

    Args:
        name_or_path: a name from :func:`list_models` or a path to a model folder.
        tasks: the heads to run (default: the ones the name selects, else all of the folder's).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
        batch_size: texts per encoder pass (texts are sorted by length and padded per batch;
            default :data:`toolkit.pipeline.BATCH_SIZE`).
        progress: show a progress bar on large inputs.
        runtime: ``"torch"``, or ``"onnx"`` for ONNX Runtime on CPU (same results, faster, no torch
            import once the folder has an export; the first use exports it, see :mod:`toolkit.export`).
        quantize: ``"int8"`` runs the dynamically quantised graph (``runtime="onnx"`` only).
        threads: ONNX Runtime intra-op threads (``runtime="onnx"`` only; inter-op is 1).

    Returns a callable: ``str -> list[Entity]`` for a NER model, ``str -> {label, score, scores}``
    for a classifier, ``(a, b) -> {label, score, scores}`` for a matcher; a model with text and pair
    heads gives ``{task: result}`` for a ``str`` (its text heads) and for a pair (its pair heads),
    and so does a model with several text heads for a ``str``.

    Example:
        >>> tk = load("ner-medical")  # doctest: +SKIP
        >>> [(e.text, e.label) for e in tk("既往有2型糖尿病史")]  # doctest: +SKIP
        [('2型糖尿病', 'dis')]
    """
    if runtime == "onnx":
        if device != "cpu":
            raise ValueError(f"runtime='onnx' runs on the CPU only; use device='cpu' or runtime='torch' for {device!r}")
        from .onnx_runtime import onnx_pipeline

        return onnx_pipeline(name_or_path, tasks, quantize=quantize, threads=threads, batch_size=batch_size, progress=progress)
    if runtime != "torch":
        raise ValueError(f"unknown runtime {runtime!r}; available: 'torch', 'onnx'")
    if quantize is not None:
        raise ValueError("quantize needs runtime='onnx' (e.g. load(name, runtime='onnx', quantize='int8'))")
    from .model import MultiTaskModel
    from .pipeline import build_pipeline
    from .registry import resolve

    path, selected = resolve(name_or_path)
    if tasks is not None:
        selected = [tasks] if isinstance(tasks, str) else list(tasks)
    model = MultiTaskModel.load(path, tasks=selected)
    return build_pipeline(model, selected, device=device, batch_size=batch_size, progress=progress)
