"""Batch inference on Ray Data: ``toolkit batch NAME --input FILES --output DIR --ray``.

The same shards as local mode (:mod:`toolkit.batch.run`) go through two Ray Data stages:

1. ``flat_map(read)``: each shard (file, byte range, first line number) becomes its rows, with the
   source file and line attached before any model runs;
2. ``map_batches(Predictor, compute=ActorPoolStrategy(size=workers))``: an actor pool; each actor loads the model once
   in ``__init__`` (``threads`` CPU threads each) and runs the pipeline's own length-sorted batching.

Order is preserved (``DataContext.execution_options.preserve_order``), and the driver writes the
rows with local mode's writer (:func:`toolkit.batch.run.write_outputs`), so the outputs are identical
to local mode's. Tokenisation is not a separate stage: it runs inside the actor, next to the forward
pass.

On a cluster (``address="auto"``, ``"ray://HOST:10001"`` or ``$RAY_ADDRESS``) the model folder and
the input files must be readable at the same path on every node; the outputs are written by the
driver. Needs ``pip install -e ".[ray]"``.

Example:
    >>> run_batch_ray("ner-medical", ["notes.txt"], "out", workers=2, threads=1, runtime="onnx", quantize="int8")  # doctest: +SKIP
    [PosixPath('out/notes.jsonl')]
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

from .run import CHUNK_SIZE, RAY_HINT, Format, Kind, Shard, plan, predict_rows, read_shard, shards, write_outputs
from ..errors import InputError

logger = logging.getLogger(__name__)


def require_ray():
    """Import ``ray`` (with Ray Data) or explain how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ImportError(f"--ray needs the 'ray[data]' package, which is not installed: {RAY_HINT}") from err
    return ray


class Predictor:
    """A Ray Data actor: loads the pipeline once, then predicts each batch of rows (pyarrow tables)."""

    def __init__(self, name: str, batch_size: int | None, load_options: dict[str, Any]) -> None:
        from .. import load

        self.pipe = load(name, batch_size=batch_size, **load_options)
        self.batch_size = batch_size

    def __call__(self, table):
        import pyarrow as pa

        return pa.Table.from_pylist(predict_rows(self.pipe, table.to_pylist(), self.batch_size))


def model_kind(name: str, tasks: str | Sequence[str] | None) -> Kind:
    """What the model takes (``"text"``, ``"pair"``, ``"both"``), from its manifest (no weights load)."""
    from ..model.manifest import Manifest
    from .. import kinds
    from ..registry import resolve_tasks

    path, selected = resolve_tasks(name, tasks)
    manifest = Manifest.read(path)
    inputs = {kinds.get(spec.kind).input for t, spec in manifest.tasks.items() if selected is None or t in selected}
    return "both" if len(inputs) > 1 else "pair" if inputs == {"pair"} else "text"


def start_ray(address: str | None, workers: int, threads: int) -> bool:
    """Join ``address`` (or ``$RAY_ADDRESS``), or start a local Ray with room for the actor pool
    plus one CPU for reading; returns whether this call started (and must stop) Ray."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=workers * threads + 1, include_dashboard=False, log_to_driver=False)
    return True


def run_batch_ray(
    name: str, inputs: Sequence[str], output_dir: str | Path, fmt: Format = "jsonl", text_field: str = "text",
    chunk_size: int = CHUNK_SIZE, progress: bool = False, batch_size: int | None = None, workers: int = 2,
    threads: int | None = None, address: str | None = None, rows_per_call: int = 1024, timings: dict[str, float] | None = None,
    **load_options: Any,
) -> list[Path]:
    """:func:`toolkit.batch.run.run_batch` on a Ray actor pool of ``workers`` model copies.

    Args:
        workers: actors, each holding one copy of the model.
        threads: CPU threads per actor (default: this machine's cores / workers, at least 1).
        address: an existing cluster (``"auto"``, ``"ray://HOST:10001"``); default ``$RAY_ADDRESS``,
            else a local Ray started (and stopped) here. A Ray already initialised in this process is used as is.
        rows_per_call: rows per ``map_batches`` call of an actor.
        timings: when given, gets ``ray_start_s`` (starting or joining Ray) and ``run_s``.
        Other arguments: as :func:`toolkit.batch.run.run_batch`.

    Example:
        >>> run_batch_ray("ner-medical", ["a.txt"], "out", workers=2, threads=1)  # doctest: +SKIP
        [PosixPath('out/a.jsonl')]
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    files, outputs = plan(inputs, output_dir, fmt, chunk_size)
    kind = model_kind(name, load_options.get("tasks"))
    if load_options.get("runtime") == "auto":  # measure once here, not in every actor at once (they would slow each other)
        from ..runtime.auto import choose_runtime

        chosen, reason = choose_runtime(name, load_options.get("tasks"), threads=threads, batch_size=batch_size)
        logger.info("runtime for the workers: %s (%s)", chosen, reason)
        load_options = {**{k: v for k, v in load_options.items() if k not in ("runtime", "quantize")}, **chosen}
    if load_options.get("runtime") == "onnx":  # export once here, not in every actor at once
        from ..runtime.export import ensure_export
        from ..registry import resolve

        ensure_export(resolve(name)[0], load_options.get("quantize"))
    ray = require_ray()
    t0 = time.perf_counter()
    started = start_ray(address, workers, threads)
    t1 = time.perf_counter()
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = progress
        items = [s.to_dict() for path in files for s in shards(path, chunk_size)]
        options = {**load_options, "threads": threads}
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items))) if items else None
        if ds is not None:
            ds = ds.flat_map(lambda s: read_shard(Shard(**s), kind, text_field), num_cpus=0.5).map_batches(
                Predictor, fn_constructor_kwargs={"name": name, "batch_size": batch_size, "load_options": options},
                compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads, batch_size=rows_per_call, batch_format="pyarrow",
            )
            batches = (b.to_pylist() for b in ds.iter_batches(batch_size=None, batch_format="pyarrow"))
        else:
            batches = iter(())
        result = write_outputs(files, outputs, fmt, batches, progress=False)
    finally:
        if started:
            ray.shutdown()
    if timings is not None:
        timings.update(ray_start_s=t1 - t0, run_s=time.perf_counter() - t1)
    return result


__all__ = ["Predictor", "model_kind", "run_batch_ray", "start_ray"]
