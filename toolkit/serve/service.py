"""The served names, their loaded model folders and batchers: what the HTTP layer calls (no FastAPI here)."""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from .batcher import MicroBatcher
from ..errors import InputError, ToolkitError, UnknownNameError
from ..text.inputs import check_text, where
from ..registry import MANIFEST
from ..results import to_json_data

logger = logging.getLogger(__name__)

SEND = ('send JSON such as {"text": "..."}, {"texts": ["...", "..."]}, {"pair": ["a", "b"]} or {"pairs": [["a", "b"]]}, '
        'optionally with "tasks": ["task"]')


@dataclass
class ServeOptions:
    """How ``toolkit serve`` loads and batches models, and what it accepts (CLI options of the same names)."""

    runtime: Literal["torch", "onnx", "auto"] = "torch"  # auto: chosen per model folder (toolkit.runtime.auto)
    quantize: Literal["int8"] | None = None
    threads: int | None = None
    # texts per encoder pass inside one gathered call: requests arrive in any order of length, and
    # smaller passes (the call sorts its texts by length) pad less than the library's 32 (benchmarks/serve.py)
    batch_size: int | None = 8
    max_batch: int = 64  # texts gathered from concurrent requests into one pipeline call (1: no batching)
    # 0: greedy, a call takes what queued while the model was busy (no added latency; on a 2-core CPU
    # waiting 5 ms gained no throughput and cost 5 ms at one client: benchmarks/results/serve.md)
    max_wait_ms: float = 0.0
    max_texts: int = 64  # texts (or pairs) per request
    max_chars: int = 10_000  # characters per text
    max_body_bytes: int = 1_000_000
    timeout_s: float = 30.0
    max_queue: int = 1_000  # waiting requests per folder before 503


@dataclass
class _Folder:
    """One loaded model folder: its pipelines and batchers, shared by every name served from it."""

    path: Path
    tasks: list[str]
    kinds: dict[str, str]
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="toolkit-model"))
    pipes: dict[str, Any] = field(default_factory=dict)  # "text" / "pair" -> pipeline (always {task: result})
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)


def _keyed(pipe: Any):
    """``list -> list[{task: result}]`` over a text or pair pipeline."""
    def run(inputs: list) -> list[dict[str, Any]]:
        out = pipe(inputs)
        return out if pipe.keyed else [{pipe.tasks[0]: r} for r in out]
    return run


class Service:
    """The served names and their loaded folders; what the HTTP layer calls (no FastAPI in here).

    Example:
        >>> service = Service(["ner-medical", "sentiment"], ServeOptions(runtime="onnx"))  # doctest: +SKIP
        >>> service.load(); service.start()  # doctest: +SKIP
        >>> await service.predict("ner-medical", ["发热三天"], "text", None)  # doctest: +SKIP
    """

    def __init__(self, names: Sequence[str], options: ServeOptions, on_batch=None) -> None:
        from ..model.manifest import Manifest
        from .. import kinds as head_kinds
        from ..registry import resolve

        if not names:
            raise InputError("give at least one registered model name or model folder to serve (see `toolkit list`)")
        if options.max_wait_ms < 0 or options.max_batch < 1:
            raise InputError(f"max_wait_ms must be 0 or more and max_batch 1 or more, got {options.max_wait_ms} and {options.max_batch}")
        self.options, self.on_batch = options, on_batch
        self.names: dict[str, tuple[_Folder, list[str]]] = {}
        self.folders: dict[Path, _Folder] = {}
        self.manifests: dict[Path, Any] = {}
        self.ready, self.error = False, None
        for name in names:
            path, selected = resolve(name)
            key = path.resolve()
            if key not in self.folders:
                manifest = self.manifests[key] = Manifest.read(path)
                kinds = {t: head_kinds.get(s.kind).input for t, s in manifest.tasks.items()}
                self.folders[key] = _Folder(path, [], kinds)
            folder = self.folders[key]
            tasks = list(selected) if selected is not None else list(self.manifests[key].tasks)
            served = Path(name).name if (Path(name) / MANIFEST).is_file() else name
            if served in self.names:
                raise InputError(f"two models would be served as {served!r}: rename one of the folders")
            self.names[served] = (folder, tasks)
            folder.tasks += [t for t in self.manifests[key].tasks if t in tasks and t not in folder.tasks]

    def load(self) -> None:
        """Load every folder once (blocking: call in a thread)."""
        from .. import load
        from ..runtime.pipeline import MultiTaskPipeline, PairPipeline

        o = self.options
        for folder in self.folders.values():
            tasks = [t for t in self.manifests[folder.path.resolve()].tasks if t in folder.tasks]
            pipe = load(str(folder.path), tasks=tasks, runtime=o.runtime, quantize=o.quantize, threads=o.threads, batch_size=o.batch_size)
            if isinstance(pipe, MultiTaskPipeline):
                folder.pipes = {"text": pipe.text, "pair": pipe.pair}
            else:
                folder.pipes = {"pair" if isinstance(pipe, PairPipeline) else "text": pipe}
            logger.info("loaded %s (tasks %s)", folder.path, ", ".join(tasks))

    def start(self) -> None:
        """Start the batchers (on the running event loop); the service is then ready."""
        o = self.options
        for folder in self.folders.values():
            for kind, pipe in folder.pipes.items():
                report = None
                if self.on_batch is not None:
                    def report(n, k, s, _f=folder.path.name, _i=kind):
                        self.on_batch(_f, _i, n, k, s)
                folder.batchers[kind] = MicroBatcher(_keyed(pipe), folder.executor, o.max_batch, o.max_wait_ms, report)
                folder.batchers[kind].start()
        self.ready = True

    async def close(self) -> None:
        """Answer every queued request, then stop the batchers and their threads."""
        self.ready = False
        for folder in self.folders.values():
            for batcher in folder.batchers.values():
                await batcher.close()
            folder.executor.shutdown(wait=True)

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/models`` answers."""
        from ..version import __version__

        models = []
        for name, (folder, tasks) in self.names.items():
            manifest = self.manifests[folder.path.resolve()]
            choice = next((p.runtime_choice for p in folder.pipes.values() if getattr(p, "runtime_choice", None)), None)
            models.append({
                "name": name, "folder": str(folder.path), "model_version": manifest.toolkit_version,
                "format_version": manifest.format_version, **({"runtime": choice["name"]} if choice else {}),
                "tasks": {t: {"kind": manifest.tasks[t].kind, "input": folder.kinds[t], "labels": manifest.tasks[t].labels} for t in tasks},
            })
        o = self.options
        return {"models": models, "toolkit_version": __version__, "runtime": o.runtime, "quantize": o.quantize}

    def check(self, name: str, inputs: list, kind: str, requested: Any) -> tuple[_Folder, list[str], list[str]]:
        """``(folder, request tasks, tasks of this input kind)``; raises ``UnknownNameError`` (404) or
        ``InputError`` (422) / ``TooLarge`` (413) with what to send."""
        from ..registry import task_names

        if name not in self.names:
            raise UnknownNameError(f"no model {name!r} is served here; served: {', '.join(self.names)} (GET /v1/models lists them)")
        folder, tasks = self.names[name]
        if requested is not None:
            try:
                tasks = task_names(folder.path, requested, tasks)
            except UnknownNameError as err:
                raise InputError(f"tasks: {err}") from None
        own = [t for t in tasks if folder.kinds[t] == kind]
        if not own:
            other = "texts (text or texts)" if kind == "pair" else "pairs (pair or pairs)"
            raise InputError(f"model {name!r} with tasks {tasks} has no {kind} heads: send {other}")
        o = self.options
        if len(inputs) > o.max_texts:
            raise TooLarge(f"{len(inputs)} inputs in one request; at most {o.max_texts}: split them over several requests")
        for i, item in enumerate(inputs):
            for text in ([item] if kind == "text" else item):
                if len(text) > o.max_chars:
                    raise TooLarge(f"{where(i, len(inputs) == 1, kind)} has {len(text)} characters; at most {o.max_chars} per text "
                                    "(longer texts are windowed up to this cap): split it into several texts")
                check_text(text, where(i, len(inputs) == 1, kind))
        return folder, tasks, own

    async def predict(self, name: str, inputs: list, kind: str, requested: Any) -> tuple[list[str], list[Any]]:
        """``(tasks, results)``: what ``load(name, tasks=...)`` gives for each input, as JSON values."""
        folder, tasks, own = self.check(name, inputs, kind, requested)
        batcher = folder.batchers[kind]
        if batcher.waiting >= self.options.max_queue:
            raise Busy(f"{batcher.waiting} requests are waiting for this model; retry in a moment")
        combined = await asyncio.wait_for(batcher.submit([tuple(x) for x in inputs] if kind == "pair" else inputs), self.options.timeout_s)
        keyed = len(own) > 1 or len(own) != len(tasks)  # several heads, or text and pair heads: {task: result}
        return tasks, [to_json_data({t: r[t] for t in own} if keyed else r[own[0]]) for r in combined]


class TooLarge(InputError):
    """Over a request limit (413)."""


class Busy(ToolkitError):
    """Too many queued requests (503)."""


__all__ = ["SEND", "Busy", "ServeOptions", "Service", "TooLarge"]
