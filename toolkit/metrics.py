"""Evaluation metrics: strict span P/R/F1 (micro, per type), accuracy, macro-/micro-F1.

Example:
    >>> span_prf([[(0, 2, "PER")]], [[(0, 2, "PER"), (3, 4, "LOC")]])["micro"]["f1"]
    0.6667
"""
from __future__ import annotations

from collections import Counter
from typing import Hashable, Iterable, Sequence


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
    labels = sorted(set(gold) | set(pred), key=str)
    f1s = []
    for lab in labels:
        tp = sum(p == lab and g == lab for p, g in zip(pred, gold))
        f1s.append(_prf(tp, sum(p == lab for p in pred), sum(g == lab for g in gold))["f1"])
    acc = correct / len(gold)
    return {"accuracy": round(acc, 4), "macro_f1": round(sum(f1s) / len(f1s), 4), "micro_f1": round(acc, 4), "n": len(gold)}
