"""ONNX export of a model folder (encoder + every head's emission/logit layer in ONE graph) and int8.

The graph takes ``input_ids``, ``attention_mask``, ``token_type_ids`` (+ ``segments`` when the model
has a matcher head), all ``int64 [batch, sequence]`` with dynamic axes, and has one output per task,
named by the task: ``[batch, sequence, tags]`` emissions for a tagger, ``[batch, labels]`` logits for
a classifier or matcher. Viterbi/CRF, softmax, normalisation, tokenisation and offsets stay in
numpy (:mod:`toolkit.kinds.decoding`, :mod:`toolkit.runtime.pipeline`), shared with the PyTorch runtime.

Where the graphs live
---------------------
Inside the model folder, ``<folder>/onnx/``::

    onnx/model.onnx        fp32 graph (opset 17)
    onnx/model.int8.onnx   int8 weights, activations quantised per row (see below), on demand
    onnx/export.json       toolkit version, opset, quantisation, sha256 of the source files

so a folder stays self-contained: copy it and its runtime goes with it, and a shipped folder can carry
its export (the ONNX runtime then needs neither torch nor transformers). When the folder is not
writable (a read-only install, a shared model store) the export goes to
``$TOOLKIT_HOME/onnx/<hash>`` (default ``~/.cache/toolkit/onnx/<hash>``), where ``<hash>`` is the
sha256 of the folder's resolved path: one cache entry per model folder, overwritten when stale, so the
cache does not grow with every retraining. The manifest format is unchanged.

``export.json`` records the sha256 of the encoder's ``config.json`` and weights and of every head's
safetensors file, and each task's kind and labels. A graph whose sources changed (a retrained or
edited folder) is stale: :func:`find_export` ignores it and :func:`export_onnx` redoes it. The toolkit
version is recorded but does not invalidate an export; :data:`EXPORT_FORMAT` is bumped instead when
the graph's contract changes.

The int8 graph (:func:`toolkit.runtime.quantization.quantize_int8`, per-row activation scales) records its
own :data:`~toolkit.runtime.quantization.INT8_FORMAT`; one of another format is redone from the fp32 graph.

Example:
    >>> export_onnx("path/to/model-folder", quantize="int8")  # doctest: +SKIP
    PosixPath('path/to/model-folder/onnx/model.int8.onnx')
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..files import file_sha256, toolkit_home
from ..model.manifest import Manifest
from .onnx_session import require
from .quantization import INT8_FORMAT, INT8_KEEP_FP32, INT8_OPS, quantize_int8  # noqa: F401  (INT8_OPS: re-exported)
from .. import kinds
from ..version import __version__

logger = logging.getLogger(__name__)

Quantize = Literal["int8"]
OPSET = 17
EXPORT_FORMAT = 2  # 2: int8 weights per channel; bump when the graph's inputs/outputs change meaning: older exports are redone
ONNX_DIR = "onnx"
RECORD = "export.json"
GRAPHS = {None: "model.onnx", "int8": "model.int8.onnx"}


# ------------------------------------------------------------------ locations and records (no torch)
def cache_dir(folder: str | Path) -> Path:
    """Where the export of a read-only ``folder`` goes: ``$TOOLKIT_HOME/onnx/<sha256 of its path>``."""
    key = hashlib.sha256(str(Path(folder).resolve()).encode("utf-8")).hexdigest()[:16]
    return toolkit_home() / ONNX_DIR / key


def export_dirs(folder: str | Path) -> list[Path]:
    """The places :func:`find_export` looks, in order: ``<folder>/onnx``, then the cache."""
    return [Path(folder) / ONNX_DIR, cache_dir(folder)]


MASKED = 5e3  # outputs at or beyond this magnitude are masked cells (a span head writes -1e4), left out of the scale

def fingerprint(folder: str | Path) -> dict[str, Any]:
    """What an export depends on: sha256 of the encoder's config and weights and of each head's file,
    and each task's kind, labels and scheme."""
    folder = Path(folder)
    manifest = Manifest.read(folder)
    encoder = folder / manifest.encoder
    files = [encoder / "config.json", *sorted(encoder.glob("*.safetensors")), *sorted(encoder.glob("*.bin"))]
    files += [folder / spec.weights for spec in manifest.tasks.values()]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is an incomplete model folder: missing {', '.join(missing)}")
    return {
        "sources": {f.relative_to(folder).as_posix(): file_sha256(f) for f in files},
        "tasks": {t: _task_fingerprint(s) for t, s in manifest.tasks.items()},
    }


def _task_fingerprint(spec: Any) -> dict[str, Any]:
    """Kind, labels, scheme, and the options the kind bakes into the graph (e.g. a span head's ``max_span``)."""
    found = {"kind": spec.kind, "labels": list(spec.labels), "scheme": spec.scheme}
    baked = {k: spec.options.get(k) for k in kinds.get(spec.kind).graph_options}
    if baked:
        found["graph_options"] = baked
    return found


def read_record(directory: str | Path) -> dict[str, Any] | None:
    """The ``export.json`` in ``directory``, or ``None`` when absent or unreadable."""
    path = Path(directory) / RECORD
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _current(record: dict[str, Any] | None, fp: dict[str, Any], directory: Path, quantize: Quantize | None) -> bool:
    if not record or record.get("export_format") != EXPORT_FORMAT:
        return False
    if record.get("sources") != fp["sources"] or record.get("tasks") != fp["tasks"]:
        return False
    graph = record.get("graphs", {}).get(quantize or "fp32")
    if quantize and graph and (graph.get("int8_format") != INT8_FORMAT or graph.get("quantization", {}).get("keep_fp32") != list(INT8_KEEP_FP32)):
        return False  # quantised by an older toolkit (per-batch activation scales) or with other settings
    path = directory / GRAPHS[quantize]
    return bool(graph) and path.is_file() and path.stat().st_size == graph.get("bytes")


def find_export(folder: str | Path, quantize: Quantize | None = None, fp: dict[str, Any] | None = None) -> Path | None:
    """The up-to-date graph of ``folder`` (``<folder>/onnx`` first, then the cache), else ``None``.

    Example:
        >>> find_export("path/to/model-folder")  # doctest: +SKIP
        PosixPath('path/to/model-folder/onnx/model.onnx')
    """
    _check_quantize(quantize)
    fp = fp or fingerprint(folder)
    for directory in export_dirs(folder):
        record = read_record(directory)
        if record is None:
            continue
        if _current(record, fp, directory, quantize):
            return directory / GRAPHS[quantize]
        logger.info("ignoring the %s export in %s: stale or missing", quantize or "fp32", directory)
    return None


def _check_quantize(quantize: Any) -> None:
    if quantize not in GRAPHS:
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
        return True
    except OSError:
        return False


def default_dir(folder: str | Path) -> Path:
    """Where :func:`export_onnx` writes by default: ``<folder>/onnx`` if writable, else the cache."""
    inside = Path(folder) / ONNX_DIR
    if _writable(inside):
        return inside
    logger.info("%s is not writable; exporting to the cache %s", inside, cache_dir(folder))
    return cache_dir(folder)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------ export (torch) and quantisation
def export_onnx(
    model_folder: str | Path,
    out: str | Path | None = None,
    quantize: Quantize | None = None,
    opset: int = OPSET,
    force: bool = False,
) -> Path:
    """Export a model folder (or registered name) to ONNX; returns the graph's path.

    Writes ``model.onnx`` (and ``model.int8.onnx`` with ``quantize="int8"``) and ``export.json`` into
    ``out`` (default ``<folder>/onnx``, or the cache when the folder is read-only; see the module
    docstring). An up-to-date export is reused unless ``force``. Needs torch, ``onnx`` and
    ``onnxruntime`` (``pip install -e ".[onnx]"``).

    Example:
        >>> export_onnx("path/to/model-folder", quantize="int8")  # doctest: +SKIP
        PosixPath('path/to/model-folder/onnx/model.int8.onnx')
    """
    from ..registry import resolve

    _check_quantize(quantize)
    folder, _ = resolve(model_folder)
    target = Path(out) if out is not None else default_dir(folder)
    target.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(folder)
    record = read_record(target)
    if force or not _current(record, fp, target, None):
        (target / GRAPHS["int8"]).unlink(missing_ok=True)  # an int8 graph of stale sources is stale too
        record = _export_fp32(folder, target / GRAPHS[None], opset)
        record.update(fp)
        _write_atomic(target / RECORD, json.dumps(record, ensure_ascii=False, indent=2) + "\n")
    if quantize == "int8" and (force or not _current(record, fp, target, "int8")):
        record["graphs"]["int8"] = quantize_int8(target / GRAPHS[None], target / GRAPHS["int8"])
        _write_atomic(target / RECORD, json.dumps(record, ensure_ascii=False, indent=2) + "\n")
    path = target / GRAPHS[quantize]
    logger.info("ONNX graph ready: %s", path)
    return path


def ensure_export(folder: str | Path, quantize: Quantize | None = None) -> Path:
    """The up-to-date graph of ``folder``, exporting it first when there is none (needs torch then)."""
    fp = fingerprint(folder)
    found = find_export(folder, quantize, fp)
    if found is not None:
        return found
    logger.info("no up-to-date ONNX export of %s; exporting it now (once)", folder)
    return export_onnx(folder, quantize=quantize)


def _dummy_batch(length: int, batch: int, max_length: int, vocab: int, seed: int) -> dict[str, np.ndarray]:
    """A padded pair-shaped batch: row 0 full, the others shorter (exercises masks and segments)."""
    rng = np.random.default_rng(seed)
    length = max(4, min(length, max_length))
    ids = rng.integers(5, max(6, vocab), size=(batch, length), dtype=np.int64)
    mask = np.ones_like(ids)
    segments = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row in range(batch):
        n = length - row if length - row >= 4 else length
        mask[row, n:] = 0
        half = n // 2
        segments[row, 1:half], segments[row, half + 1 : n - 1] = 1, 2
        types[row, half + 1 : n] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "segments": segments}


def _export_fp32(folder: Path, path: Path, opset: int) -> dict[str, Any]:
    """Trace the eager-attention model into ``path``, check it against PyTorch, return the record."""
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch is a hard dependency of the package
        raise ImportError("exporting to ONNX needs torch: pip install -e '.[onnx]'") from err
    require("onnx")
    from ..model.multitask import MultiTaskModel

    model = MultiTaskModel.load(folder, attn_implementation="eager")  # eager: ORT can fuse attention
    tasks = list(model.tasks)
    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    if any(kinds.get(model.task_kind(t)).input == "pair" for t in tasks):
        inputs.append("segments")

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.model(dict(zip(inputs, tensors)), tasks)
            return tuple(out[t] for t in tasks)

    graph = Graph().eval()  # export restores this mode afterwards: it must be eval, or dropout runs
    vocab = int(model.encoder.config.vocab_size)
    dummy = _dummy_batch(8, 2, model.max_length, vocab, seed=0)
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    for t in tasks:
        axes[t] = kinds.get(model.task_kind(t)).onnx_axes()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    logger.info("exporting %s (%s) to %s", folder, ", ".join(tasks), path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints in transformers' mask code
        torch.onnx.export(
            graph,
            tuple(torch.from_numpy(dummy[n]) for n in inputs),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=inputs,
            output_names=tasks,
            dynamic_axes=axes,
            do_constant_folding=True,
        )
        # check against PyTorch on another shape than the traced one (catches baked-in sizes)
        check = _dummy_batch(13, 3, model.max_length, vocab, seed=1)
        expected = graph(*(torch.from_numpy(check[n]) for n in inputs))
    from .onnx_session import OnnxRunner

    runner = OnnxRunner(tmp, threads=1)
    got = runner.run(check, tasks)
    diff, worst = 0.0, 0.0  # per task: one head's scale (a span head's -1e4 mask) must not loosen another's check
    for t, e in zip(tasks, expected):
        e = e.numpy()
        d = float(np.abs(got[t] - e).max())
        scale = float(np.abs(e[np.abs(e) < MASKED]).max(initial=0.0))
        diff, worst = max(diff, d), max(worst, d / max(1.0, scale))
    if worst > 1e-3:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"the ONNX export of {folder} differs from PyTorch by {diff:.3g}; please report this with the model folder's config.json")
    os.replace(tmp, path)
    logger.info("exported %s: max |onnx - torch| = %.2g", path.name, diff)
    return {
        "export_format": EXPORT_FORMAT,
        "toolkit_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "opset": opset,
        "inputs": list(runner.inputs),  # an encoder without token types has no token_type_ids input
        "outputs": {t: model.task_kind(t) for t in tasks},
        "graphs": {"fp32": {"file": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path), "max_abs_diff_vs_torch": diff}},
    }
