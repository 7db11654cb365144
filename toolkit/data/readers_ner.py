"""Readers for named-entity corpora; each returns ``(list[NerExample], ReadReport)``.

Each ``read_x`` has a generator ``x_examples(path, report, **options)`` behind it, which
:func:`toolkit.data.readers.iter_examples` streams (the column reader lives in
:mod:`toolkit.data.readers_columns`; JSON *array* files are read whole, JSON lines are streamed).

Formats (offsets on disk are converted to end-exclusive :class:`~toolkit.data.examples.Span`):

==================  =====================================================================  ==========
reader              file                                                                   end offset
==================  =====================================================================  ==========
``read_columns``    one token per line, ``字<TAB or space>TAG``, blank line between           (tags)
                    sentences; BIO / BIOES / BMES (MSRA, Resume, any CoNLL-style file)
``read_cmeee``      ``text|||start    end    type|||...`` (CMeEE / CHIP-2020 task 1)        inclusive
``read_cblue_ner``  CBLUE JSON ``{text, entities: [{start_idx, end_idx, type, entity}]}``   inclusive
``read_cluener``    CLUENER JSONL ``{text, entity_list: [{entity_type, entity,                exclusive
                    entity_index: {begin, end}}]}`` (or the original ``label`` form)        (inclusive)
``read_ccks2017``   a zip of ``X.txtoriginal.txt`` texts + ``X.txt`` ``mention\\tstart\\tend\\ttype``  inclusive
``read_json_spans`` JSON / JSONL ``{text, spans|entities: [{start, end, label}]}``           exclusive
==================  =====================================================================  ==========

Nested spans are kept; flatten them for a CRF with :func:`toolkit.data.validation.flatten_examples`.

Example:
    >>> examples, report = read_columns("train.char.bmes")          # doctest: +SKIP
    >>> examples[0].text, examples[0].spans[:1], report.repaired     # doctest: +SKIP
"""
from __future__ import annotations

import logging
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from toolkit.data.examples import NerExample, Span
from toolkit.data.readers_columns import COLUMN_EXPECTED, columns_examples, read_columns  # noqa: F401
from toolkit.data.sources import (CorpusError, decode, json_file_records, location, numbered_lines, open_binary,
                                  split_lines, text_pieces)
from toolkit.data.validation import ExampleStream, ReadReport, check_span, inclusive_to_exclusive, unique_spans

logger = logging.getLogger(__name__)


def _as_int(value: Any, what: str, where: str, line: str, expected: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise CorpusError(f"{what} is not an integer: {value!r}", where=where, line=line, expected=expected)
    try:
        return int(value)
    except ValueError:
        raise CorpusError(f"{what} is not an integer: {value!r}", where=where, line=line, expected=expected) from None


# ----------------------------------------------------------------------------------------------
# CMeEE text, CBLUE JSON, CLUENER, generic JSON spans

CMEEE_EXPECTED = "'text|||start    end    type|||...' (end inclusive), e.g. '左肺癌|||0    2    dis|||'"


def cmeee_examples(path: str | Path, report: ReadReport, *, member: str | None = None) -> Iterator[NerExample]:
    """The generator behind :func:`read_cmeee`; counts into ``report``."""
    with open_binary(path, member) as (handle, where):
        report.source = where
        for number, line in numbered_lines(text_pieces(handle, where)):
            if not line.strip():
                continue
            report.records += 1
            here = f"{where}:{number}"
            if "|||" not in line:
                raise CorpusError("no '|||' after the text", where=here, line=line, expected=CMEEE_EXPECTED)
            sentence, *fields = line.split("|||")
            if not sentence.strip():
                report.skip("empty text", here)
                continue
            spans = []
            for item in fields:
                if not item.strip():
                    continue
                parts = item.split()
                if len(parts) != 3:
                    raise CorpusError(f"annotation {item!r} does not have 3 fields", where=here, line=line,
                                      expected=CMEEE_EXPECTED)
                start = _as_int(parts[0], "start", here, line, CMEEE_EXPECTED)
                end = _as_int(parts[1], "end", here, line, CMEEE_EXPECTED)
                span = check_span(sentence, *inclusive_to_exclusive(start, end), parts[2], here, report,
                                  shown=f"{start} {end} {parts[2]} (end inclusive)")
                if span is not None:
                    spans.append(span)
            yield NerExample(sentence, unique_spans(spans, here, report), here)


def read_cmeee(path: str | Path, *, member: str | None = None, strict: bool = False
               ) -> tuple[list[NerExample], ReadReport]:
    """Read the CMeEE / CHIP-2020 text format: ``text|||start    end    type|||`` (end inclusive).

    >>> examples, report = read_cmeee("train.txt")      # doctest: +SKIP
    >>> report.skipped                                   # doctest: +SKIP
    Counter({'empty span (end before start)': 2})
    """
    return ExampleStream(cmeee_examples, path, strict=strict, member=member).collect()


SpanParser = Callable[[dict, str, str, ReadReport], list]


def _json_ner(path: str | Path, report: ReadReport, member: str | None, expected: str, parse_spans: SpanParser
              ) -> Iterator[NerExample]:
    """Shared loop of the JSON NER readers; ``parse_spans(record, text, here, report)`` -> spans."""
    with open_binary(path, member) as (handle, where):
        report.source = where
        for number, record in json_file_records(text_pieces(handle, where), where):
            report.records += 1
            here = f"{where}:{number}"
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise CorpusError("a record needs a string field 'text'", where=here, line=str(record),
                                  expected=expected)
            if not record["text"].strip():
                report.skip("empty text", here)
                continue
            spans = parse_spans(record, record["text"], here, report)
            yield NerExample(record["text"], unique_spans(spans, here, report), here)


def _records(record: dict, key: str, here: str, expected: str) -> list:
    value = record.get(key) or []
    if not isinstance(value, list):
        raise CorpusError(f"field {key!r} is not a list", where=here, line=str(record), expected=expected)
    return value


CBLUE_EXPECTED = ('{"text": "...", "entities": [{"start_idx": 0, "end_idx": 2, "type": "dis", "entity": "..."}]} '
                  "(end inclusive)")


def _cblue_spans(record: dict, text: str, here: str, report: ReadReport) -> list[Span]:
    spans = []
    for ent in _records(record, "entities", here, CBLUE_EXPECTED):
        if not isinstance(ent, dict) or "start_idx" not in ent or "end_idx" not in ent:
            raise CorpusError("an entity needs start_idx and end_idx", where=here, line=str(ent),
                              expected=CBLUE_EXPECTED)
        start = _as_int(ent["start_idx"], "start_idx", here, str(ent), CBLUE_EXPECTED)
        end = _as_int(ent["end_idx"], "end_idx", here, str(ent), CBLUE_EXPECTED)
        span = check_span(text, *inclusive_to_exclusive(start, end), ent.get("type"), here, report,
                          ent.get("entity"), shown=f"start_idx {start} end_idx {end} {ent.get('type')}")
        if span is not None:
            spans.append(span)
    return spans


def cblue_ner_examples(path: str | Path, report: ReadReport, *, member: str | None = None) -> Iterator[NerExample]:
    """The generator behind :func:`read_cblue_ner`; counts into ``report``."""
    return _json_ner(path, report, member, CBLUE_EXPECTED, _cblue_spans)


def read_cblue_ner(path: str | Path, *, member: str | None = None, strict: bool = False
                   ) -> tuple[list[NerExample], ReadReport]:
    """Read CBLUE NER JSON (``CMeEE_dev.json``): ``start_idx``/``end_idx`` inclusive, checked against ``entity``.

    >>> examples, report = read_cblue_ner("CMeEE_dev.json")   # doctest: +SKIP
    """
    return ExampleStream(cblue_ner_examples, path, strict=strict, member=member).collect()


CLUENER_EXPECTED = ('{"text": "...", "entity_list": [{"entity_type": "name", "entity": "...", '
                    '"entity_index": {"begin": 0, "end": 3}}]} (end exclusive)')


def _cluener_spans(record: dict, text: str, here: str, report: ReadReport) -> list[Span]:
    spans = []
    if isinstance(record.get("label"), dict):
        for label, mentions in record["label"].items():
            for mention, positions in (mentions or {}).items():
                for pos in positions:
                    start = _as_int(pos[0], "start", here, str(pos), CLUENER_EXPECTED)
                    end = _as_int(pos[1], "end", here, str(pos), CLUENER_EXPECTED)
                    span = check_span(text, *inclusive_to_exclusive(start, end), label, here, report, mention,
                                      shown=f"{label} {mention!r} [{start}, {end}] (end inclusive)")
                    if span is not None:
                        spans.append(span)
        return spans
    for ent in _records(record, "entity_list", here, CLUENER_EXPECTED):
        index = ent.get("entity_index") if isinstance(ent, dict) else None
        if not isinstance(index, dict) or "begin" not in index or "end" not in index:
            raise CorpusError("an entity needs entity_index with begin and end", where=here, line=str(ent),
                              expected=CLUENER_EXPECTED)
        start = _as_int(index["begin"], "begin", here, str(ent), CLUENER_EXPECTED)
        end = _as_int(index["end"], "end", here, str(ent), CLUENER_EXPECTED)
        span = check_span(text, start, end, ent.get("entity_type"), here, report, ent.get("entity"),
                          shown=f"begin {start} end {end} {ent.get('entity_type')}")
        if span is not None:
            spans.append(span)
    return spans


def cluener_examples(path: str | Path, report: ReadReport, *, member: str | None = None) -> Iterator[NerExample]:
    """The generator behind :func:`read_cluener`; counts into ``report``."""
    return _json_ner(path, report, member, CLUENER_EXPECTED, _cluener_spans)


def read_cluener(path: str | Path, *, member: str | None = None, strict: bool = False
                 ) -> tuple[list[NerExample], ReadReport]:
    """Read CLUENER2020 JSONL, checking each span against its ``entity`` text.

    Two layouts are understood: ``entity_list`` with ``entity_index`` ``begin``/``end`` (end
    exclusive, the copy in ``shared/corpora``) and the original release's
    ``"label": {type: {mention: [[start, end]]}}`` (end inclusive).

    >>> examples, report = read_cluener("dev.txt")   # doctest: +SKIP
    """
    return ExampleStream(cluener_examples, path, strict=strict, member=member).collect()


SPANS_EXPECTED = ('{"text": "...", "spans": [{"start": 0, "end": 2, "label": "LOC"}]} '
                  '(end exclusive; "entities" also accepted)')


def _generic_spans(record: dict, text: str, here: str, report: ReadReport) -> list[Span]:
    key = "spans" if "spans" in record else "entities"
    spans = []
    for ent in _records(record, key, here, SPANS_EXPECTED):
        if not isinstance(ent, dict) or "start" not in ent or "end" not in ent:
            raise CorpusError("a span needs start and end", where=here, line=str(ent), expected=SPANS_EXPECTED)
        start = _as_int(ent["start"], "start", here, str(ent), SPANS_EXPECTED)
        end = _as_int(ent["end"], "end", here, str(ent), SPANS_EXPECTED)
        mention = ent.get("mention", ent.get("text"))
        span = check_span(text, start, end, ent.get("label", ent.get("type")), here, report,
                          mention if isinstance(mention, str) else None)
        if span is not None:
            spans.append(span)
    return spans


def json_spans_examples(path: str | Path, report: ReadReport, *, member: str | None = None) -> Iterator[NerExample]:
    """The generator behind :func:`read_json_spans`; counts into ``report``."""
    return _json_ner(path, report, member, SPANS_EXPECTED, _generic_spans)


def read_json_spans(path: str | Path, *, member: str | None = None, strict: bool = False
                    ) -> tuple[list[NerExample], ReadReport]:
    """Read the generic span format: JSONL (or a JSON array) of ``{"text", "spans"|"entities"}``.

    Each span is ``{"start", "end", "label"}`` with ``end`` exclusive (``"type"`` may stand for
    ``"label"``; an optional ``"text"``/``"mention"`` is checked against the text).

    >>> # data.jsonl: {"text": "我爱北京", "spans": [{"start": 2, "end": 4, "label": "LOC"}]}
    >>> examples, report = read_json_spans("data.jsonl")   # doctest: +SKIP
    >>> examples[0].spans                                   # doctest: +SKIP
    [Span(start=2, end=4, label='LOC')]
    """
    return ExampleStream(json_spans_examples, path, strict=strict, member=member).collect()


# ----------------------------------------------------------------------------------------------
# CCKS-2017 zip of records

CCKS_EXPECTED = "'mention<TAB>start<TAB>end<TAB>type' (end inclusive), e.g. '右髋部\\t21\\t23\\t身体部位'"
TEXT_SUFFIX = ".txtoriginal.txt"


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _ccks_spans(sentence: str, raw: bytes, ann_where: str, report: ReadReport) -> list[Span]:
    spans = []
    for number, line in enumerate(split_lines(decode(raw, ann_where)), 1):
        if not line.strip():
            continue
        here = f"{ann_where}:{number}"
        parts = line.split("\t")
        if len(parts) != 4:
            raise CorpusError(f"{len(parts)} tab-separated fields instead of 4", where=here, line=line,
                              expected=CCKS_EXPECTED)
        start = _as_int(parts[1], "start", here, line, CCKS_EXPECTED)
        end = _as_int(parts[2], "end", here, line, CCKS_EXPECTED)
        span = check_span(sentence, *inclusive_to_exclusive(start, end), parts[3].strip(), here, report,
                          parts[0], shown=f"{parts[0]} {start} {end} {parts[3].strip()} (end inclusive)")
        if span is not None:
            spans.append(span)
    return spans


def ccks2017_examples(path: str | Path, report: ReadReport) -> Iterator[NerExample]:
    """The generator behind :func:`read_ccks2017`; counts into ``report``."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise CorpusError("not a zip archive", where=str(path),
                          expected="the CCKS-2017 data_origin.zip (records as X.txtoriginal.txt + X.txt)")
    with zipfile.ZipFile(path) as archive:
        names = {n for n in archive.namelist() if not n.endswith("/")}
        texts = sorted((n for n in names if n.endswith(TEXT_SUFFIX)), key=_natural_key)
        for orphan in sorted(n for n in names if n.endswith(".txt") and not n.endswith(TEXT_SUFFIX)
                             and n[:-4] + TEXT_SUFFIX not in names):
            report.skip("annotation file without its .txtoriginal.txt text", location(path, orphan))
        for name in texts:
            report.records += 1
            text_where = location(path, name)
            sentence = decode(archive.read(name), text_where).rstrip("\r\n")
            ann_name = name[: -len(TEXT_SUFFIX)] + ".txt"
            if ann_name not in names:
                report.skip("text without its annotation file", f"{text_where}:1", ann_name)
                continue
            if not sentence.strip():
                report.skip("empty text", f"{text_where}:1")
                continue
            ann_where = location(path, ann_name)
            spans = _ccks_spans(sentence, archive.read(ann_name), ann_where, report)
            yield NerExample(sentence, unique_spans(spans, ann_where, report), f"{text_where}:1")


def read_ccks2017(path: str | Path, *, strict: bool = False) -> tuple[list[NerExample], ReadReport]:
    """Read CCKS-2017 clinical records straight from their zip: one example per record.

    Each record is ``X.txtoriginal.txt`` (the text; trailing line breaks are dropped) with
    ``X.txt`` (``mention\\tstart\\tend\\ttype`` per line, end inclusive, checked against the
    mention). Records are returned in folder order, then by record number.

    >>> examples, report = read_ccks2017("data_origin.zip")   # doctest: +SKIP
    >>> len(examples)                                          # doctest: +SKIP
    1198
    """
    return ExampleStream(ccks2017_examples, path, strict=strict).collect()


def span_counts(examples: Sequence[NerExample]) -> Counter:
    """Number of spans per label in ``examples``.

    >>> span_counts([NerExample("北京", [Span(0, 2, "LOC")])])
    Counter({'LOC': 1})
    """
    return Counter(s.label for ex in examples for s in ex.spans)
