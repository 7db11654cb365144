"""The ``span`` kind: nested named entities, one score per (start, end, type) (GlobalPointer).

The head (:class:`toolkit.heads.span.SpanHead`) scores every token span of up to ``max_span``
tokens for every entity type: logits ``[batch, types, sequence, sequence]`` over all positions,
``[CLS]`` at 0 (word token ``i`` at position ``i + 1``); cells that are no span (end before start,
longer than ``max_span``, padding) hold ``-1e4``. Decoding (:class:`SpanDecoder`, numpy) keeps every
span whose probability ``sigmoid(logit)`` is at least ``threshold``: nested and overlapping spans
are allowed, or, with ``flat``, the best-scoring spans that do not overlap (greedy). The entity
boundaries the tagger respects hold here too: no entity crosses a line break or whitespace between
Han characters (``breaks``) or contains a symbol token (``blocked``).

Training: the gold spans (nested kept) of each disjoint window; a span longer than ``max_span``
tokens, or cut by a window, is counted in the feature report and left out. Inference: every window
of a long text runs; windows are merged with nested spans allowed
(:func:`toolkit.kinds.tagger.merge_windows`). Metric: strict span micro-F1 against nested gold.

Head options (recipe ``options:``, stored in the manifest): ``head_size`` (64), ``max_span`` (32
tokens), ``threshold`` (0.5), ``flat`` (false), ``dropout`` (0.1). The threshold is read from the
manifest at load time. Training chooses it on the dev data at every evaluation (:meth:`SpanKind.tune`,
:func:`best_threshold`) and saves it with the head; to use another one, edit ``options.threshold``
in the folder's ``toolkit.yaml`` (decoding only: the weights and the ONNX export stay valid).

Example:
    >>> dec = SpanDecoder(["dis", "sym"], threshold=0.5, max_span=4)
    >>> logits = np.full((2, 3, 3), -9.0)
    >>> logits[0, 0, 2] = 3.0   # dis over tokens 0..2
    >>> logits[1, 1, 1] = 1.0   # sym on token 1, inside it
    >>> [(s, e, lab) for s, e, lab, _ in dec.decode(logits)]
    [(0, 3, 'dis'), (1, 2, 'sym')]
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from ..errors import ConfigError
from ..results import Entity
from ..text.encode import Encoded
from .base import Feature, HeadKind, Item
from .tagger import SpanResults, merge_windows, windowed_spans

DEFAULTS: dict[str, Any] = {"head_size": 64, "max_span": 32, "threshold": 0.5, "flat": False, "dropout": 0.1}
MASKED = -1e4  # the logit of a cell that is no span: finite, so ONNX, int8 and the pipeline's finiteness check hold


def check_options(head_size: Any = 64, max_span: Any = 32, threshold: Any = 0.5, flat: Any = False, dropout: Any = 0.1) -> None:
    """Refuse head options that cannot work, naming the option (:class:`~toolkit.errors.ConfigError`, a ``ValueError``)."""
    for name, value in (("head_size", head_size), ("max_span", max_span)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"span head option {name} must be a positive integer, got {value!r}")
    if head_size % 2:
        raise ConfigError(f"span head option head_size must be even (rotary position encoding rotates pairs), got {head_size}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ConfigError(f"span head option threshold must be a probability between 0 and 1, got {threshold!r}")
    if not isinstance(flat, bool):
        raise ConfigError(f"span head option flat must be true or false, got {flat!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"span head option dropout must be in [0, 1), got {dropout!r}")


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float64 without overflow (masked cells are ``-1e4``)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class SpanDecoder:
    """Span logits -> entities ``(start, end, label, probability)`` (word-token indices, ``end``
    exclusive), numpy only, stateless after construction (safe to share between threads).

    A span is returned when ``sigmoid(logit) >= threshold`` (so ``threshold=0`` returns every
    allowed span, ``threshold=1`` only saturated ones), it is at most ``max_span`` tokens long, no
    break lies inside it and it holds no blocked token. ``flat``: best probability first, spans
    overlapping an already kept one are dropped.
    """

    def __init__(self, labels: Sequence[str], threshold: float = 0.5, max_span: int = 32, flat: bool = False) -> None:
        check_options(max_span=max_span, threshold=threshold, flat=flat)
        self.labels = list(labels)
        self.threshold = float(threshold)
        self.max_span = int(max_span)
        self.flat = flat
        t = self.threshold
        # a cheap pre-filter on the logits; the test that counts is on the probability
        cut = float(np.log(t) - np.log1p(-t)) if 0 < t < 1 else 30.0
        self._cut = -np.inf if t <= 0 else cut - 1e-6 * max(1.0, abs(cut))

    def with_threshold(self, threshold: float) -> "SpanDecoder":
        """The same decoder with another threshold (e.g. a low one to collect candidates on dev)."""
        return SpanDecoder(self.labels, threshold, self.max_span, self.flat)

    def allowed(self, n: int, breaks: np.ndarray | None = None, blocked: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The band of spans a sequence of ``n`` tokens may hold: ``(end, ok)``, both ``[n, width]``
        with ``width = min(n, max_span)``: span ``start..end[start, k]`` (inclusive) has ``k + 1``
        tokens; ``ok`` says it fits in the text, crosses no break and holds no blocked token."""
        start = np.arange(n)[:, None]
        end = start + np.arange(min(n, self.max_span))[None, :]
        ok = end < n
        end = np.minimum(end, n - 1)
        if breaks is not None and np.any(breaks[:n]):
            before = np.cumsum(np.asarray(breaks[:n], dtype=np.int64))  # breaks in start+1..end
            ok &= before[end] == before[start]
        if blocked is not None and np.any(blocked[:n]):
            upto = np.concatenate([[0], np.cumsum(np.asarray(blocked[:n], dtype=np.int64))])  # blocked in start..end
            ok &= upto[end + 1] == upto[start]
        return end, ok

    def decode(self, logits: np.ndarray, breaks: np.ndarray | None = None, blocked: np.ndarray | None = None) -> list[tuple[int, int, str, float]]:
        """Entities of one sequence from its ``logits[types, n, n]`` over its ``n`` word tokens
        (``[start, end]`` inclusive cells), sorted by ``(start, end, label)``. Only the band of
        spans up to ``max_span`` tokens is read."""
        logits = np.asarray(logits)
        n = logits.shape[-1]
        if n == 0:
            return []
        end, ok = self.allowed(n, breaks, blocked)
        band = logits[:, np.arange(n)[:, None], end]  # [types, n, width]
        lab, s, k = np.nonzero((band >= self._cut) & ok[None])
        prob = sigmoid(band[lab, s, k])
        keep = prob >= self.threshold
        lab, s, e, prob = lab[keep], s[keep], s[keep] + k[keep], prob[keep]
        if self.flat:
            return self._greedy(lab, s, e, prob)
        order = np.lexsort((lab, e, s))
        return [(int(s[i]), int(e[i]) + 1, self.labels[lab[i]], float(prob[i])) for i in order]

    def _greedy(self, lab: np.ndarray, s: np.ndarray, e: np.ndarray, prob: np.ndarray) -> list[tuple[int, int, str, float]]:
        order = np.lexsort((lab, -(e - s), s, -prob))  # best first; ties: earlier, then longer, then label order
        taken = np.zeros(int(e.max()) + 1 if len(e) else 0, dtype=bool)
        out = []
        for k in order:
            if not taken[s[k] : e[k] + 1].any():
                taken[s[k] : e[k] + 1] = True
                out.append((int(s[k]), int(e[k]) + 1, self.labels[lab[k]], float(prob[k])))
        return sorted(out)


class SpanTarget(NamedTuple):
    """A training window's gold spans ``[k, 3]`` (``start, end`` exclusive, label id; word-token
    indices) and the head's number of labels (:meth:`SpanKind.targets` has no spec to read it from)."""

    spans: np.ndarray
    n_labels: int


class SpanKind(SpanResults, HeadKind):
    """Nested NER with span scores (see the module docstring). Options: ``head_size``,
    ``max_span``, ``threshold``, ``flat``, ``dropout``."""

    name = "span"
    head = "toolkit.heads.span:SpanHead"
    per_token = True
    graph_options = ("max_span",)  # masked inside the exported graph
    tuned_options = ("threshold",)  # chosen on held-out texts at each evaluation (tune)

    def spec_defaults(self, spec: Any) -> None:
        spec.scheme = None
        for key, value in DEFAULTS.items():
            spec.options.setdefault(key, value)

    def features(self, examples, encoded: Sequence[Encoded], spec, max_length, tokenizer, report) -> list[Feature]:
        max_span = int(spec.options.get("max_span", DEFAULTS["max_span"]))
        index = {label: i for i, label in enumerate(spec.labels)}

        def short(spans: list) -> list:  # nested kept; spans longer than max_span cannot be scored
            spans = sorted(set(spans))
            report.counts["spans longer than max_span"] += sum(e - s > max_span for s, e, _ in spans)
            return [sp for sp in spans if sp[1] - sp[0] <= max_span]

        out: list[Feature] = []
        for ids, local in windowed_spans(examples, encoded, spec.labels, max_length, report, post=short):
            target = SpanTarget(np.array([(s, e, index[lab]) for s, e, lab in local], dtype=np.int64).reshape(-1, 3), len(spec.labels))
            out.append(Feature(tokenizer.with_specials(ids), target))
        return out

    def targets(self, features: Sequence[Feature], length: int) -> np.ndarray:
        """Dense 0/1 ``uint8 [batch, labels, length, length]``: 1 at ``(label, start + 1, end)``,
        i.e. the start and the inclusive end position, ``[CLS]`` counted."""
        out = np.zeros((len(features), features[0].target.n_labels if features else 0, length, length), dtype=np.uint8)
        for r, f in enumerate(features):
            t = f.target.spans
            out[r, t[:, 2], t[:, 0] + 1, t[:, 1]] = 1
        return out

    def decoder(self, spec: Any, state: Callable[[], Mapping[str, np.ndarray]], where: str = "") -> SpanDecoder:
        options = {**DEFAULTS, **spec.options}
        try:
            check_options(**options)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where or spec.name}: task {spec.name!r}: {err}; fix its options in toolkit.yaml") from err
        return SpanDecoder(spec.labels, options["threshold"], options["max_span"], options["flat"])

    def tune(self, outputs_at: Callable[[dict[str, Any]], list], examples: Sequence) -> dict[str, Any]:
        """The threshold that scores best on dev ``examples`` (:func:`best_threshold`, from one nested
        decoding at a low threshold); ``{}`` when no threshold finds a correct entity."""
        floor = 0.05
        threshold, f1 = best_threshold(outputs_at({"threshold": floor, "flat": False}), examples, floor)
        return {"threshold": threshold} if f1 > 0 else {}

    def stack(self, outputs: list[np.ndarray]) -> np.ndarray:
        """Concatenate batches along axis 0, zero-padding both sequence axes (2 and 3) to the longest."""
        if len(outputs) == 1:
            return outputs[0]
        width = max(o.shape[2] for o in outputs)
        return np.concatenate([np.pad(o, [(0, 0), (0, 0), (0, width - o.shape[2]), (0, width - o.shape[3])]) for o in outputs], axis=0)

    def decode(self, decoder: SpanDecoder, output: np.ndarray, items: Sequence[Item]) -> list[Any]:
        pieces = []
        for row, it in enumerate(items):
            n = len(it.ids) - 2
            pieces.append(decoder.decode(output[row, :, 1 : 1 + n, 1 : 1 + n], it.extra.get("breaks"), it.extra.get("blocked")))
        return pieces

    def postprocess(self, decoder: Any, encoded: Encoded, pieces: list) -> list[Entity]:
        if not pieces:  # blank text: not run
            return self.blank()
        return merge_windows(encoded.norm, encoded.offsets, pieces, nested=True)

    def onnx_axes(self) -> dict[int, str]:
        return {0: "batch", 2: "sequence", 3: "sequence"}


def best_threshold(outputs: Sequence[Sequence[Entity]], examples: Sequence, floor: float = 0.0) -> tuple[float, float]:
    """``(threshold, micro-F1)``: the entity-score threshold that scores best on ``examples``.

    ``outputs`` are a span pipeline's results on the examples' texts, decoded with a threshold of
    ``floor`` or lower (e.g. ``pipe.decoders[task] = pipe.decoders[task].with_threshold(0.05)``):
    nested decoding keeps each span on its own merit, so raising the threshold only removes the
    entities scored below it, and one run scores every threshold. The threshold returned lies
    halfway between the lowest score kept and the next one down (or ``floor``); ties in F1 go to
    the higher threshold.

    Example:
        >>> from toolkit.data.examples import NerExample, Span
        >>> found = [[Entity("a", "X", 0, 1, 0.9), Entity("b", "X", 1, 2, 0.3)]]
        >>> best_threshold(found, [NerExample("ab", [Span(0, 1, "X")])])
        (0.6, 1.0)
    """
    gold = {(i, *s.as_tuple()) for i, ex in enumerate(examples) for s in ex.spans}
    scored = sorted(((e.score, (i, e.start, e.end, e.label) in gold) for i, found in enumerate(outputs) for e in found if e.score >= floor), key=lambda x: -x[0])
    best = (1.0, 0.0)
    tp = 0
    for k, (score, correct) in enumerate(scored):
        tp += correct
        below = scored[k + 1][0] if k + 1 < len(scored) else floor
        if below == score:
            continue  # a threshold keeps all entities of the same score
        f1 = 2 * tp / (k + 1 + len(gold))
        if f1 > best[1]:
            best = (round((score + below) / 2, 6), f1)
    return best


__all__ = ["SpanKind", "SpanDecoder", "SpanTarget", "best_threshold", "check_options", "DEFAULTS", "MASKED"]
