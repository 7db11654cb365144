"""The ONNX Runtime backend: the same pipelines as PyTorch, without importing torch or transformers.

:class:`OnnxRunner` implements :class:`toolkit.runtime.pipeline.Runner` over an ``InferenceSession``;
:func:`onnx_pipeline` builds the usual text / pair / multi-task pipeline from a model folder with
only numpy, ``tokenizers``, ``safetensors.numpy``, PyYAML and ``onnxruntime``: the manifest is read
here, the tokenizer from the encoder's ``tokenizer.json``, the CRF parameters
from ``heads/<task>.safetensors``. The model bundle (:class:`toolkit.runtime.bundle.Bundle`) and the pipeline are
the same objects the PyTorch runtime uses, so both runtimes return the same results.

The graph comes from :mod:`toolkit.runtime.export` (``<folder>/onnx/``, else the cache), made by
``toolkit export FOLDER`` (which needs torch). Loading never exports behind the user's back: a
missing export is an error naming that command, unless ``export=True`` is passed.

Sessions are created with ``intra_op_num_threads=2`` (configurable), ``inter_op_num_threads=1``,
``ORT_ENABLE_ALL``. ``InferenceSession.run`` is thread-safe, so one pipeline serves many threads.

Example:
    >>> ner = onnx_pipeline("path/to/model-folder", tasks="ner", quantize="int8")  # doctest: +SKIP
    >>> ner("張三在北京醫院工作")  # doctest: +SKIP
    [Entity(text='張三', label='PER', start=0, end=2, score=0.97), ...]
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Sequence

from .bundle import Bundle
from .onnx_session import INSTALL_HINT, OnnxRunner, require  # noqa: F401 (re-exported: the runtime's public names)

logger = logging.getLogger(__name__)

def onnx_pipeline(
    name_or_path: str | Path,
    tasks: str | Sequence[str] | None = None,
    quantize: Literal["int8"] | None = None,
    threads: int = 2,
    batch_size: int | None = None,
    progress: bool = False,
    export: bool = False,
    graph: str | Path | None = None,
    keyed: bool | None = None,
):
    """The pipeline of :func:`toolkit.load` on ONNX Runtime (``load(..., runtime="onnx")`` calls this).

    Args:
        name_or_path: a registered name or a model folder.
        tasks: the heads to run (default: the ones the name selects, else all of the folder's).
        quantize: ``"int8"`` for the dynamically quantised graph, ``None`` for fp32.
        threads: ONNX Runtime intra-op threads (inter-op is 1).
        export: when the folder has no up-to-date graph, export it now (imports torch, writes
            ``<folder>/onnx/`` or the cache). By default nothing is written: a missing export is a
            :class:`~toolkit.errors.ModelFileMissingError` that names the ``toolkit export`` command.
        graph: run this graph file instead of the folder's export (e.g. one quantised with other
            settings by :func:`toolkit.runtime.export.quantize_int8`); it must come from this folder.
        keyed: answer ``{task: result}`` per input (default: when there is more than one task).

    Example:
        >>> pipe = onnx_pipeline("path/to/model-folder", tasks=["ner", "sentiment"])  # doctest: +SKIP
        >>> pipe("张三在北京")["sentiment"]["label"]  # doctest: +SKIP
        'pos'
    """
    from ..errors import ModelFileMissingError
    from .export import find_export
    from ..model.folder import verify
    from ..model.manifest import Manifest
    from .pipeline import pipeline_for
    from ..registry import resolve_tasks

    require("onnxruntime")
    path, selected = resolve_tasks(name_or_path, tasks)
    manifest = Manifest.read(path)
    verify(path, manifest)
    if graph is not None:
        graph = Path(graph)
    elif export:
        from .export import ensure_export  # imports torch only when an export is really made

        graph = ensure_export(path, quantize)
    else:
        graph = find_export(path, quantize)
        if graph is None:
            flag = " --quantize int8" if quantize else ""
            raise ModelFileMissingError(
                f"{path} has no up-to-date ONNX export{' (int8)' if quantize else ''}; make it once with "
                f"`toolkit export {path}{flag}` (needs torch), or pass export=True to load()")
    bundle = Bundle.from_folder(path, selected, verified=True)
    runner = OnnxRunner(graph, threads=threads)
    logger.info("ONNX pipeline for %s (%s) on %s", path, ", ".join(bundle.tasks), graph)
    return pipeline_for(bundle, runner, batch_size, progress, keyed)
