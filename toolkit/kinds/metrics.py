"""Evaluation metrics: strict span P/R/F1 (micro, per type), accuracy, macro-/micro-F1, per-class
P/R/F1, and the calibration of confidences (histogram, correct-wrong gap, expected calibration error).

Example:
    >>> span_prf([[(0, 2, "PER")]], [[(0, 2, "PER"), (3, 4, "LOC")]])["micro"]["f1"]
    0.6667
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Hashable, Iterable, Sequence


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "support": n_gold}


def span_prf(pred: Iterable[Iterable[tuple]], gold: Iterable[Iterable[tuple]]) -> dict:
    """Strict span match: a predicted ``(start, end, label)`` counts only if gold has exactly it.

    Duplicates within one text count once. Returns ``{"micro": {...}, "per_type": {label: {...}}}``.
    """
    tp, n_pred, n_gold = Counter(), Counter(), Counter()
    for p_spans, g_spans in zip(pred, gold, strict=True):
        p_set, g_set = set(map(tuple, p_spans)), set(map(tuple, g_spans))
        for s in p_set:
            n_pred[s[2]] += 1
        for s in g_set:
            n_gold[s[2]] += 1
        for s in p_set & g_set:
            tp[s[2]] += 1
    labels = sorted(set(n_pred) | set(n_gold))
    return {
        "micro": _prf(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values())),
        "per_type": {lab: _prf(tp[lab], n_pred[lab], n_gold[lab]) for lab in labels},
    }


def classification_scores(pred: Sequence[Hashable], gold: Sequence[Hashable]) -> dict[str, float]:
    """Accuracy, macro-F1 (mean over gold and predicted labels) and micro-F1 (= accuracy here)."""
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions for {len(gold)} gold labels")
    if not gold:
        return {"accuracy": 0.0, "macro_f1": 0.0, "micro_f1": 0.0, "n": 0}
    correct = sum(p == g for p, g in zip(pred, gold))
    f1s = [s["f1"] for s in per_class_prf(pred, gold).values()]
    acc = correct / len(gold)
    return {"accuracy": round(acc, 4), "macro_f1": round(sum(f1s) / len(f1s), 4), "micro_f1": round(acc, 4), "n": len(gold)}


def per_class_prf(pred: Sequence[Hashable], gold: Sequence[Hashable]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each label (gold or predicted) of a classification.

    >>> per_class_prf(["pos", "pos", "neg"], ["pos", "neg", "neg"])["neg"]
    {'precision': 1.0, 'recall': 0.5, 'f1': 0.6667, 'support': 2}
    """
    tp, n_pred, n_gold = Counter(p for p, g in zip(pred, gold, strict=True) if p == g), Counter(pred), Counter(gold)
    return {str(lab): _prf(tp[lab], n_pred[lab], n_gold[lab]) for lab in sorted(set(gold) | set(pred), key=str)}


def calibration(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> dict[str, Any]:
    """How far confidences can be trusted: histograms of the confidences of correct and of wrong
    predictions over ``bins`` equal bins of [0, 1], the mean confidence of each, their ``gap``
    (correct minus wrong; None unless both occur) and the expected calibration error ``ece``
    (sum over bins of ``n_bin / n * |accuracy_bin - mean confidence_bin|``).

    >>> c = calibration([0.95, 0.9, 0.6, 0.3], [True, True, False, False])
    >>> c["gap"], c["ece"], c["hist"]
    (0.475, 0.2625, [0, 0, 0, 1, 0, 0, 1, 0, 0, 2])
    """
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences for {len(correct)} correctness flags")
    n = len(confidences)
    which = [min(int(c * bins), bins - 1) for c in confidences]
    hist_ok, hist_bad, conf_sum = [0] * bins, [0] * bins, [0.0] * bins
    for b, c, ok in zip(which, confidences, correct):
        (hist_ok if ok else hist_bad)[b] += 1
        conf_sum[b] += c
    ece = sum(abs(hist_ok[b] - conf_sum[b]) for b in range(bins)) / n if n else None
    right = [c for c, ok in zip(confidences, correct) if ok]
    wrong = [c for c, ok in zip(confidences, correct) if not ok]
    mean_ok = sum(right) / len(right) if right else None
    mean_bad = sum(wrong) / len(wrong) if wrong else None
    gap = mean_ok - mean_bad if mean_ok is not None and mean_bad is not None else None
    return {"n": n, "hist": [a + b for a, b in zip(hist_ok, hist_bad)], "hist_correct": hist_ok, "hist_wrong": hist_bad,
            "mean_correct": _r(mean_ok), "mean_wrong": _r(mean_bad), "gap": _r(gap), "ece": _r(ece)}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
