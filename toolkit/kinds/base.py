"""What a head kind is: the one object that owns everything kind-specific, without torch.

A head kind (tagger, classifier, matcher, span ...) says which data it trains on, what its model
input is (one text or a pair), how an example becomes a training feature (with the same text
encoding the pipelines use: :mod:`toolkit.text.encode`), how its head's output becomes results
(numpy decoder, window policy, merging of windows, the answer for blank text), how results are
scored, and how its output looks in an ONNX graph. Its torch module (the head) lives in
:mod:`toolkit.heads` and is named by ``head`` (``"module:Class"``), imported only when a model is
built, so nothing here imports torch.

The pipeline, training, evaluation, export, fine-tuning and vocabulary code ask the kind; none of
them tests a kind's name. A new kind is a subclass of :class:`HeadKind` plus its head class, and one
line: ``toolkit.kinds.register(MyKind())``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from ..text.encode import Encoded


@dataclass
class Feature:
    """One training sequence: ``ids`` with specials; ``target`` as the kind makes it (tag ids of the
    word tokens, a label id, spans ...); ``segments`` for pair inputs (1 = a, 2 = b, 0 = special)."""

    ids: np.ndarray
    target: Any
    segments: np.ndarray | None = None


@dataclass
class Item:
    """One model input at inference: a window of a text (or a pair); ``text`` indexes the call's
    inputs, ``extra`` holds per-token arrays a kind's decoder reads (e.g. entity boundaries)."""

    text: int
    ids: np.ndarray
    segments: np.ndarray | None = None
    window: Any = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)


class HeadKind:
    """Base class of head kinds; subclasses set the class attributes and override the methods.

    Attributes:
        name: the kind's name in manifests and recipes (``kind: tagger``).
        head: ``"module:Class"`` of its torch head, built from ``(hidden_size, labels, **options)``
            (or the class itself, for a kind defined in user code).
        data: the examples it trains on and the ``toolkit train`` word for them: ``"ner"``
            (texts with spans), ``"cls"`` (labelled texts) or ``"pair"`` (labelled pairs).
        default_for_data: this kind is what ``toolkit train <data>`` trains unless told otherwise.
        input: ``"text"`` or ``"pair"`` (``[CLS] a [SEP] b [SEP]`` with segments).
        every_window: run on every window of a long text (else only on the first window).
        per_token: its output has a sequence axis (``[B, L, ...]``).
        metric: the headline metric :meth:`score` reports as ``main``.
        feature_options: recipe settings :meth:`features` takes (a tagger's ``flatten``).
        tuned_options: head options :meth:`tune` chooses on dev (a span head's ``threshold``): a
            model continued with another value keeps its trained head.
    """

    name: ClassVar[str]
    head: ClassVar[Any]
    data: ClassVar[str]
    default_for_data: ClassVar[bool] = False
    input: ClassVar[str] = "text"
    every_window: ClassVar[bool] = False
    per_token: ClassVar[bool] = False
    metric: ClassVar[str]
    feature_options: ClassVar[tuple[str, ...]] = ()  # recipe settings its features() takes (e.g. "flatten")
    new_head_options: ClassVar[dict[str, Any]] = {}  # options of a head that `toolkit train <data>` makes
    graph_options: ClassVar[tuple[str, ...]] = ()  # head options baked into an exported graph (a change makes it stale)
    tuned_options: ClassVar[tuple[str, ...]] = ()  # decoding options :meth:`tune` chooses on dev (not the weights' shape)

    # ---------------------------------------------------------------- manifest and head
    def spec_defaults(self, spec: Any) -> None:
        """Fill defaults a task spec of this kind needs (e.g. a tagger's scheme); may change ``spec``.
        Kinds without tag schemes drop a scheme given by mistake."""
        spec.scheme = None

    def head_options(self, spec: Any) -> dict[str, Any]:
        """Keyword options of the head's constructor from a task spec."""
        return dict(spec.options)

    def infer_labels(self, examples: Sequence) -> list[str]:
        """Labels of a new head from its training examples."""
        return sorted({ex.label for ex in examples}, key=lambda x: (len(x), x))

    def label_counts(self, examples: Sequence) -> dict[str, int]:
        """How often each label occurs in ``examples`` (data reports)."""
        from collections import Counter

        return dict(Counter(ex.label for ex in examples).most_common())

    # ---------------------------------------------------------------- training
    def features(self, examples: Sequence, encoded: Sequence, spec: Any, max_length: int, tokenizer, report: Any) -> list[Feature]:
        """Training features of ``examples``; ``encoded`` is the shared preprocessing of their
        texts (:func:`toolkit.text.encode.encode_texts`, or ``encode_pairs`` for pair kinds)."""
        raise NotImplementedError

    def targets(self, features: Sequence[Feature], length: int) -> np.ndarray:
        """The padded numpy targets of a batch whose sequences are ``length`` long."""
        return np.array([int(f.target) for f in features], dtype=np.int64)

    # ---------------------------------------------------------------- inference
    def decoder(self, spec: Any, state: Callable[[], Mapping[str, np.ndarray]], where: str = "") -> Any:
        """The numpy decoder of a head. ``state()`` returns the head's weights as numpy arrays
        (read from the folder or from a live head) for kinds whose decoding needs some; ``where``
        names their file in error messages."""
        raise NotImplementedError

    def token_arrays(self, encoded: Encoded) -> dict[str, np.ndarray]:
        """Per-token arrays over the whole text that :meth:`decode` reads (sliced per window into
        ``Item.extra``), e.g. entity-boundary constraints; default: none."""
        return {}

    def stack(self, outputs: list[np.ndarray]) -> np.ndarray:
        """Concatenate the head's outputs of several batches along the batch axis; outputs with a
        sequence axis (axis 1) are zero-padded to the longest first (decoders read each row up to
        its own length). Kinds whose sequence axes sit elsewhere override this."""
        if len(outputs) == 1:
            return outputs[0]
        if self.per_token:
            width = max(o.shape[1] for o in outputs)
            outputs = [np.pad(o, [(0, 0), (0, width - o.shape[1])] + [(0, 0)] * (o.ndim - 2)) for o in outputs]
        return np.concatenate(outputs, axis=0)

    def decode(self, decoder: Any, output: np.ndarray, items: Sequence[Item]) -> list[Any]:
        """One decoded piece per item, from the stacked head output of those items."""
        return list(output)

    def postprocess(self, decoder: Any, encoded: Encoded, pieces: list[tuple[Any, Any]]) -> Any:
        """The result for one text from its ``(window, piece)`` list (empty for blank text)."""
        raise NotImplementedError

    def blank(self) -> Any:
        """The result for a text (or pair) with no tokens: it is not run through the model."""
        raise NotImplementedError

    def tune(self, outputs_at: Callable[[dict[str, Any]], list], examples: Sequence) -> dict[str, Any]:
        """Decoding options chosen on dev ``examples`` (e.g. a span head's threshold), or ``{}``.
        ``outputs_at(overrides)`` returns the head's results on the examples decoded with those
        option overrides; training calls this before each evaluation and saves what it returns
        in the head's options."""
        return {}

    # ---------------------------------------------------------------- evaluation
    def comparable(self, outputs: Sequence) -> list:
        """Pipeline results in a form that compares and scores (e.g. sorted span tuples, labels)."""
        return [r["label"] for r in outputs]

    def gold(self, examples: Sequence) -> list:
        """The gold answers of ``examples`` in :meth:`comparable` form."""
        return [ex.label for ex in examples]

    def labels_in(self, comparable: Sequence) -> list:
        """The labels that answers in :meth:`comparable` form (predictions or :meth:`gold`) use."""
        return list(comparable)

    def pipeline_inputs(self, examples: Sequence) -> list:
        """What the pipeline is called with for ``examples`` (texts, or pairs)."""
        return [ex.text for ex in examples]

    def score(self, predictions: Sequence, examples: Sequence) -> dict[str, Any]:
        """Scores of :meth:`comparable` predictions against ``examples``: ``metric``, ``main`` and the details."""
        return self.score_gold(predictions, self.gold(examples))

    def score_gold(self, predictions: Sequence, gold: Sequence) -> dict[str, Any]:
        """:meth:`score` against answers already in :meth:`comparable` form: :meth:`gold`'s, or another
        runtime's predictions taken as gold (how :mod:`toolkit.runtime.auto` checks bf16 and int8)."""
        raise NotImplementedError

    def confidence(self, outputs: Sequence, examples: Sequence) -> tuple[dict[str, Any], list[tuple[float, bool]]]:
        """``(per-class P/R/F1, [(confidence, correct), ...])`` of raw outputs (calibration)."""
        from .metrics import per_class_prf

        per_class = per_class_prf([p["label"] for p in outputs], [ex.label for ex in examples])
        return per_class, [(p["score"], p["label"] == ex.label) for p, ex in zip(outputs, examples) if p["score"] is not None]

    # ---------------------------------------------------------------- export
    def onnx_axes(self) -> dict[int, str]:
        """Dynamic axes of the kind's output in an ONNX graph."""
        return {0: "batch", 1: "sequence"} if self.per_token else {0: "batch"}
