"""The ``tagger`` kind: sequence labelling (BIO/BIOES/BMES tags + CRF) for flat named entities.

Training: entity spans (original offsets) -> normalised offsets -> tokens -> tags per disjoint
window; nested spans are flattened (``flatten``: ``longest`` or ``first``) and every span that
cannot be learnt is counted in the feature report, never dropped silently. Inference: every window
of a text runs; constrained Viterbi with the scheme's transitions and the text's entity boundaries
(:class:`toolkit.kinds.decoding.TagDecoder`), then the windows are merged into one list of
:class:`~toolkit.results.Entity` with offsets into the original text. Metric: strict span micro-F1
against the original (possibly nested) gold.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .decoding import TagDecoder
from ..text.normalize import Normalized
from ..results import Entity
from ..text.tags import check_scheme, flatten_spans, spans_to_tags, tag_set
from ..text.encode import Encoded, to_normalized_span
from ..text.tokenization import align_spans, entity_breaks, is_symbol, make_windows, sentence_breaks, symbol_tokens
from .base import Feature, HeadKind, Item


def token_spans(ex: Any, encoded: Encoded, labels: set[str], report: Any, kept: Callable[[list], tuple[list, list]] | None = None) -> list[tuple[int, int, str]]:
    """An example's gold spans as token spans ``(start, end, label)`` of its encoding; spans of
    unknown types, empty after normalisation, or with a boundary inside a token are counted in
    ``report`` and left out. ``kept`` filters the normalised spans first (e.g. flattening)."""
    spans = []
    for sp in ex.spans:
        report.counts["spans"] += 1
        if sp.label not in labels:
            report.counts[f"spans of unknown type {sp.label!r}"] += 1
            continue
        s, e = to_normalized_span(encoded.norm, sp.start, sp.end)
        if e <= s:
            report.counts["spans empty after normalisation"] += 1
            continue
        spans.append((s, e, sp.label))
    if kept is not None:
        spans, dropped = kept(spans)
        report.counts["nested spans flattened away"] += len(dropped)
    found, bad = align_spans(encoded.offsets, spans)
    report.counts["spans with a boundary inside a token"] += len(bad)
    return found


def training_windows(encoded: Encoded, max_length: int):
    """Disjoint windows of a training text (``(window, ids with specials)``)."""
    max_tokens = max_length - 2
    cuts = sentence_breaks(encoded.norm.text, encoded.offsets) if len(encoded.ids) > max_tokens else ()
    return make_windows(len(encoded.ids), max_tokens, cuts, stride=0)


def windowed_spans(examples: Sequence, encoded: Sequence[Encoded], labels: Sequence[str], max_length: int, report: Any,
                   kept: Callable[[list], tuple[list, list]] | None = None, post: Callable[[list], list] | None = None):
    """For every disjoint training window of every example: ``(ids of the window without specials,
    its gold token spans as (start, end, label) local to the window)``. ``kept`` filters the
    normalised spans (flattening), ``post`` the token spans; what is lost is counted in ``report``."""
    for ex, enc in zip(examples, encoded):
        report.counts["examples"] += 1
        if len(enc.ids) == 0:
            report.counts["empty texts skipped"] += 1
            continue
        spans = token_spans(ex, enc, set(labels), report, kept)
        spans = post(spans) if post is not None else spans
        covered = set()
        for w in training_windows(enc, max_length):
            inside = [sp for sp in spans if w.start <= sp[0] and sp[1] <= w.end]
            covered.update(inside)
            report.counts["sequences"] += 1
            yield enc.ids[w.start : w.end], [(s - w.start, e - w.start, lab) for s, e, lab in inside]
        report.counts["spans cut by a window"] += len(set(spans)) - len(covered)


def merge_windows(norm: Normalized, offsets: np.ndarray, pieces: list, nested: bool = False) -> list[Entity]:
    """Entities from every window of one text, each once: the window that owns its first token
    reports it. When that window cuts the entity at its right edge, the next (overlapping) window
    completes it: with its span of the same start if it sees one, else by joining the part that
    starts at its own left edge (same label; the score is the lower of the two). A token that mixes
    letters and symbols (``[UNK]`` for ``"CT😷"``) is trimmed so no entity starts or ends with a
    symbol. ``nested``: several spans may share a start token (span heads); keyed by
    ``(start, label, end)`` instead of by start."""
    pieces = sorted(pieces, key=lambda p: p[0].start)

    def key(span):
        return (span[0], span[2], span[1]) if nested else span[0]

    by_window = [{key(sp): sp for sp in ((s + w.start, e + w.start, label, score) for s, e, label, score in spans)} for w, spans in pieces]
    entities = []
    for i, (window, _) in enumerate(pieces):
        nxt = pieces[i + 1][0] if i + 1 < len(pieces) else None
        later = by_window[i + 1] if nxt is not None else {}
        for span in by_window[i].values():
            s = span[0]
            if not window.own_start <= s < window.own_end:
                continue
            if span[1] == window.end and nxt is not None and nxt.start < window.end:
                whole = [sp for sp in later.values() if sp[0] == s and (not nested or sp[2] == span[2])] if nxt.start <= s else []
                parts = [sp for sp in later.values() if sp[0] == nxt.start and sp[2] == span[2] and sp[1] > window.end] if s < nxt.start else []
                if whole:
                    span = max(whole, key=lambda sp: sp[1]) if nested else whole[0]  # the next window saw it whole
                elif parts:
                    rest = parts[0]
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


class SpanResults:
    """What every kind that returns entities shares: blank answer, comparable form, gold, scoring
    (strict span P/R/F1, micro and per type) and confidences (an entity's score; correct = in gold)."""

    data = "ner"
    input = "text"
    every_window = True
    metric = "micro_f1"

    def infer_labels(self, examples: Sequence) -> list[str]:
        return sorted({s.label for ex in examples for s in ex.spans})

    def label_counts(self, examples: Sequence) -> dict[str, int]:
        from collections import Counter

        return dict(Counter(s.label for ex in examples for s in ex.spans).most_common())

    def token_arrays(self, encoded: Encoded) -> dict[str, np.ndarray]:
        """Per-token decoding constraints over the whole text: ``breaks`` (no entity continues into
        this token) and ``blocked`` (a symbol token, never in an entity); see :mod:`toolkit.text.tokenization`."""
        return {"breaks": entity_breaks(encoded.norm, encoded.offsets), "blocked": symbol_tokens(encoded.norm.text, encoded.offsets)}

    def blank(self) -> list:
        return []

    def comparable(self, outputs: Sequence) -> list:
        return [sorted({(e.start, e.end, e.label) for e in found}) for found in outputs]

    def gold(self, examples: Sequence) -> list:
        return [[s.as_tuple() for s in ex.spans] for ex in examples]

    def labels_in(self, comparable: Sequence) -> list:
        return [span[2] for spans in comparable for span in spans]

    def score_gold(self, predictions: Sequence, gold: Sequence) -> dict[str, Any]:
        from .metrics import span_prf

        scores = span_prf(predictions, gold)
        return {"metric": self.metric, "main": scores["micro"]["f1"], **scores}

    def confidence(self, outputs: Sequence, examples: Sequence):
        from .metrics import span_prf

        per_class = span_prf(self.comparable(outputs), self.gold(examples))["per_type"]
        pairs = [(e.score, (e.start, e.end, e.label) in {s.as_tuple() for s in ex.spans}) for found, ex in zip(outputs, examples) for e in found]
        return per_class, pairs


class TaggerKind(SpanResults, HeadKind):
    """Flat NER with tags and a CRF (see the module docstring). Options: ``scheme`` (BIO, BIOES,
    BMES), ``dropout``; recipe ``flatten`` for nested gold."""

    name = "tagger"
    head = "toolkit.heads.tagger:TaggerHead"
    default_for_data = True
    per_token = True
    feature_options = ("flatten",)

    def spec_defaults(self, spec: Any) -> None:
        if spec.scheme is None:
            spec.scheme = "BIO"

    def head_options(self, spec: Any) -> dict[str, Any]:
        options = dict(spec.options)
        if spec.scheme is not None:
            options["scheme"] = spec.scheme
        return options

    def features(self, examples, encoded, spec, max_length, tokenizer, report, flatten: str = "longest") -> list[Feature]:
        scheme = check_scheme(spec.scheme or "BIO")
        tags = tag_set(spec.labels, scheme)
        index = {t: i for i, t in enumerate(tags)}
        out: list[Feature] = []
        for ids, local in windowed_spans(examples, encoded, spec.labels, max_length, report, lambda s: flatten_spans(s, flatten)):
            target = np.array([index[t] for t in spans_to_tags(local, len(ids), scheme)], dtype=np.int64)
            out.append(Feature(tokenizer.with_specials(ids), target))
        return out

    def targets(self, features: Sequence[Feature], length: int) -> np.ndarray:
        out = np.zeros((len(features), length), dtype=np.int64)
        for r, f in enumerate(features):
            out[r, : len(f.target)] = f.target
        return out

    def decoder(self, spec: Any, state: Callable[[], Mapping[str, np.ndarray]], where: str = "") -> TagDecoder:
        from ..files import check_shapes

        scheme = check_scheme(spec.scheme or "BIO")
        tags = tag_set(spec.labels, scheme)
        weights = state()
        names = ("transitions", "start_transitions", "end_transitions")
        shapes = dict(zip(names, [(len(tags), len(tags)), (len(tags),), (len(tags),)]))
        check_shapes(where or spec.weights, spec.name, {f"crf.{k}": v for k, v in shapes.items()},
                     {f"crf.{k}": tuple(weights[f"crf.{k}"].shape) for k in names if f"crf.{k}" in weights})
        return TagDecoder(tags, scheme, *(np.asarray(weights[f"crf.{k}"], dtype=np.float32) for k in names))

    def decode(self, decoder: TagDecoder, output: np.ndarray, items: Sequence[Item]) -> list[Any]:
        lengths = np.array([len(it.ids) - 2 for it in items])
        width = int(lengths.max())
        if width == 0:
            return [[] for _ in items]
        breaks = np.zeros((len(items), width), dtype=bool)
        blocked = np.zeros((len(items), width), dtype=bool)
        for row, it in enumerate(items):
            breaks[row, : lengths[row]] = it.extra["breaks"]
            blocked[row, : lengths[row]] = it.extra["blocked"]
        return decoder.decode(output[:, 1 : 1 + width], lengths, breaks=breaks, blocked=blocked)

    def postprocess(self, decoder: Any, encoded: Encoded, pieces: list) -> list[Entity]:
        if not pieces:  # blank text: not run
            return self.blank()
        return merge_windows(encoded.norm, encoded.offsets, pieces)
