"""An ONNX Runtime session behind the :class:`toolkit.runtime.pipeline.Runner` interface, and the import of
the optional ``onnxruntime`` / ``onnx`` packages with an install hint.

The lowest ONNX layer: :mod:`toolkit.runtime.export` (writes graphs and checks them here),
:mod:`toolkit.runtime.quantization` and :mod:`toolkit.runtime.onnx_runtime` (builds pipelines) all import it, and it
imports none of them.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Sequence

import numpy as np

INSTALL_HINT = 'pip install -e ".[onnx]"  (or: pip install onnxruntime onnx)'


def require(module: str):
    """Import an optional dependency (``onnxruntime``, ``onnx``) or explain how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"the ONNX runtime needs the {module!r} package, which is not installed: {INSTALL_HINT}") from err


class OnnxRunner:
    """:class:`toolkit.runtime.pipeline.Runner` over an ONNX Runtime session of an exported graph.

    Inputs the graph has but the batch lacks (``segments`` for text-only tasks of a model with a
    matcher) are fed as zeros; inputs the graph does not have are dropped.

    Example:
        >>> runner = OnnxRunner("path/to/model-folder/onnx/model.onnx", threads=2)  # doctest: +SKIP
        >>> runner.run(batch, ["ner"])["ner"].shape  # doctest: +SKIP
        (8, 21, 7)
    """

    def __init__(self, path: str | Path, threads: int = 2, inter_threads: int = 1, providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        ort = require("onnxruntime")
        if int(threads) < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = int(inter_threads)
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, batch: dict[str, np.ndarray], tasks: Sequence[str]) -> dict[str, np.ndarray]:
        tasks = list(tasks)
        unknown = [t for t in tasks if t not in self.outputs]
        if unknown:
            raise KeyError(f"the ONNX graph {self.path} has no output {unknown[0]!r}; its outputs: {', '.join(self.outputs)}")
        zeros = None
        feed = {}
        for name in self.inputs:
            if name in batch:
                feed[name] = np.ascontiguousarray(batch[name], dtype=np.int64)
            else:
                zeros = np.zeros_like(batch["input_ids"], dtype=np.int64) if zeros is None else zeros
                feed[name] = zeros
        return dict(zip(tasks, self.session.run(tasks, feed)))
