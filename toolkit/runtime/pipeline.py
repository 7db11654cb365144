"""Pipelines: ``preprocess -> forward -> postprocess``, three public stages, batched by length.

* :meth:`preprocess` (per text or pair): normalise (keeping the map to the original), tokenise with
  offsets, cut long texts into windows (:mod:`toolkit.text.encode`, the same code training uses),
  and add the per-token arrays the heads' kinds decode with.
* :meth:`forward` (per batch): pad a length-sorted batch (:func:`toolkit.text.encode.pad_batch`),
  run the encoder once for all requested heads (a :class:`Runner`: PyTorch, ONNX Runtime, or
  anything that maps a padded numpy batch to numpy arrays), then each kind's numpy decoder on the
  whole batch (constrained Viterbi, softmax).
* :meth:`postprocess` (per input): each kind merges its windows and maps spans to ORIGINAL offsets.

What the stages pass on is plain picklable data (numpy arrays, tuples, small dataclasses), so a
server or a batch job may run them in different processes. Everything kind-specific (which windows
run, decoding, merging, blank answers) is the kind's (:mod:`toolkit.kinds`); this module never
tests a kind's name.

Results: see :mod:`toolkit.results`. A pipeline that is ``keyed`` (a multi-task model, or a list
of tasks asked for) answers ``{task: result}`` per input whatever the number of tasks; otherwise
the one task's result. Input checks and the answers for blank text: :mod:`toolkit.text.inputs`.
Entities never cross a line or paragraph break, nor whitespace between two Han characters, and
never include an emoji or other symbol (decoding constraints of :mod:`toolkit.kinds.tagger`). A head
whose output is not finite (corrupted weights) raises :class:`toolkit.errors.ModelFolderError`.

Every pipeline object is safe to call from several threads at once: a call keeps its state in
local variables.

Example:
    >>> ner = load("ner-medical")  # doctest: +SKIP
    >>> ner("患者既往有2型糖尿病史。")  # doctest: +SKIP
    [Entity(text='2型糖尿病', label='dis', start=5, end=10, score=0.98)]
    >>> prepared = ner.preprocess(["患者既往有2型糖尿病史。"])  # doctest: +SKIP
    >>> ner.postprocess(prepared, ner.forward(prepared))  # doctest: +SKIP
    [{'ner_medical': [Entity(text='2型糖尿病', ...)]}]
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Iterable, NamedTuple, Protocol, Sequence

import numpy as np

from .bundle import Bundle
from ..errors import ModelFolderError
from ..text.inputs import check_batch_size, check_text, where
from ..kinds import Item
from ..text.normalize import Normalizer
from ..results import Entity  # noqa: F401 (re-exported: toolkit.runtime.pipeline.Entity)
from ..text.encode import Encoded, encode_pairs, encode_texts, pad_batch

logger = logging.getLogger(__name__)

BATCH_SIZE = 32  # windows per encoder pass when the caller does not say (the same on every runtime)
# Consecutive batches (similar lengths: they are sorted) are decoded together, up to this many
# windows: Viterbi and forward-backward loop over positions in Python, so fewer, larger arrays
# cost less (a quarter of the end-to-end time of a 2-layer model at one batch per call).
DECODE_GROUP = 256
DECODE_BYTES = 256 * 2**20  # ... or up to this many bytes of head outputs (a span head's [B, C, L, L] scores grow as L^2)


class Runner(Protocol):
    """Runs the encoder and heads on a padded numpy batch; returns one array per task."""

    def run(self, batch: dict[str, np.ndarray], tasks: Sequence[str]) -> dict[str, np.ndarray]: ...


DTYPES = ("fp32", "bf16")


class TorchRunner:
    """:class:`Runner` over a :class:`toolkit.model.multitask.MultiTaskModel` (eval mode, inference mode).

    ``dtype="bf16"`` runs the model under ``torch.autocast(..., dtype=torch.bfloat16)`` (the weights
    stay fp32, so one model may serve an fp32 and a bf16 runner); the outputs come back as float32
    numpy arrays either way, so decoding (the CRF's Viterbi, softmax) is always fp32 numpy. bf16 is
    fast on CPUs with native bf16 (AMX, AVX-512 bf16) and slower than fp32 elsewhere
    (:mod:`toolkit.runtime.auto` measures which).
    """

    def __init__(self, model, device: str = "cpu", dtype: str = "fp32") -> None:
        import torch

        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.torch = torch
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(self.device).eval()

    def run(self, batch: dict[str, np.ndarray], tasks: Sequence[str]) -> dict[str, np.ndarray]:
        torch = self.torch
        from ..model.encoder import autocast

        with torch.inference_mode(), autocast(self.dtype, self.device):
            tensors = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}
            out = self.model(tensors, tasks)
            return {t: v.float().cpu().numpy() for t, v in out.items()}


class Prepared(NamedTuple):
    """What :meth:`TextPipeline.preprocess` makes of one text: its :class:`~toolkit.text.encode.Encoded`
    form and the per-token arrays (over the whole text) that its heads' kinds decode with."""

    encoded: Encoded
    arrays: dict[str, np.ndarray]


def is_pair(obj: Any) -> bool:
    """A pair of texts: a 2-tuple or 2-list of ``str``."""
    return isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(x, str) for x in obj)


def is_pairs(obj: Any) -> bool:
    """One pair, or a non-empty list of pairs."""
    return (isinstance(obj, tuple) and is_pair(obj)) or (isinstance(obj, list) and bool(obj) and all(is_pair(x) for x in obj))


class _Base:
    expects = ""
    # how load(runtime="auto") chose this pipeline's runtime (toolkit.runtime.auto.RuntimeChoice.as_dict:
    # name, chars/s per candidate, reason, cached); None when the runtime was asked for by name
    runtime_choice: dict[str, Any] | None = None

    def __init__(self, bundle: Bundle, runner: Runner, batch_size: int | None = None, progress: bool = False, keyed: bool | None = None) -> None:
        self.bundle = bundle
        self.max_length = bundle.max_length
        self.tokenizer = bundle.tokenizer
        self.normalizer = Normalizer(bundle.normalization)
        self.kinds = dict(bundle.kinds)
        self.decoders = dict(bundle.decoders)
        self.tasks = list(bundle.kinds)
        self.runner = runner
        self.batch_size = check_batch_size(batch_size, BATCH_SIZE)
        self.progress = progress
        self.keyed = len(self.tasks) > 1 if keyed is None else keyed
        self.name = bundle.name or str(getattr(runner, "path", "") or "this model")  # what error messages call the model

    def with_runner(self, runner: Runner):
        """The same pipeline (bundle, tasks, batch size, decoders shared) over another runner, e.g.
        ``TorchRunner(pipe.runner.model, dtype="bf16")``: the same weights under bf16 autocast."""
        other = copy.copy(self)
        other.runner, other.runtime_choice = runner, None
        return other

    def _batches(self, items: list[Item], batch_size: int, progress: bool) -> Iterable[list[int]]:
        order = sorted(range(len(items)), key=lambda i: len(items[i].ids))
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="batches", unit="batch")
        return chunks

    def _run(self, items: list[Item], idx: list[int]) -> dict[str, np.ndarray]:
        pair = any(k.input == "pair" for k in self.kinds.values())
        batch = pad_batch([items[i].ids for i in idx], self.tokenizer.pad_id, [items[i].segments for i in idx], with_segments=pair).arrays
        outputs = self.runner.run(batch, self.tasks)
        for task, out in outputs.items():
            if not np.isfinite(out).all():  # one check per batch output: corrupted weights give NaN
                raise ModelFolderError(
                    f"model {self.name!r}: head {task!r} returned non-finite values (NaN or inf), so the model folder is "
                    "corrupted (damaged weights). Check it with `toolkit info <folder>`, then re-save it from training "
                    "or re-download / re-install it."
                )
        return outputs

    def _forward_items(self, items: list[Item], n_inputs: int, batch_size: int | None, progress: bool | None) -> list[dict[str, list]]:
        """Run ``items`` batched by length; ``found[input][task]`` is a list of ``(window, piece)``."""
        batch_size = check_batch_size(batch_size, self.batch_size)
        progress = self.progress if progress is None else progress
        found: list[dict[str, list]] = [{t: [] for t in self.tasks} for _ in range(n_inputs)]
        group: list[tuple[list[int], dict[str, np.ndarray]]] = []

        def decode_group() -> None:
            idx = [i for batch, _ in group for i in batch]
            for task in self.tasks:
                out = self.kinds[task].stack([outputs[task] for _, outputs in group])
                for i, piece in zip(idx, self.kinds[task].decode(self.decoders[task], out, [items[i] for i in idx])):
                    found[items[i].text][task].append((items[i].window, piece))
            group.clear()

        for idx in self._batches(items, batch_size, progress and len(items) > batch_size):
            group.append((idx, self._run(items, idx)))
            if sum(len(b) for b, _ in group) >= DECODE_GROUP or sum(o.nbytes for _, out in group for o in out.values()) >= DECODE_BYTES:
                decode_group()
        if group:
            decode_group()
        return found

    def _answer(self, results: list[dict[str, Any]], single: bool) -> Any:
        results = results if self.keyed else [r[self.tasks[0]] for r in results]
        return results[0] if single else results

    def run(self, inputs: Sequence, batch_size: int | None = None, progress: bool | None = None) -> list[dict[str, Any]]:
        """``{task: result}`` for each of ``inputs`` (a list), whatever the number of tasks."""
        prepared = self.preprocess(inputs)
        return self.postprocess(prepared, self.forward(prepared, batch_size, progress))


class TextPipeline(_Base):
    """Runs text heads (tagger, classifier, ...) on texts, in one encoder pass per batch.

    Call with a ``str`` (one result) or a list of ``str`` (a list of results). Texts longer than the
    model are split at sentence punctuation, then into overlapping windows; entities come back once
    each, with offsets into the original text. A classifier reads the first window, as it was
    trained to. Blank text (no tokens) is not run through the model: each kind gives its blank
    answer (``[]`` for entities, ``Label.blank()`` for labels). See the module docstring.
    """

    expects = "a str or a list of str"

    def __call__(self, inputs: str | Sequence[str], batch_size: int | None = None, progress: bool | None = None):
        if isinstance(inputs, str):
            texts, single = [inputs], True
        elif isinstance(inputs, (list, tuple)):
            texts, single = list(inputs), False
        else:
            raise TypeError(f"expected {self.expects}, got {type(inputs).__name__}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"expected {self.expects}, got {type(t).__name__} at position {i}")
            check_text(t, where(i, single))
        check_batch_size(batch_size, self.batch_size)
        return self._answer(self.run(texts, batch_size, progress), single)

    def preprocess(self, texts: str | Sequence[str]) -> list[Prepared]:
        """Normalise, tokenise and window texts (in one call of the Rust tokenizer); add the
        per-token arrays the kinds decode with (:class:`Prepared`, one per text)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = []
        for enc in encode_texts(texts, self.normalizer, self.tokenizer, self.max_length):
            arrays: dict[str, np.ndarray] = {}
            for kind in self.kinds.values():
                arrays.update(kind.token_arrays(enc))
            out.append(Prepared(enc, arrays))
        return out

    def forward(self, prepared: Sequence[Prepared], batch_size: int | None = None, progress: bool | None = None) -> list[dict[str, list]]:
        """Run the model on the windows of ``prepared`` texts and decode them: per text,
        ``{task: [(window, decoded piece), ...]}`` (plain data)."""
        every_window = any(k.every_window for k in self.kinds.values())  # else only the first window runs
        items = [
            Item(i, ids, window=w, extra={k: v[w.start : w.end] for k, v in p.arrays.items()})
            for i, p in enumerate(prepared) if len(p.encoded.offsets)  # blank text: nothing to run
            for w, ids in (p.encoded.windows if every_window else p.encoded.windows[:1])
        ]
        return self._forward_items(items, len(prepared), batch_size, progress)

    def postprocess(self, prepared: Sequence[Prepared], found: Sequence[dict[str, list]]) -> list[dict[str, Any]]:
        """Per text, ``{task: result}``: each kind merges its windows into its result."""
        out = []
        for p, pieces in zip(prepared, found):
            out.append({t: self.kinds[t].postprocess(self.decoders[t], p.encoded, pieces[t]) for t in self.tasks})
        return out


class PairPipeline(_Base):
    """Runs pair heads (matcher) on sentence pairs: ``(a, b)`` or a list of pairs (or ``pipe(a, b)``).

    Pairs longer than the model are truncated longest-first. A pair with a blank side (no tokens)
    is not run through the model: its result is the kind's blank answer. See the module docstring.
    """

    expects = "a pair (a, b) of str or a list of pairs"

    def __call__(self, inputs, b: str | None = None, batch_size: int | None = None, progress: bool | None = None):
        if b is not None:
            inputs = (inputs, b)
        single = isinstance(inputs, tuple) and is_pair(inputs)
        pairs = [inputs] if single else inputs
        if not isinstance(pairs, (list, tuple)):
            raise TypeError(f"expected {self.expects}, got {type(inputs).__name__}")
        for i, p in enumerate(pairs):
            if not is_pair(p):
                raise TypeError(f"expected {self.expects}; item {i} is {p!r}")
            for side, text in zip("ab", p):
                check_text(text, f"side {side} of {where(i, single, 'pair')}")
        check_batch_size(batch_size, self.batch_size)
        return self._answer(self.run(pairs, batch_size, progress), single)

    def preprocess(self, pairs: tuple[str, str] | Sequence[tuple[str, str]]) -> list[tuple[np.ndarray, np.ndarray, bool]]:
        """``(ids, segments, blank)`` per pair: ``[CLS] a [SEP] b [SEP]``, segments 1 = a, 2 = b, 0 = special."""
        pairs = [pairs] if is_pair(pairs) and isinstance(pairs, tuple) else list(pairs)
        return encode_pairs(pairs, self.normalizer, self.tokenizer, self.max_length)

    def forward(self, prepared: Sequence[tuple[np.ndarray, np.ndarray, bool]], batch_size: int | None = None, progress: bool | None = None) -> list[dict[str, list]]:
        """Run the model on the non-blank pairs: per pair ``{task: [(None, logits)]}`` (empty when blank)."""
        items = [Item(i, ids, seg) for i, (ids, seg, blank) in enumerate(prepared) if not blank]
        return self._forward_items(items, len(prepared), batch_size, progress)

    def postprocess(self, prepared: Sequence, found: Sequence[dict[str, list]]) -> list[dict[str, Any]]:
        """Per pair, ``{task: label result}`` (the kind's blank answer for a pair not run)."""
        return [{t: self.kinds[t].postprocess(self.decoders[t], None, pieces[t]) for t in self.tasks} for pieces in found]


class MultiTaskPipeline:
    """Text heads and pair heads of one model behind one call: a ``str`` (or list of ``str``) runs
    the text heads, a pair ``(a, b)`` (or list of pairs) runs the pair heads. Always ``{task: result}``
    per input (also when only one text or one pair head answers). The stages of each side are those
    of ``.text`` and ``.pair``."""

    def __init__(self, text: TextPipeline, pair: PairPipeline) -> None:
        self.text, self.pair = text, pair
        self.tasks = text.tasks + pair.tasks
        self.kinds = {**text.kinds, **pair.kinds}
        self.keyed = True

    @property
    def runner(self) -> Runner:
        """The one runner both sides share."""
        return self.text.runner

    def with_runner(self, runner: Runner) -> "MultiTaskPipeline":
        """Both sides over another runner (see :meth:`TextPipeline.with_runner`)."""
        return MultiTaskPipeline(self.text.with_runner(runner), self.pair.with_runner(runner))

    @property
    def runtime_choice(self) -> dict[str, Any] | None:
        """As on a text pipeline: how ``load(runtime="auto")`` chose the runtime (shared by ``.text`` and ``.pair``)."""
        return self.text.runtime_choice

    @runtime_choice.setter
    def runtime_choice(self, choice: dict[str, Any] | None) -> None:
        self.text.runtime_choice = self.pair.runtime_choice = choice

    def __call__(self, inputs: Any, b: str | None = None, **kwargs: Any) -> Any:
        if b is not None:
            return self.pair(inputs, b, **kwargs)
        if is_pairs(inputs):
            return self.pair(inputs, **kwargs)
        return self.text(inputs, **kwargs)


def pipeline_for(bundle: Bundle, runner: Runner, batch_size: int | None = None, progress: bool = False, keyed: bool | None = None):
    """Text, pair or combined pipeline for the tasks of ``bundle`` over ``runner``. ``keyed``
    (default: more than one task) makes every answer ``{task: result}``."""
    text = [t for t, k in bundle.kinds.items() if k.input == "text"]
    pair = [t for t, k in bundle.kinds.items() if k.input == "pair"]
    options: dict[str, Any] = {"batch_size": batch_size, "progress": progress}
    if text and pair:
        return MultiTaskPipeline(TextPipeline(bundle.select(text), runner, keyed=True, **options), PairPipeline(bundle.select(pair), runner, keyed=True, **options))
    if pair:
        return PairPipeline(bundle, runner, keyed=keyed, **options)
    return TextPipeline(bundle, runner, keyed=keyed, **options)


def build_pipeline(model, tasks: Sequence[str] | None = None, device: str = "cpu", batch_size: int | None = None, progress: bool = False, keyed: bool | None = None):
    """The pipeline for ``tasks`` of a live :class:`toolkit.model.multitask.MultiTaskModel` (PyTorch runtime)."""
    tasks = list(tasks) if tasks is not None else model.tasks
    batch_size = check_batch_size(batch_size, BATCH_SIZE)  # before any work (moving the model to the device)
    return pipeline_for(Bundle.from_model(model, tasks), TorchRunner(model, device), batch_size, progress, keyed)
