"""Pipelines: ``preprocess -> forward -> postprocess``, batched by length.

* ``preprocess`` (per text): normalise (keeping the map to the original), tokenise with offsets,
  cut long texts into windows (:func:`toolkit.tokenization.make_windows`).
* ``forward`` (per batch): pad a length-sorted batch, run the encoder once for all requested heads
  (``Runner``: PyTorch here, ONNX Runtime elsewhere), return numpy arrays; then the numpy decoders
  run on the whole batch (constrained Viterbi, softmax).
* ``postprocess`` (per text): merge windows, map token spans to ORIGINAL character offsets.

Input checks and the answers for blank text: :mod:`toolkit.inputs`. Entities never cross a line or
paragraph break, nor whitespace between two Han characters (``"张三 李四"`` is two names; ``"New
York"`` and ``"2 mg"`` may be one entity), and never include an emoji or other symbol
(:func:`toolkit.tokenization.is_symbol`): decoding constraints (:class:`toolkit.decoding.TagDecoder`),
so each score is the probability of the span returned. Punctuation is left to the model
(``"COVID-19"``, ``"（左侧）"``, ``"HBsAg+"``: corpora put such marks inside and at the edges of
entities). A head whose output is not finite (NaN/inf: corrupted weights) raises
:class:`toolkit.errors.ModelFolderError` naming the model, instead of answering ``score: NaN``.

Every pipeline object is safe to call from several threads at once: a call keeps all its state in
local variables.

Example:
    >>> ner = load("ner-medical")  # doctest: +SKIP
    >>> ner("患者既往有2型糖尿病史。")  # doctest: +SKIP
    [Entity(text='2型糖尿病', label='dis', start=5, end=10, score=0.98)]
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Iterable, NamedTuple, Protocol, Sequence

import numpy as np

from .decoding import LabelDecoder
from .errors import ModelFolderError
from .inputs import check_batch_size, check_max_length, check_text, where
from .normalize import NormalizationConfig, Normalized, Normalizer
from .registry import HEAD_INPUT
from .tokenization import TextTokenizer, Window, entity_breaks, is_symbol, make_windows, sentence_breaks, symbol_tokens, token_types

logger = logging.getLogger(__name__)

BATCH_SIZE = 32  # windows per encoder pass when the caller does not say (the same on every runtime)
# Consecutive batches (similar lengths: they are sorted) are decoded together, up to this many
# windows: Viterbi and forward-backward loop over positions in Python, so fewer, larger arrays
# cost less (a quarter of the end-to-end time of a 2-layer model at one batch per call).
DECODE_GROUP = 256


@dataclass(frozen=True)
class Entity:
    """An entity in the original text: ``text == original[start:end]``; ``score`` in [0, 1]."""

    text: str
    label: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Runner(Protocol):
    """Runs the encoder and heads on a padded numpy batch; returns one array per task."""

    def run(self, batch: dict[str, np.ndarray], tasks: Sequence[str]) -> dict[str, np.ndarray]: ...


class TorchRunner:
    """:class:`Runner` over a :class:`toolkit.model.MultiTaskModel` (eval mode, inference mode)."""

    def __init__(self, model, device: str = "cpu") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def run(self, batch: dict[str, np.ndarray], tasks: Sequence[str]) -> dict[str, np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}
            out = self.model(tensors, tasks)
            return {t: v.float().cpu().numpy() for t, v in out.items()}


@dataclass
class _Item:
    """One model input: a window of a text (or a pair)."""

    text: int
    ids: np.ndarray
    segments: np.ndarray | None = None
    window: Window | None = None
    breaks: np.ndarray | None = None  # per word token, see toolkit.tokenization.entity_breaks
    blocked: np.ndarray | None = None  # per word token, see toolkit.tokenization.symbol_tokens


class Features(NamedTuple):
    """What :meth:`TextPipeline.preprocess` makes of one text (per-token arrays over the whole text)."""

    norm: Normalized
    offsets: np.ndarray  # [n_tokens, 2] into norm.text
    windows: list[tuple[Window, np.ndarray]]  # (window, ids with [CLS]/[SEP])
    breaks: np.ndarray  # [n_tokens] bool: no entity continues into this token
    blocked: np.ndarray  # [n_tokens] bool: symbol token, never in an entity


def is_pair(obj: Any) -> bool:
    """A pair of texts: a 2-tuple or 2-list of ``str``."""
    return isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(x, str) for x in obj)


def is_pairs(obj: Any) -> bool:
    """One pair, or a non-empty list of pairs."""
    return (isinstance(obj, tuple) and is_pair(obj)) or (isinstance(obj, list) and bool(obj) and all(is_pair(x) for x in obj))


class _Base:
    def __init__(
        self, tokenizer: TextTokenizer, normalization: NormalizationConfig, max_length: int, heads: dict[str, Any], runner: Runner,
        batch_size: int | None = None, progress: bool = False, name: str | None = None,
    ) -> None:
        self.max_length = check_max_length(max_length)
        self.tokenizer = tokenizer
        self.normalizer = Normalizer(normalization)
        self.kinds = {t: kind for t, (kind, _) in heads.items()}
        self.decoders = {t: dec for t, (_, dec) in heads.items()}
        self.tasks = list(heads)
        self.runner = runner
        self.batch_size = check_batch_size(batch_size, BATCH_SIZE)
        self.progress = progress
        self.name = name or str(getattr(runner, "path", "") or "this model")  # for error messages

    def _batches(self, items: list[_Item], batch_size: int, progress: bool) -> Iterable[list[int]]:
        order = sorted(range(len(items)), key=lambda i: len(items[i].ids))
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="batches", unit="batch")
        return chunks

    def _forward(self, items: list[_Item], idx: list[int]) -> dict[str, np.ndarray]:
        length = max(len(items[i].ids) for i in idx)
        ids = np.full((len(idx), length), self.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((len(idx), length), dtype=np.int64)
        types = np.zeros((len(idx), length), dtype=np.int64)
        segments = np.zeros((len(idx), length), dtype=np.int64)
        for row, i in enumerate(idx):
            item = items[i]
            n = len(item.ids)
            ids[row, :n] = item.ids
            mask[row, :n] = 1
            if item.segments is not None:
                segments[row, :n] = item.segments
                types[row, :n] = token_types(item.segments)
        batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        if any(HEAD_INPUT[self.kinds[t]] == "pair" for t in self.tasks):
            batch["segments"] = segments
        outputs = self.runner.run(batch, self.tasks)
        for task, out in outputs.items():
            if not np.isfinite(out).all():  # one check per batch output: corrupted weights give NaN
                raise ModelFolderError(
                    f"model {self.name!r}: head {task!r} returned non-finite values (NaN or inf), so the model folder is "
                    "corrupted (damaged weights). Check it with `toolkit info <folder>`, then re-save it from training "
                    "or re-download / re-install it."
                )
        return outputs

    def _check(self, inputs: Any, single: type | tuple) -> tuple[list, bool]:
        if isinstance(inputs, single):
            return [inputs], True
        if isinstance(inputs, (list, tuple)) and not isinstance(inputs, str):
            return list(inputs), False
        raise TypeError(f"expected {self.expects}, got {type(inputs).__name__}")


def _stack(outputs: list[np.ndarray]) -> np.ndarray:
    """Concatenate head outputs of several batches along the batch axis; ``[B, L, T]`` emissions are
    zero-padded to the longest ``L`` first (decoders read each row up to its own length)."""
    if len(outputs) == 1:
        return outputs[0]
    if outputs[0].ndim == 3:
        width = max(o.shape[1] for o in outputs)
        outputs = [np.pad(o, ((0, 0), (0, width - o.shape[1]), (0, 0))) for o in outputs]
    return np.concatenate(outputs, axis=0)


class TextPipeline(_Base):
    """Runs tagger and classifier heads on texts, in one encoder pass per batch.

    Call with a ``str`` (one result) or a list of ``str`` (a list of results). With one task the
    result is that task's: a list of :class:`Entity` for a tagger, ``{"label", "score", "scores"}``
    for a classifier; with several tasks it is ``{task: result}``.

    Texts longer than the model are split at sentence punctuation, then into overlapping windows;
    entities come back once each, with offsets into the original text. A classifier reads the first
    ``max_length`` tokens, as it was trained to. Blank text (no tokens: empty, spaces, invisible
    characters) is not run through the model: taggers return ``[]``, classifiers the explicit
    ``{"label": None, "score": None, "scores": {}}``. Entity boundaries and input checks: see the
    module docstring.
    """

    expects = "a str or a list of str"

    def __call__(self, inputs: str | Sequence[str], batch_size: int | None = None, progress: bool | None = None):
        texts, single = self._check(inputs, str)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"expected {self.expects}, got {type(t).__name__} at position {i}")
            check_text(t, where(i, single))
        batch_size = check_batch_size(batch_size, self.batch_size)
        features = self.preprocess_batch(texts)
        every_window = any(self.kinds[t] == "tagger" for t in self.tasks)  # classifiers read only the first
        items = [
            _Item(i, ids, window=w, breaks=f.breaks[w.start : w.end], blocked=f.blocked[w.start : w.end])
            for i, f in enumerate(features) if len(f.offsets)  # blank text: nothing to run
            for w, ids in (f.windows if every_window else f.windows[:1])
        ]
        found: list[dict[str, list]] = [{t: [] for t in self.tasks} for _ in texts]
        progress = self.progress if progress is None else progress
        group: list[tuple[list[int], dict[str, np.ndarray]]] = []

        def decode_group() -> None:
            idx = [i for batch, _ in group for i in batch]
            for task in self.tasks:
                out = _stack([outputs[task] for _, outputs in group])
                for i, result in zip(idx, self._decode(task, out, [items[i] for i in idx])):
                    found[items[i].text][task].append((items[i].window, result))
            group.clear()

        for idx in self._batches(items, batch_size, progress and len(items) > batch_size):
            group.append((idx, self._forward(items, idx)))
            if sum(len(b) for b, _ in group) >= DECODE_GROUP:
                decode_group()
        if group:
            decode_group()
        results = [self.postprocess(f, r) for f, r in zip(features, found)]
        return results[0] if single else results

    def preprocess(self, text: str) -> Features:
        """Normalise, tokenise and window one text; mark the entity boundaries (:class:`Features`)."""
        return self.preprocess_batch([text])[0]

    def preprocess_batch(self, texts: Sequence[str]) -> list[Features]:
        """:meth:`preprocess` for many texts, tokenised in one call of the Rust tokenizer."""
        norms = [self.normalizer(t) for t in texts]
        max_tokens = self.max_length - 2
        out = []
        for norm, (ids, offsets) in zip(norms, self.tokenizer.encode([n.text for n in norms])):
            cuts = sentence_breaks(norm.text, offsets) if len(ids) > max_tokens else ()
            windows = make_windows(len(ids), max_tokens, cuts)
            windows = [(w, self.tokenizer.with_specials(ids[w.start : w.end])) for w in windows]
            out.append(Features(norm, offsets, windows, entity_breaks(norm, offsets), symbol_tokens(norm.text, offsets)))
        return out

    def _decode(self, task: str, out: np.ndarray, items: list[_Item]) -> list[Any]:
        if self.kinds[task] == "tagger":
            lengths = np.array([len(it.ids) - 2 for it in items])
            width = int(lengths.max())
            if width == 0:
                return [[] for _ in items]
            breaks = np.zeros((len(items), width), dtype=bool)
            blocked = np.zeros((len(items), width), dtype=bool)
            for row, it in enumerate(items):
                breaks[row, : lengths[row]] = it.breaks
                blocked[row, : lengths[row]] = it.blocked
            return self.decoders[task].decode(out[:, 1 : 1 + width], lengths, breaks=breaks, blocked=blocked)
        return list(out)  # classifier logits; postprocess keeps the first window's

    def postprocess(self, features: Features, found: dict[str, list]) -> Any:
        """Merge the windows of one text; map entities to original offsets."""
        norm, offsets = features.norm, features.offsets
        result = {}
        for task, pieces in found.items():
            if self.kinds[task] == "tagger":
                result[task] = self._entities(norm, offsets, pieces)
            elif not pieces:  # blank text: not run
                result[task] = LabelDecoder.blank()
            else:
                logits = min(pieces, key=lambda p: p[0].start)[1]  # the first window, as in training
                result[task] = self.decoders[task].decode(logits[None])[0]
        return result[self.tasks[0]] if len(self.tasks) == 1 else result

    @staticmethod
    def _entities(norm: Normalized, offsets: np.ndarray, pieces: list) -> list[Entity]:
        """Entities from every window, each once: the window that owns its first token reports it.
        When that window cuts the entity at its right edge, the next (overlapping) window completes
        it: with its span of the same start if it sees one, else by joining the part that starts at
        its own left edge (same label; the score is the lower of the two). A token that mixes
        letters and symbols (``[UNK]`` for ``"CT😷"``) is trimmed so no entity starts or ends with a
        symbol."""
        pieces = sorted(pieces, key=lambda p: p[0].start)
        by_window = [{s + w.start: (s + w.start, e + w.start, label, score) for s, e, label, score in spans} for w, spans in pieces]
        entities = []
        for i, (window, _) in enumerate(pieces):
            nxt = pieces[i + 1][0] if i + 1 < len(pieces) else None
            for s, span in by_window[i].items():
                if not window.own_start <= s < window.own_end:
                    continue
                if span[1] == window.end and nxt is not None and nxt.start < window.end:
                    if nxt.start <= s and s in by_window[i + 1]:
                        span = by_window[i + 1][s]  # the next window saw it whole
                    elif s < nxt.start and nxt.start in by_window[i + 1]:
                        rest = by_window[i + 1][nxt.start]
                        if rest[2] == span[2] and rest[1] > window.end:
                            span = (s, rest[1], span[2], min(span[3], rest[3]))
                _, e, label, score = span
                first, last = int(offsets[s, 0]), int(offsets[e - 1, 1])
                while last - first > 1 and is_symbol(norm.text[last - 1]):
                    last -= 1
                while last - first > 1 and is_symbol(norm.text[first]):
                    first += 1
                start, end = norm.to_original(first, last)
                entities.append(Entity(norm.original[start:end], label, start, end, round(score, 6)))
        entities.sort(key=lambda x: (x.start, x.end))
        return entities


class PairPipeline(_Base):
    """Runs matcher heads on sentence pairs: ``(a, b)`` or a list of pairs (or ``pipe(a, b)``).

    Returns ``{"label", "score", "scores"}`` per pair (``{task: ...}`` with several tasks). Pairs
    longer than the model are truncated longest-first. A pair with a blank side (no tokens) is not
    run through the model: its result is ``{"label": None, "score": None, "scores": {}}``. Input
    checks: see the module docstring.
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
        batch_size = check_batch_size(batch_size, self.batch_size)
        encoded = self._encode(pairs)
        items = [_Item(i, ids, seg) for i, (ids, seg, blank) in enumerate(encoded) if not blank]
        results: list[dict[str, Any]] = [{t: LabelDecoder.blank() for t in self.tasks} if blank else {} for _, _, blank in encoded]
        progress = self.progress if progress is None else progress
        for idx in self._batches(items, batch_size, progress and len(items) > batch_size):
            for task, logits in self._forward(items, idx).items():
                for i, res in zip(idx, self.decoders[task].decode(logits)):
                    results[items[i].text][task] = res
        results = [r[self.tasks[0]] if len(self.tasks) == 1 else r for r in results]
        return results[0] if single else results

    def preprocess(self, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
        """``[CLS] a [SEP] b [SEP]`` ids and segments (1 = a, 2 = b, 0 = special)."""
        return self.preprocess_batch([(a, b)])[0]

    def preprocess_batch(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`preprocess` for many pairs, tokenised in one call of the Rust tokenizer."""
        return [(ids, seg) for ids, seg, _ in self._encode(pairs)]

    def _encode(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[np.ndarray, np.ndarray, bool]]:
        """``(ids, segments, blank)`` per pair; ``blank``: a side has no tokens."""
        encoded = self.tokenizer.encode([self.normalizer(x).text for pair in pairs for x in pair])
        out = []
        for i in range(len(pairs)):
            a, b = encoded[2 * i][0], encoded[2 * i + 1][0]
            out.append((*self.tokenizer.pair(a, b, self.max_length), not (len(a) and len(b))))
        return out


class MultiTaskPipeline:
    """Text heads and pair heads of one model behind one call: a ``str`` (or list of ``str``) runs
    the text heads, a pair ``(a, b)`` (or list of pairs) runs the pair heads."""

    def __init__(self, text: TextPipeline, pair: PairPipeline) -> None:
        self.text, self.pair = text, pair
        self.tasks = text.tasks + pair.tasks

    def __call__(self, inputs: Any, b: str | None = None, **kwargs: Any) -> Any:
        """Always ``{task: result}`` per input (also when only one text or one pair head answers)."""
        if b is not None:
            return self._keyed(self.pair, self.pair(inputs, b, **kwargs), False)
        if is_pairs(inputs):
            return self._keyed(self.pair, self.pair(inputs, **kwargs), not is_pair(inputs))
        return self._keyed(self.text, self.text(inputs, **kwargs), not isinstance(inputs, str))

    @staticmethod
    def _keyed(pipe: "_Base", out: Any, many: bool) -> Any:
        if len(pipe.tasks) != 1:
            return out
        task = pipe.tasks[0]
        return [{task: r} for r in out] if many else {task: out}


def build_pipeline(model, tasks: Sequence[str] | None = None, device: str = "cpu", batch_size: int | None = None, progress: bool = False):
    """The pipeline for ``tasks`` of a :class:`toolkit.model.MultiTaskModel` (PyTorch runtime)."""
    tasks = list(tasks) if tasks is not None else model.tasks
    batch_size = check_batch_size(batch_size, BATCH_SIZE)  # before any work (moving the model to the device)
    runner = TorchRunner(model, device)
    heads = {t: (model.heads[t].kind, model.heads[t].decoder()) for t in tasks}
    return pipeline_for(model.tokenizer, model.normalization, model.max_length, heads, runner, batch_size, progress, name=model.name)


def pipeline_for(
    tokenizer, normalization, max_length, heads: dict[str, tuple[str, Any]], runner: Runner, batch_size: int | None = None,
    progress: bool = False, name: str | None = None,
):
    """Text, pair or combined pipeline for ``heads`` (``{task: (kind, decoder)}``) over ``runner``;
    ``name`` (the model's name or folder) is what error messages call the model."""
    text = {t: h for t, h in heads.items() if HEAD_INPUT[h[0]] == "text"}
    pair = {t: h for t, h in heads.items() if HEAD_INPUT[h[0]] == "pair"}
    args = (tokenizer, normalization, max_length)
    options = {"batch_size": batch_size, "progress": progress, "name": name}
    if text and pair:
        return MultiTaskPipeline(TextPipeline(*args, text, runner, **options), PairPipeline(*args, pair, runner, **options))
    if pair:
        return PairPipeline(*args, pair, runner, **options)
    return TextPipeline(*args, text, runner, **options)
