"""The ``classifier`` (one text -> a label) and ``matcher`` (a pair of texts -> a label) kinds.

Both answer a :class:`~toolkit.results.Label` (``label``, ``score``, ``scores``: softmax of the
head's logits, :class:`toolkit.kinds.decoding.LabelDecoder`) and are scored by accuracy and macro-F1.
A classifier reads the first window of a text, in training as at inference (texts longer than
the model are cut at the last sentence end that fits, else at ``max_length``); a matcher reads
``[CLS] a [SEP] b [SEP]`` truncated longest-first.
"""
from __future__ import annotations

from typing import Any, Sequence

from .decoding import LabelDecoder
from ..text.encode import Encoded
from .base import Feature, HeadKind


def label_index(ex: Any, labels: Sequence[str]) -> int:
    if ex.label not in labels:
        raise ValueError(f"{ex.source or 'example'}: label {ex.label!r} is not one of the head's labels {list(labels)}")
    return list(labels).index(ex.label)


class LabelKind(HeadKind):
    """What the two label kinds share: decoder, blank answer, scoring."""

    def decoder(self, spec: Any, state: Any, where: str = "") -> LabelDecoder:
        return LabelDecoder(spec.labels)

    def blank(self) -> Any:
        return LabelDecoder.blank()

    def postprocess(self, decoder: LabelDecoder, encoded: Encoded | None, pieces: list) -> Any:
        """The label of the first window (as in training), or of the pair; blank if nothing ran."""
        if not pieces:
            return self.blank()
        logits = pieces[0][1] if len(pieces) == 1 else min(pieces, key=lambda p: p[0].start)[1]
        return decoder.decode(logits[None])[0]

    def score_gold(self, predictions: Sequence, gold: Sequence) -> dict[str, Any]:
        from .metrics import classification_scores

        scores = classification_scores(list(predictions), list(gold))
        return {"metric": self.metric, "main": scores[self.metric], **scores}


class ClassifierKind(LabelKind):
    """Text classification from ``[CLS]`` or mean-pooled tokens (options: ``pooling``, ``dropout``, ``focal_gamma``)."""

    name = "classifier"
    head = "toolkit.heads.classifier:ClassifierHead"
    data = "cls"
    default_for_data = True
    metric = "accuracy"
    # New heads pool the mean of the tokens: it works for every BERT-family encoder, and the [CLS]
    # output of mean-pooling-pretrained encoders such as e5 carries almost no signal.
    new_head_options = {"pooling": "mean"}

    def features(self, examples, encoded: Sequence[Encoded], spec, max_length, tokenizer, report) -> list[Feature]:
        out = []
        for ex, enc in zip(examples, encoded):
            target = label_index(ex, spec.labels)
            report.counts["examples"] += 1
            out.append(Feature(enc.windows[0][1], target))  # the first window, as the pipeline reads it
        return out



class MatcherKind(LabelKind):
    """Sentence-pair classification (similarity, entailment ...): ``[CLS] + mean(a) + mean(b)`` -> MLP."""

    name = "matcher"
    head = "toolkit.heads.matcher:MatcherHead"
    data = "pair"
    default_for_data = True
    input = "pair"
    metric = "macro_f1"

    def features(self, examples, encoded, spec, max_length, tokenizer, report) -> list[Feature]:
        out = []
        for ex, (ids, segments, _) in zip(examples, encoded):
            out.append(Feature(ids, label_index(ex, spec.labels), segments))
            report.counts["examples"] += 1
        return out

    def pipeline_inputs(self, examples: Sequence) -> list:
        return [(ex.text_a, ex.text_b) for ex in examples]


__all__ = ["ClassifierKind", "MatcherKind", "LabelKind"]
