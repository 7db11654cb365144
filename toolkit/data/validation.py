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

The low-level loaders used by every reader live here too (:func:`read_text`,
:func:`iter_json_records`), because they are where bytes become located lines or a located error.

Example:
    >>> report = ReadReport("train.txt")
    >>> report.skip("empty text", "train.txt:3")
    >>> report.skipped["empty text"]
    1
"""
from __future__ import annotations

import difflib
import json
import logging
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Literal, Sequence, Union

from toolkit.data.examples import NerExample, PairExample, Span, TextExample
from toolkit.tags import flatten_spans

logger = logging.getLogger(__name__)

Example = Union[NerExample, TextExample, PairExample]
MAX_LINE_CHARS = 120


def shorten(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """``text`` cut to ``limit`` characters with ``...`` marking the cut.

    >>> shorten("abcdef", 4)
    'abc...'
    """
    return text if len(text) <= limit else text[: limit - 1] + "..."


class CorpusError(ValueError):
    """A corpus file that cannot be read as it stands; the message says where and what to fix.

    >>> str(CorpusError("no tag", where="a.txt:3", line="中", expected="'<char> <TAG>'"))
    "a.txt:3: no tag\\n    line: '中'\\n    expected: '<char> <TAG>'"
    """

    def __init__(self, problem: str, *, where: str | None = None, line: str | None = None,
                 expected: str | None = None, hint: str | None = None) -> None:
        self.problem, self.where, self.line, self.expected, self.hint = problem, where, line, expected, hint
        parts = [f"{where}: {problem}" if where else problem]
        if line is not None:
            parts.append(f"    line: {shorten(line)!r}")
        if expected:
            parts.append(f"    expected: {expected}")
        if hint:
            parts.append(f"    {hint}")
        super().__init__("\n".join(parts))


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

    def finish(self, examples: Sequence[Example], strict: bool = False, records: int | None = None) -> None:
        """Fill the totals from ``examples`` (and ``records`` read); then refuse (strict) or warn once.

        Raises :class:`CorpusError` in strict mode when anything was repaired or skipped.
        """
        self.examples = len(examples)
        self.records = len(examples) if records is None else records
        self.labels = Counter()
        self.spans = 0
        for ex in examples:
            if isinstance(ex, NerExample):
                self.spans += len(ex.spans)
                self.labels.update(s.label for s in ex.spans)
            else:
                self.labels[ex.label] += 1
        self.duplicates = duplicates(examples)
        if not self.problems:
            return
        if strict:
            raise CorpusError(
                f"{self.problems} annotation problems (strict mode refuses them)\n{self.summary()}",
                hint="fix the lines listed above, or read with strict=False to repair or skip them "
                     "(each one stays counted in the returned report)")
        logger.warning("%s\n  (repaired/skipped items are counted in the returned ReadReport; "
                       "pass strict=True to refuse them)", self.summary())


# ----------------------------------------------------------------------------------------------
# Loading bytes into located text


def location(path: str | Path, member: str | None = None) -> str:
    """The name used in ``source`` fields: ``path`` or ``path!member`` for a file inside a zip."""
    return f"{path}!{member}" if member else str(path)


def decode(raw: bytes, where: str) -> str:
    """UTF-8 text from ``raw`` (a leading BOM is dropped); :class:`CorpusError` with the line if not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line_no = raw[: err.start].count(b"\n") + 1
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        line_end = raw.find(b"\n", err.start)
        line = raw[line_start: line_end if line_end >= 0 else None]
        raise CorpusError(f"bytes that are not UTF-8 at byte {err.start}", where=f"{where}:{line_no}",
                          line=line.decode("utf-8", errors="replace"), expected="UTF-8 text",
                          hint="convert the file, e.g. `iconv -f GBK -t UTF-8 in.txt > out.txt`") from None


def zip_member(archive: zipfile.ZipFile, path: str | Path, member: str | None) -> str:
    """The member to read from ``archive``: ``member``, or the only file in it when ``None``."""
    names = [n for n in archive.namelist() if not n.endswith("/")]
    if member is None:
        if len(names) == 1:
            return names[0]
        raise CorpusError(f"the zip holds {len(names)} files; say which one to read",
                          where=str(path), hint=f"pass member=..., one of: {', '.join(names[:10])}")
    if member not in names:
        close = difflib.get_close_matches(member, names, n=1)
        raise CorpusError(f"no member {member!r} in the zip", where=str(path),
                          hint=(f"did you mean {close[0]!r}? " if close else "")
                          + f"members: {', '.join(names[:10])}")
    return member


def read_text(path: str | Path, member: str | None = None) -> tuple[str, str]:
    """``(text, where)`` of a UTF-8 file, or of one ``member`` of a ``.zip`` file.

    >>> # text, where = read_text("msra.zip", "dh_msra.txt")  -> where == "msra.zip!dh_msra.txt"
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path} (check the path, or the data root "
                                "for catalogued datasets)")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            member = zip_member(archive, path, member)
            raw = archive.read(member)
    elif member is not None:
        raise CorpusError(f"member={member!r} was given but the file is not a zip archive", where=str(path))
    else:
        raw = path.read_bytes()
    where = location(path, member)
    return decode(raw, where), where


def split_lines(text: str) -> list[str]:
    """Lines of ``text`` without their ``\\n`` / ``\\r\\n`` ends (only ``\\n`` splits, unlike ``splitlines``)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def iter_json_records(text: str, where: str) -> Iterator[tuple[int, object]]:
    """``(line_number, record)`` from a JSON array file or a JSON-lines file.

    Raises :class:`CorpusError` with the line for JSON that does not parse.
    """
    stripped = text.lstrip()
    if not stripped.startswith("["):
        for number, line in enumerate(split_lines(text), 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise CorpusError(f"invalid JSON ({err.msg}, column {err.colno})", where=f"{where}:{number}",
                                  line=line, expected="one JSON object per line") from None
        return
    decoder = json.JSONDecoder()
    pos = len(text) - len(stripped) + 1
    counted, line_no = 0, 1  # line_no is the line of text[counted]

    def line_of(at: int) -> int:
        nonlocal counted, line_no
        line_no += text.count("\n", counted, at)
        counted = at
        return line_no

    def fail(at: int, msg: str) -> CorpusError:
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        return CorpusError(msg, where=f"{where}:{line_of(at)}", line=text[start: end if end >= 0 else None],
                           expected="a JSON array of objects: [{...}, {...}]")

    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos < len(text) and text[pos] == "]":
            return
        try:
            record, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise fail(err.pos, f"invalid JSON ({err.msg})") from None
        yield line_of(pos), record
        pos = end
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] == "]":
            return
        else:
            raise fail(min(pos, len(text)), "expected ',' or ']' after an array element")


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

    ``policy`` is passed to :func:`toolkit.tags.flatten_spans` (``"longest"`` keeps the longer of
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
