"""Checking corpora: located errors, counted repairs, and split hygiene.

Three kinds of trouble, handled differently:

* **Malformed input** (a line a reader cannot parse, bytes that are not UTF-8, broken JSON) raises
  :class:`CorpusError` at once, naming the file, the line number, the line and what was expected.
* **Bad annotations** in well-formed input (``I-X`` without ``B-X``, an unknown tag, a span outside
  its text or not matching its stated mention, an empty text, a missing label) are *counted* in a
  :class:`ReadReport`: repaired or skipped with one warning summary (default), or refused with one
  :class:`CorpusError` listing them all (``strict=True``). Nothing is dropped silently.
* **Split hygiene**: :func:`duplicates`, :func:`overlap` and :func:`flatten_examples` (nested spans to
  the flat spans a CRF tagger needs, counting what it drops per label).

Readers report through a :class:`ReadReport` and hand their examples out through an
:class:`ExampleStream` (lazily, one pass; ``collect()`` gives the list). The low-level loaders
(:func:`read_text`, :func:`iter_json_records`, :class:`CorpusError`) live in
:mod:`toolkit.data.sources` and are importable from here as before.

Example:
    >>> report = ReadReport("train.txt")
    >>> report.skip("empty text", "train.txt:3")
    >>> report.skipped["empty text"]
    1
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence, Union

from toolkit.data.examples import NerExample, PairExample, Span, TextExample
from toolkit.data.sources import (MAX_LINE_CHARS, CorpusError, decode, iter_json_records, location,  # noqa: F401
                                  read_text, shorten, split_lines, zip_member)
from toolkit.errors import InputError
from toolkit.text.tags import flatten_spans

logger = logging.getLogger(__name__)

Example = Union[NerExample, TextExample, PairExample]


@dataclass
class ReadReport:
    """What a reader found: counts of examples, labels, repairs and skipped items, with locations.

    ``records`` is how many records (lines, sentences, JSON objects) were read and ``examples`` how
    many were returned. ``repaired`` and ``skipped`` map a problem (``"empty text"``, ``"tags: inside without begin"``)
    to how often it occurred; ``omitted`` counts items left out by design (OCNLI's ``-`` label means
    "no gold label"); ``where`` keeps the first few ``path:line`` locations of each problem.
    """

    source: str = ""
    records: int = 0
    examples: int = 0
    spans: int = 0
    labels: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    omitted: Counter = field(default_factory=Counter)
    dropped_spans: Counter = field(default_factory=Counter)
    duplicates: int = 0
    where: dict[str, list[str]] = field(default_factory=dict)
    max_locations: int = 5
    _seen: set = field(default_factory=set, init=False, repr=False, compare=False)

    def _note(self, counter: Counter, problem: str, where: str, detail: str, n: int) -> None:
        counter[problem] += n
        places = self.where.setdefault(problem, [])
        if len(places) < self.max_locations:
            places.append(f"{where} ({detail})" if detail else where)

    def repair(self, problem: str, where: str, detail: str = "", n: int = 1) -> None:
        """Count a problem that was repaired (the item is kept in a corrected form)."""
        self._note(self.repaired, problem, where, detail, n)

    def skip(self, problem: str, where: str, detail: str = "", n: int = 1) -> None:
        """Count a problem whose item (an example or a span) was left out."""
        self._note(self.skipped, problem, where, detail, n)

    def omit(self, reason: str, where: str, n: int = 1) -> None:
        """Count an item left out by design (not a defect; strict mode accepts it)."""
        self._note(self.omitted, reason, where, "", n)

    @property
    def problems(self) -> int:
        """Number of repaired plus skipped items (omitted items are not problems)."""
        return sum(self.repaired.values()) + sum(self.skipped.values())

    def merge(self, other: ReadReport) -> ReadReport:
        """Add ``other``'s counts to this report (to sum over several files); returns ``self``."""
        self.records += other.records
        self.examples += other.examples
        self.spans += other.spans
        self.duplicates += other.duplicates
        for mine, theirs in ((self.labels, other.labels), (self.repaired, other.repaired),
                             (self.skipped, other.skipped), (self.omitted, other.omitted),
                             (self.dropped_spans, other.dropped_spans)):
            mine.update(theirs)
        for problem, places in other.where.items():
            mine_places = self.where.setdefault(problem, [])
            mine_places.extend(places[: max(0, self.max_locations - len(mine_places))])
        return self

    def summary(self) -> str:
        """A few human-readable lines: counts, then each problem with its first locations."""
        head = f"{self.source}: {self.examples} examples from {self.records} records"
        if self.spans:
            head += f", {self.spans} spans"
        if self.duplicates:
            head += f", {self.duplicates} duplicate texts"
        lines = [head]
        for title, counter in (("repaired", self.repaired), ("skipped", self.skipped),
                               ("omitted", self.omitted)):
            for problem, n in sorted(counter.items()):
                places = ", ".join(self.where.get(problem, []))
                lines.append(f"  {title} {n} x {problem}" + (f": {places}" if places else ""))
        if self.dropped_spans:
            lines.append("  flattening dropped spans: " + ", ".join(
                f"{label} {n}" for label, n in self.dropped_spans.most_common()))
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """Plain-data form (for JSON logs and benchmark records)."""
        return {"source": self.source, "records": self.records, "examples": self.examples, "spans": self.spans,
                "labels": dict(self.labels), "repaired": dict(self.repaired),
                "skipped": dict(self.skipped), "omitted": dict(self.omitted),
                "dropped_spans": dict(self.dropped_spans), "duplicates": self.duplicates,
                "where": {k: list(v) for k, v in self.where.items()}}

    def add(self, example: Example) -> None:
        """Count one returned example: its spans or label, and whether its text repeats an earlier one.

        Repeats are found by the texts' 64-bit hashes, so a stream does not keep every text alive.
        """
        self.examples += 1
        if isinstance(example, NerExample):
            self.spans += len(example.spans)
            for span in example.spans:
                self.labels[span.label] += 1
        else:
            self.labels[example.label] += 1
        key = hash(example_key(example))
        if key in self._seen:
            self.duplicates += 1
        else:
            self._seen.add(key)

    def close(self, strict: bool = False) -> None:
        """The end of a read: refuse (``strict``) or warn once when anything was repaired or skipped.

        Raises :class:`CorpusError` in strict mode when anything was repaired or skipped.
        """
        self._seen = set()
        if not self.problems:
            return
        if strict:
            raise CorpusError(
                f"{self.problems} annotation problems (strict mode refuses them)\n{self.summary()}",
                hint="fix the lines listed above, or read with strict=False to repair or skip them "
                     "(each one stays counted in the returned report)")
        logger.warning("%s\n  (repaired/skipped items are counted in the returned ReadReport; "
                       "pass strict=True to refuse them)", self.summary())

    def finish(self, examples: Sequence[Example], strict: bool = False, records: int | None = None) -> None:
        """Fill the totals from all ``examples`` (and ``records`` read), then :meth:`close`."""
        self.examples = self.spans = self.duplicates = 0
        self.labels = Counter()
        self._seen = set()
        for ex in examples:
            self.add(ex)
        self.records = len(examples) if records is None else records
        self.close(strict)


class ExampleStream:
    """The examples of one corpus file, read lazily in one pass; ``report`` is complete at the end.

    ``produce(path, report, **options)`` is a reader's generator: it yields examples and counts
    records and problems in ``report``. Iterate a stream once (it reads the file as you go, so
    memory stays flat), or call :meth:`collect` for ``(list, report)``. Malformed lines raise
    :class:`CorpusError` when they are reached; ``strict=True`` raises at the end of the file if
    anything was repaired or skipped.

    >>> stream = iter_examples("big.bio", "columns", scheme="BIO")   # doctest: +SKIP
    >>> n = sum(len(ex.text) for ex in stream)                       # doctest: +SKIP
    >>> stream.report.examples                                       # doctest: +SKIP
    """

    def __init__(self, produce: Callable[..., Iterator[Example]], path: Any, *, strict: bool = False,
                 **options: Any) -> None:
        self.report = ReadReport(str(path))
        self._produce, self._path, self._strict, self._options = produce, path, strict, options
        self._started = False

    def __iter__(self) -> Iterator[Example]:
        if self._started:
            raise InputError(f"the examples of {self._path} were already read from this stream; "
                             "call iter_examples() again to read the file again")
        self._started = True
        return self._run()

    def _run(self) -> Iterator[Example]:
        for example in self._produce(self._path, self.report, **self._options):
            self.report.add(example)
            yield example
        self.report.close(self._strict)

    def collect(self) -> tuple[list, ReadReport]:
        """All examples as a list, with the finished report."""
        examples = list(self)
        return examples, self.report


# ----------------------------------------------------------------------------------------------
# Span checks shared by the NER readers


def inclusive_to_exclusive(start: int, end: int) -> tuple[int, int]:
    """Offsets of a file that counts ``end`` as the last character, in Python's end-exclusive form.

    >>> inclusive_to_exclusive(3, 7)   # characters 3..7 -> text[3:8]
    (3, 8)
    """
    return start, end + 1


def check_span(text: str, start: int, end: int, label: str | None, where: str, report: ReadReport,
               mention: str | None = None, shown: str | None = None) -> Span | None:
    """``Span(start, end, label)`` (end exclusive) if it is usable in ``text``, else ``None``.

    Empty or out-of-range spans and spans without a label are skipped; a span whose text differs
    from the stated ``mention`` is moved to the nearest occurrence of the mention when there is one
    (a repair), else skipped. Every case is counted in ``report``; ``shown`` is the annotation as
    the file wrote it (for the report), by default ``"start..end label"``.

    >>> r = ReadReport()
    >>> check_span("北京大学", 0, 2, "LOC", "f:1", r, mention="北京")
    Span(start=0, end=2, label='LOC')
    >>> check_span("北京大学", 3, 9, "LOC", "f:1", r) is None, r.skipped["span outside text"]
    (True, 1)
    """
    shown = shown or f"{start}..{end} {label}"
    if not label or not str(label).strip():
        report.skip("span without label", where, shown)
        return None
    if end <= start:
        report.skip("empty span (end before start)", where, shown)
        return None
    if start < 0 or end > len(text):
        report.skip("span outside text", where, f"{shown}; text length {len(text)}")
        return None
    if mention is not None and text[start:end] != mention:
        found = [i for i in range(len(text)) if text.startswith(mention, i)] if mention else []
        if not found:
            report.skip("span text differs from its mention", where,
                        f"{shown}: text has {text[start:end]!r}, mention is {mention!r}")
            return None
        new = min(found, key=lambda i: (abs(i - start), i))
        report.repair("span moved to its mention", where, f"{shown} -> {new}..{new + len(mention)} {mention!r}")
        start, end = new, new + len(mention)
    return Span(start, end, str(label))


def unique_spans(spans: Iterable[Span], where: str, report: ReadReport) -> list[Span]:
    """``spans`` sorted, with exact repeats (same start, end and label) removed and counted."""
    seen: set[Span] = set()
    out: list[Span] = []
    for span in spans:
        if span in seen:
            report.skip("duplicate span", where, f"{span.start}..{span.end} {span.label}")
            continue
        seen.add(span)
        out.append(span)
    return sorted(out, key=lambda s: (s.start, s.end, s.label))


# ----------------------------------------------------------------------------------------------
# Split hygiene


def example_key(example: Example) -> str | tuple[str, str]:
    """What makes two examples "the same text": the text, or the pair of texts."""
    if isinstance(example, PairExample):
        return (example.text_a, example.text_b)
    return example.text


def duplicates(examples: Iterable[Example]) -> int:
    """How many examples repeat the text (or text pair) of an earlier one.

    >>> duplicates([TextExample("好", "1"), TextExample("好", "0"), TextExample("差", "0")])
    1
    """
    seen: set = set()
    count = 0
    for ex in examples:
        key = example_key(ex)
        count += key in seen
        seen.add(key)
    return count


def overlap(train: Iterable[Example], other: Iterable[Example]) -> int:
    """How many examples of ``other`` have a text (or text pair) that also occurs in ``train``.

    Use it to report leakage (ChnSentiCorp's test set repeats 331 training texts) and to build a
    de-duplicated evaluation set.

    >>> overlap([TextExample("好", "1")], [TextExample("好", "1"), TextExample("差", "0")])
    1
    """
    seen = {example_key(ex) for ex in train}
    return sum(example_key(ex) in seen for ex in other)


def flatten_examples(examples: Iterable[NerExample], policy: Literal["longest", "first"] = "longest"
                     ) -> tuple[list[NerExample], ReadReport]:
    """Copies of ``examples`` whose spans do not overlap, for a flat (BIO/CRF) tagger.

    ``policy`` is passed to :func:`toolkit.text.tags.flatten_spans` (``"longest"`` keeps the longer of
    two overlapping spans). The report counts the dropped spans per label in ``dropped_spans``; keep
    the original nested examples for evaluation.

    >>> ex = NerExample("左肺癌", [Span(0, 2, "bod"), Span(0, 3, "dis")])
    >>> flat, report = flatten_examples([ex])
    >>> flat[0].spans, dict(report.dropped_spans)
    ([Span(start=0, end=3, label='dis')], {'bod': 1})
    """
    report = ReadReport(f"flatten ({policy})")
    out: list[NerExample] = []
    for ex in examples:
        kept, dropped = flatten_spans([s.as_tuple() for s in ex.spans], policy)
        for start, end, label in dropped:
            report.skip("span overlaps a kept span", ex.source or "?", f"{start}..{end} {label}")
            report.dropped_spans[label] += 1
        out.append(NerExample(ex.text, [Span(*s) for s in kept], ex.source))
    report.examples = report.records = len(out)
    report.spans = sum(len(ex.spans) for ex in out)
    report.labels = Counter(s.label for ex in out for s in ex.spans)
    return out, report
