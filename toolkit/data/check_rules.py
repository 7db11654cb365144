"""The checks of ``toolkit data check``, one function each; :mod:`toolkit.data.check` runs them.

Every check takes a :class:`Corpus` (the examples of each split, train first) and returns a list
of :class:`Finding` (empty when there is nothing to report). A finding counts what it found and
keeps the first ``max_examples`` instances, each with the ``file:line`` it comes from (``source``)
and, where another example is involved (the first copy of a duplicate, the train text a dev text
repeats), that one's location in ``also``.

Example:
    >>> corpus = Corpus("cls", {"train": [TextExample("好", "pos", "a.tsv:2"), TextExample("好", "neg", "a.tsv:3")]})
    >>> [(f.check, f.count, f.examples[0]["source"]) for f in conflicting_labels(corpus)]
    [('conflicting_labels', 1, 'a.tsv:2')]
"""
from __future__ import annotations

import logging
import math
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Iterator, Literal, Sequence

import numpy as np

from toolkit.data.check_near import groups, jaccard, match_key, near_pairs, shingles
from toolkit.data.examples import NerExample, PairExample, TextExample  # noqa: F401 (TextExample: doctest)
from toolkit.data.sources import shorten
from toolkit.data.validation import example_key, flatten_examples

logger = logging.getLogger(__name__)

Severity = Literal["error", "warning", "info"]
MIN_CLASS = 5  # a class with fewer examples than this is "tiny"
TEXT_CHARS = 60  # characters of a text shown in an example
_WHERE = re.compile(r"^(.*?:\d+) \((.*)\)$")


@dataclass
class Finding:
    """One kind of problem: how often it occurs and where (the first instances)."""

    check: str
    severity: Severity
    title: str
    count: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def instance(source: str | None, text: str = "", detail: str = "", also: Sequence[str] = ()) -> dict[str, Any]:
    """One example of a finding: its ``file:line``, the text (shortened), what is wrong, related locations."""
    row: dict[str, Any] = {"source": source or "?", "text": shorten(text, TEXT_CHARS)}
    if detail:
        row["detail"] = detail
    if also:
        row["also"] = list(also)
    return row


def located(where: str) -> dict[str, Any]:
    """An instance from a :class:`~toolkit.data.validation.ReadReport` location ``"path:line (detail)"``.

    >>> located("a.txt:3 (16 15 pro)")
    {'source': 'a.txt:3', 'text': '', 'detail': '16 15 pro'}
    """
    m = _WHERE.match(where)
    return instance(m.group(1), detail=m.group(2)) if m else instance(where)


@dataclass
class Corpus:
    """The examples of each split (``train`` first) of one kind of data, and what the checks share."""

    kind: str
    splits: dict[str, list]
    max_examples: int = 5
    simplify: Any = None  # str -> str (t2s), set by the caller; None: texts are taken as they are

    def examples(self) -> Iterator[tuple[str, Any]]:
        for split, examples in self.splits.items():
            for ex in examples:
                yield split, ex

    @cached_property
    def texts(self) -> list[tuple[str, str, str]]:
        """Every text as ``(text, source, split)``; a pair gives both of its texts."""
        out = []
        for split, ex in self.examples():
            for text in (ex.text_a, ex.text_b) if isinstance(ex, PairExample) else (ex.text,):
                out.append((text, ex.source or "?", split))
        return out

    @cached_property
    def simplified(self) -> list[str]:
        """The texts of :attr:`texts` after ``t2s`` (the same texts when :attr:`simplify` is ``None``)."""
        convert = self.simplify or (lambda t: t)
        return [convert(text) for text, _, _ in self.texts]

    def labels(self, split: str) -> Counter:
        """Label counts of ``split``: span types for NER, else the example labels."""
        if self.kind == "ner":
            return Counter(s.label for ex in self.splits[split] for s in ex.spans)
        return Counter(ex.label for ex in self.splits[split])


# ------------------------------------------------------------------ labels


def label_findings(corpus: Corpus) -> list[Finding]:
    """Classes with fewer than :data:`MIN_CLASS` training examples; labels of dev/test that train lacks."""
    out = []
    train = corpus.labels("train")
    tiny = {label: n for label, n in sorted(train.items(), key=lambda kv: (kv[1], kv[0])) if n < MIN_CLASS}
    if tiny:
        places = _first_places(corpus, "train", set(tiny))
        out.append(Finding("tiny_classes", "warning", f"{len(tiny)} classes with fewer than {MIN_CLASS} training examples",
                           len(tiny), [instance(places[label][0], label, f"{n} in train", places[label][1:])
                                       for label, n in list(tiny.items())[: corpus.max_examples]], {"classes": tiny}))
    for split in corpus.splits:
        unseen = sorted(set(corpus.labels(split)) - set(train)) if split != "train" else []
        if unseen:
            places = _first_places(corpus, split, set(unseen))
            out.append(Finding("labels_missing_from_train", "error",
                               f"{len(unseen)} labels of {split} never occur in train (a model cannot predict them)",
                               len(unseen), [instance(places[label][0], label, f"only in {split}")
                                             for label in unseen[: corpus.max_examples]], {"split": split, "labels": unseen}))
    return out


def _first_places(corpus: Corpus, split: str, labels: set[str], n: int = 3) -> dict[str, list[str]]:
    places: dict[str, list[str]] = defaultdict(list)
    for ex in corpus.splits[split]:
        for label in {s.label for s in ex.spans} if corpus.kind == "ner" else {ex.label}:
            if label in labels and len(places[label]) < n:
                places[label].append(ex.source or "?")
    return places


def _annotation(ex: Any) -> Any:
    if isinstance(ex, NerExample):
        return frozenset(s.as_tuple() for s in ex.spans)
    return ex.label


def _show(ex: Any) -> str:
    if isinstance(ex, NerExample):
        return "{" + ", ".join(f"{ex.text[s.start:s.end]}/{s.label}" for s in ex.spans) + "}"
    return ex.label


def conflicting_labels(corpus: Corpus) -> list[Finding]:
    """The same text (pair of texts) with different labels, or for NER different span sets, across all splits."""
    seen: dict[Any, list] = defaultdict(list)
    for _, ex in corpus.examples():
        seen[example_key(ex)].append(ex)
    conflicts = [exs for exs in seen.values() if len({_annotation(ex) for ex in exs}) > 1]
    if not conflicts:
        return []
    what = "different entity spans" if corpus.kind == "ner" else "different labels"
    examples = []
    for exs in conflicts[: corpus.max_examples]:
        first = exs[0]
        text = first.text if not isinstance(first, PairExample) else f"{first.text_a} | {first.text_b}"
        detail = " vs ".join(dict.fromkeys(_show(ex) for ex in exs))
        examples.append(instance(first.source, text, detail, [f"{ex.source} ({_show(ex)})" for ex in exs[1:]]))
    return [Finding("conflicting_labels", "error", f"{len(conflicts)} texts occur with {what}", len(conflicts),
                    examples, {"examples_involved": sum(len(exs) for exs in conflicts)})]


# ------------------------------------------------------------------ NER surface forms


def surface_findings(corpus: Corpus, min_tagged: int = 3) -> list[Finding]:
    """NER: mentions tagged with several types across the corpus (``发热: sym 412, dis 3``), and
    forms tagged in most of their occurrences but left untagged in some texts; spans that overlap
    (a flat tagger keeps only one of them)."""
    if corpus.kind != "ner":
        return []
    types: dict[str, Counter] = defaultdict(Counter)
    where: dict[tuple[str, str], str] = {}
    for _, ex in corpus.examples():
        for s in ex.spans:
            form = ex.text[s.start:s.end]
            types[form][s.label] += 1
            where.setdefault((form, s.label), ex.source or "?")
    out = []
    mixed = {form: c for form, c in types.items() if len(c) > 1}
    if mixed:
        ranked = sorted(mixed, key=lambda f: (-(sum(mixed[f].values()) - max(mixed[f].values())), f))
        rows = []
        for form in ranked[: corpus.max_examples]:
            (major, _), *minor = mixed[form].most_common()
            rows.append(instance(where[(form, minor[0][0])], form, ", ".join(f"{t} {n}" for t, n in mixed[form].most_common()),
                                 [where[(form, t)] + f" ({t})" for t, _ in [(major, 0)] + minor[1:]]))
        out.append(Finding("surface_form_types", "warning", f"{len(mixed)} mentions are tagged with more than one type",
                           len(mixed), rows, {"forms": {f: dict(mixed[f].most_common()) for f in ranked[:50]}}))
    out += _untagged(corpus, {form: sum(c.values()) for form, c in types.items() if len(form) >= 2}, min_tagged)
    flat, report = flatten_examples(corpus.splits["train"])
    if report.dropped_spans:
        n = sum(report.dropped_spans.values())
        places = report.where.get("span overlaps a kept span", [])
        out.append(Finding("nested_spans", "info", f"{n} training spans overlap a longer one; a flat (CRF) tagger drops "
                           "them in training (evaluation keeps them)", n,
                           [located(p) for p in places[: corpus.max_examples]], {"dropped": dict(report.dropped_spans)}))
    return out


def _untagged(corpus: Corpus, tagged: dict[str, int], min_tagged: int) -> list[Finding]:
    """Occurrences of tagged forms (tagged at least ``min_tagged`` times) that touch no span of their text."""
    index: dict[str, list[str]] = defaultdict(list)
    for form, n in tagged.items():
        if n >= min_tagged:
            index[form[:2]].append(form)
    untagged: Counter = Counter()
    where: dict[str, str] = {}
    for _, ex in corpus.examples():
        text = ex.text
        covered = bytearray(len(text) + 1)
        for s in ex.spans:
            covered[s.start:s.end] = b"\x01" * (s.end - s.start)
        for i in range(len(text) - 1):
            for form in index.get(text[i:i + 2], ()):
                if text.startswith(form, i) and not any(covered[i:i + len(form)]):
                    untagged[form] += 1
                    where.setdefault(form, ex.source or "?")
    suspicious = {f: n for f, n in untagged.items() if tagged[f] >= n}
    if not suspicious:
        return []
    ranked = sorted(suspicious, key=lambda f: (-suspicious[f], f))
    rows = [instance(where[f], f, f"tagged {tagged[f]}, untagged {suspicious[f]}") for f in ranked[: corpus.max_examples]]
    return [Finding("untagged_mentions", "info", f"{len(suspicious)} mentions tagged in most of their occurrences are "
                    f"untagged in others ({sum(suspicious.values())} occurrences)", len(suspicious), rows,
                    {"forms": {f: {"tagged": tagged[f], "untagged": suspicious[f]} for f in ranked[:50]}})]


# ------------------------------------------------------------------ duplicates and overlap


def _key_text(ex: Any) -> str:
    return f"{ex.text_a} | {ex.text_b}" if isinstance(ex, PairExample) else ex.text


def duplicate_findings(corpus: Corpus, threshold: float = 0.9, k: int = 5) -> list[Finding]:
    """Exact and near duplicates inside each split, and train/dev/test overlap (exact and near).

    *Near*: equal after :func:`~toolkit.data.check_near.match_key`, or character ``k``-gram Jaccard
    of the keys at least ``threshold`` (MinHash LSH, every pair verified).
    """
    items = list(corpus.examples())
    simplified = iter(corpus.simplified)
    keys = []
    for _, ex in items:  # corpus.texts order: one text per example, two per pair
        parts = [next(simplified) for _ in range(2 if isinstance(ex, PairExample) else 1)]
        keys.append("\x1f".join(match_key(p) for p in parts))
    unique = list(dict.fromkeys(keys))
    position = {key: i for i, key in enumerate(unique)}
    links = [(i, j) for i, j, _ in near_pairs(unique, threshold=threshold, k=k)]
    cluster = list(range(len(unique)))
    for members in groups(len(unique), links):
        for m in members:
            cluster[m] = members[0]
    first_exact: dict[tuple[str, Any], int] = {}
    first_near: dict[tuple[str, int], int] = {}
    found: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)  # (check, split) -> (item, earlier item)
    splits = list(corpus.splits)
    for n, (split, ex) in enumerate(items):
        raw, near = example_key(ex), cluster[position[keys[n]]]
        for other in splits[: splits.index(split) + 1]:
            same = other == split
            exact = first_exact.get((other, raw))
            if exact is not None and exact != n:
                found[("exact_duplicates" if same else "overlap", f"{split}" if same else f"{other}/{split}")].append((n, exact))
                continue
            earlier = first_near.get((other, near))
            if earlier is not None and earlier != n:
                found[("near_duplicates" if same else "near_overlap", f"{split}" if same else f"{other}/{split}")].append((n, earlier))
        first_exact.setdefault((split, raw), n)
        first_near.setdefault((split, near), n)
    out = []
    titles = {"exact_duplicates": ("warning", "examples of {b} repeat an earlier {b} text"),
              "near_duplicates": ("info", "examples of {b} nearly repeat an earlier {b} text (equal after normalising, "
                                          f"or {k}-gram Jaccard >= {threshold})"),
              "overlap": ("error", "examples of {b} also occur in {a}"),
              "near_overlap": ("warning", "examples of {b} nearly repeat a text of {a}")}
    for (check, where), pairs in sorted(found.items(), key=lambda kv: list(titles).index(kv[0][0])):  # stable: train/dev first
        severity, title = titles[check]
        a, _, b = where.rpartition("/")
        title = title.format(a=a, b=b)
        rows = []
        for n, m in pairs[: corpus.max_examples]:
            detail = ""
            if check.startswith("near"):
                ka, kb = keys[n], keys[m]
                detail = "equal after normalising" if ka == kb else f"{k}-gram Jaccard {jaccard(shingles(ka, k), shingles(kb, k)):.2f}"
            if _annotation(items[n][1]) != _annotation(items[m][1]):
                detail = (detail + "; " if detail else "") + f"labels differ: {_show(items[n][1])} vs {_show(items[m][1])}"
            rows.append(instance(items[n][1].source, _key_text(items[n][1]), detail, [items[m][1].source or "?"]))
        differ = sum(_annotation(items[n][1]) != _annotation(items[m][1]) for n, m in pairs)
        out.append(Finding(check, severity, f"{len(pairs)} {title}", len(pairs), rows,
                           {"splits": where, "labels_differ": differ}))
    return out


# ------------------------------------------------------------------ lengths


def length_findings(corpus: Corpus, token_lengths: list[int] | None = None, max_length: int | None = None) -> list[Finding]:
    """Texts far longer than the rest (Tukey far-out fence over characters) and, with a model, texts
    whose tokens exceed its ``max_length`` (NER: split into windows; cls/pair: truncated)."""
    items = list(corpus.examples())
    chars = [len(ex.text_a) + len(ex.text_b) if isinstance(ex, PairExample) else len(ex.text) for _, ex in items]
    fence = upper_fence([c for (split, _), c in zip(items, chars) if split == "train"])
    out = []
    long = sorted((i for i, c in enumerate(chars) if c > fence), key=lambda i: -chars[i])
    if long:
        rows = [instance(items[i][1].source, _key_text(items[i][1]), f"{chars[i]} chars") for i in long[: corpus.max_examples]]
        out.append(Finding("length_outliers", "info", f"{len(long)} texts longer than {fence:.0f} characters "
                           "(train Q3 + 3 IQR)", len(long), rows, {"fence": round(fence, 1)}))
    if token_lengths is not None and max_length:
        over = sorted((i for i, n in enumerate(token_lengths) if n > max_length), key=lambda i: -token_lengths[i])
        if over:
            ner = corpus.kind == "ner"
            what = "split into windows (entities across a cut are learnt in part)" if ner else "truncated (the rest is not seen)"
            rows = [instance(items[i][1].source, _key_text(items[i][1]), f"{token_lengths[i]} tokens") for i in over[: corpus.max_examples]]
            out.append(Finding("over_max_length", "info" if ner else "warning",
                               f"{len(over)} examples exceed the model's {max_length} tokens and are {what}", len(over), rows,
                               {"max_length": max_length, "by_split": dict(Counter(items[i][0] for i in over))}))
    return out


def upper_fence(lengths: Sequence[int]) -> float:
    """Tukey's far-out fence ``Q3 + 3 * IQR`` (at least Q3 + 1, so equal lengths have no outliers).

    >>> upper_fence([10, 11, 12, 13])
    16.75
    """
    if not len(lengths):
        return math.inf
    q1, q3 = np.percentile(lengths, [25, 75])
    return float(q3 + max(3 * (q3 - q1), 1.0))


def length_stats(lengths: Sequence[int]) -> dict[str, float]:
    """``{"p50", "p95", "p99", "max"}`` of ``lengths`` (all 0 when empty)."""
    if not len(lengths):
        return {"p50": 0, "p95": 0, "p99": 0, "max": 0}
    p50, p95, p99 = np.percentile(lengths, [50, 95, 99])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "p99": round(float(p99), 1), "max": int(max(lengths))}


def length_summary(corpus: Corpus) -> dict[str, dict[str, float]]:
    """Character-length percentiles per split (pairs: both texts together)."""
    return {split: length_stats([len(ex.text_a) + len(ex.text_b) if isinstance(ex, PairExample) else len(ex.text) for ex in exs])
            for split, exs in corpus.splits.items()}


__all__ = ["Corpus", "Finding", "MIN_CLASS", "Severity", "conflicting_labels", "duplicate_findings", "instance",
           "label_findings", "length_findings", "length_stats", "length_summary", "located", "surface_findings", "upper_fence"]
