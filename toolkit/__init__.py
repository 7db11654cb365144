"""A multi-task NLP toolkit for Chinese: one shared BERT-family encoder, several task heads.

Example:
    >>> from toolkit import load
    >>> ner = load("ner-medical")  # doctest: +SKIP
    >>> ner("患者三天前出现发热、咳嗽。")  # doctest: +SKIP

Importing the package is cheap: torch and transformers load on the first :func:`load`.
"""
from __future__ import annotations

from numbers import Integral
from typing import TYPE_CHECKING, Literal, Sequence

from .errors import InputError, RuntimeUnavailableError
from .registry import list_models
from .version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from .runtime.pipeline import MultiTaskPipeline, PairPipeline, TextPipeline

__all__ = ["load", "list_models", "__version__"]


def load(
    name_or_path: str,
    tasks: str | Sequence[str] | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    progress: bool = False,
    runtime: Literal["torch", "onnx", "auto"] = "torch",
    quantize: Literal["int8"] | None = None,
    threads: int | None = None,
    export: bool = False,
    dtype: Literal["fp32", "bf16"] = "fp32",
) -> "TextPipeline | PairPipeline | MultiTaskPipeline":
    """A ready pipeline for a registered model name or a model folder. Never downloads anything.

    Args:
        name_or_path: a name from :func:`list_models` or a path to a model folder.
        tasks: the heads to run (default: the ones the name selects, else all of the folder's). A
            list of tasks (even of one) makes every answer ``{task: result}``; a single task name
            gives that task's result bare (see :mod:`toolkit.results`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
        batch_size: texts per encoder pass (texts are sorted by length and padded per batch;
            default :data:`toolkit.runtime.pipeline.BATCH_SIZE`).
        progress: show a progress bar on large inputs.
        runtime: ``"torch"``, or ``"onnx"`` for ONNX Runtime on CPU (same results, often faster, no
            torch import). It runs the folder's ONNX export, made once by ``toolkit export FOLDER``
            (see :mod:`toolkit.runtime.export`); a missing export is an error that names that command.
            ``"auto"``: the fastest accurate one for this CPU (:mod:`toolkit.runtime.auto`): PyTorch
            fp32, PyTorch bf16 (CPUs with native bf16 only), and ONNX fp32 / int8 when their exports
            exist (never made unasked), timed for a few seconds on a built-in probe of texts; a
            candidate whose answers there differ from PyTorch fp32's by more than 5% is out, and
            PyTorch fp32 stays unless another is 1.1x faster. The choice is cached per CPU, model
            and settings in ``$TOOLKIT_HOME/runtime/`` and described by the pipeline's
            ``runtime_choice`` (``name``, ``chars_per_s`` per candidate, ``reason``, ``cached``).
            ``$TOOLKIT_RUNTIME=torch|torch-bf16|onnx|onnx-int8`` forces what ``"auto"`` picks.
        dtype: ``"bf16"`` runs PyTorch under bfloat16 autocast (``runtime="torch"`` only; outputs and
            decoding stay fp32). Faster than fp32 on CPUs with AMX or AVX-512 bf16, slower elsewhere.
        export: with ``runtime="onnx"``, make the missing export now instead (imports torch and
            writes ``<folder>/onnx/`` or the cache); ``load()`` never does it unasked.
        quantize: ``"int8"`` runs the dynamically quantised graph (``runtime="onnx"`` only).
        threads: CPU threads for inference. ``runtime="onnx"``: the session's intra-op threads
            (inter-op is 1; default 2), private to this pipeline. ``runtime="torch"``: calls
            ``torch.set_num_threads(threads)``, which is **process-wide**: it applies to every torch
            model of the process, loaded before or after (default: leave torch's setting alone,
            one thread per core). On a CPU shared with other processes, fewer threads than cores
            can be several times faster.

    Raises :class:`~toolkit.errors.InputError` for a ``batch_size`` or ``threads`` that is not a
    positive integer, and :class:`~toolkit.errors.RuntimeUnavailableError` for a device this
    installation cannot use (``"cuda"`` on a CPU-only PyTorch build or without a GPU).

    Returns a callable: ``str -> list[Entity]`` for a NER model, ``str -> {label, score, scores}``
    for a classifier, ``(a, b) -> {label, score, scores}`` for a matcher; a model with text and pair
    heads gives ``{task: result}`` for a ``str`` (its text heads) and for a pair (its pair heads),
    and so does a model with several text heads for a ``str``.

    Example:
        >>> tk = load("ner-medical")  # doctest: +SKIP
        >>> [(e.text, e.label) for e in tk("既往有2型糖尿病史")]  # doctest: +SKIP
        [('2型糖尿病', 'dis')]
        >>> fast = load("ner-medical", runtime="auto", threads=2)  # doctest: +SKIP
        >>> fast.runtime_choice["name"], fast.runtime_choice["cached"]  # doctest: +SKIP
        ('onnx-int8', False)
    """
    keyed = True if isinstance(tasks, (list, tuple)) else None  # a list of tasks: {task: result} even for one
    for option, value in (("batch_size", batch_size), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, Integral) or value < 1):
            raise InputError(f"{option} must be a positive integer (or None for the default), got {value!r}")
    if dtype not in ("fp32", "bf16"):
        raise ValueError(f"dtype must be 'fp32' or 'bf16', got {dtype!r}")
    if runtime == "auto":
        from .runtime.auto import check_options, load_auto

        check_options(quantize, dtype, export)
        return load_auto(name_or_path, tasks, device=device, batch_size=batch_size, progress=progress, threads=threads)
    if runtime == "onnx":
        if dtype != "fp32":
            raise ValueError(f"dtype={dtype!r} is PyTorch autocast: use runtime='torch' (ONNX Runtime runs fp32, or int8 with quantize='int8')")
        if device != "cpu":
            raise ValueError(f"runtime='onnx' runs on the CPU only; use device='cpu' or runtime='torch' for {device!r}")
        from .runtime.onnx_runtime import onnx_pipeline

        return onnx_pipeline(name_or_path, tasks, quantize=quantize, threads=int(threads or 2), batch_size=batch_size, progress=progress,
                             export=export, keyed=keyed)
    if runtime != "torch":
        raise ValueError(f"unknown runtime {runtime!r}; available: 'torch', 'onnx', 'auto'")
    if quantize is not None:
        raise ValueError("quantize needs runtime='onnx' (e.g. load(name, runtime='onnx', quantize='int8'))")
    from .runtime.bundle import Bundle
    from .model.multitask import MultiTaskModel
    from .runtime.pipeline import BATCH_SIZE, TorchRunner, pipeline_for
    from .registry import resolve_tasks

    check_device(device)
    path, selected = resolve_tasks(name_or_path, tasks)
    if threads is not None:
        import torch

        torch.set_num_threads(int(threads))
    model = MultiTaskModel.load(path, tasks=selected)
    bundle = Bundle.from_folder(path, selected, verified=True)  # the same bundle the ONNX runtime builds
    return pipeline_for(bundle, TorchRunner(model, device, dtype), batch_size or BATCH_SIZE, progress, keyed)


def check_device(device: str) -> None:
    """Raise :class:`~toolkit.errors.RuntimeUnavailableError` unless PyTorch can run on ``device``.

    >>> check_device("cpu")
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise RuntimeUnavailableError(f"invalid device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only PyTorch build" if torch.version.cuda is None else "a CUDA build of PyTorch, but no GPU is visible"
            raise RuntimeUnavailableError(f"device {device!r} asked for, but this is {build} (torch {torch.__version__}): "
                                          "use --device cpu (device='cpu'), or install a CUDA build of PyTorch "
                                          "(https://pytorch.org/get-started/locally/) on a machine with an NVIDIA GPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeUnavailableError(f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible: "
                                          f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeUnavailableError(f"device {device!r} asked for, but MPS is not available here: use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise RuntimeUnavailableError(f"device {device!r} is not supported: use 'cpu', 'cuda' or 'cuda:N'")
