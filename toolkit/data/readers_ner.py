"""Readers for named-entity corpora; each returns ``(list[NerExample], ReadReport)``.

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

import itertools
import logging
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from toolkit.data.examples import NerExample, Span
from toolkit.data.validation import (CorpusError, ReadReport, check_span, decode, inclusive_to_exclusive,
                                     iter_json_records, location, read_text, split_lines, unique_spans)
from toolkit.tags import Scheme, check_scheme, detect_scheme, parse_tag, tags_to_spans, transition_mask

logger = logging.getLogger(__name__)

COLUMN_EXPECTED = "'<token><TAB or space><TAG>', e.g. '北\\tB-LOC', or a blank line between sentences"


def _as_int(value: Any, what: str, where: str, line: str, expected: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise CorpusError(f"{what} is not an integer: {value!r}", where=where, line=line, expected=expected)
    try:
        return int(value)
    except ValueError:
        raise CorpusError(f"{what} is not an integer: {value!r}", where=where, line=line, expected=expected) from None


# ----------------------------------------------------------------------------------------------
# Column files (BIO / BIOES / BMES)


def _split_column_line(line: str, where: str) -> tuple[str, str]:
    """``(token, tag)`` from ``字\\tTAG`` / ``字 TAG`` (extra middle columns are ignored)."""
    sep = "\t" if "\t" in line else " "
    parts = line.split(sep)
    if len(parts) < 2 or not parts[-1].strip():
        raise CorpusError("a token line needs a tag after the token", where=where, line=line, expected=COLUMN_EXPECTED)
    token = parts[0]
    if not token:
        if sep == "\t":
            raise CorpusError("empty token before the tag", where=where, line=line, expected=COLUMN_EXPECTED)
        token = " "  # '  O': the token is a space character
    return token, parts[-1].strip()


def _first_bad_tag(tags: Sequence[str], scheme: Scheme) -> int:
    """Index of the first tag where ``tags`` stops being a valid ``scheme`` sequence."""
    names = sorted(set(tags))
    index = {t: i for i, t in enumerate(names)}
    allowed, start_ok, end_ok = transition_mask(names, scheme)
    if not start_ok[index[tags[0]]]:
        return 0
    for i in range(1, len(tags)):
        if not allowed[index[tags[i - 1]], index[tags[i]]]:
            return i
    return len(tags) - 1 if not end_ok[index[tags[-1]]] else 0


BLANK_LINES = re.compile(r"\n(?:[^\S\n]*\n)+")
TWO_COLUMNS = {"\t": re.compile(r"[^\t\n]+\t\S+(?:\n[^\t\n]+\t\S+)*"),
               " ": re.compile(r"[^ \t\n]+ \S+(?:\n[^ \t\n]+ \S+)*")}


def _sentence_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, block)`` of each blank-line separated block of ``text``."""
    blocks: list[tuple[int, str]] = []
    line_no, pos = 1, 0
    for match in BLANK_LINES.finditer(text):
        block = text[pos: match.start()]
        if block and not block.isspace():
            blocks.append((line_no, block))
        line_no += block.count("\n") + match.group().count("\n")
        pos = match.end()
    if pos < len(text) and not text[pos:].isspace():
        blocks.append((line_no, text[pos:]))
    return blocks


def _block_lines(first: int, block: str) -> tuple[int, list[str]]:
    """Lines of a block without ``\r``; blank lines opening or closing the file are removed."""
    lines = block.split("\n")
    if "\r" in block:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    while not lines[0] or lines[0].isspace():
        lines.pop(0)
        first += 1
    while not lines[-1] or lines[-1].isspace():
        lines.pop()
    return first, lines


def _parse_block(first: int, block: str, where: str) -> tuple[int, list[str], list[str]]:
    """First line, tokens and tags of one sentence block."""
    if "\r" in block:
        block = block.replace("\r\n", "\n")
    newline = block.find("\n")
    sep = "\t" if "\t" in block[: newline if newline >= 0 else None] else " "
    if TWO_COLUMNS[sep].fullmatch(block):  # fast path: exactly two clean columns on every line
        items = block.replace("\n", sep).split(sep)
        return first, items[0::2], items[1::2]
    first, lines = _block_lines(first, block)
    pairs = [_split_column_line(line, f"{where}:{first + i}") for i, line in enumerate(lines)]
    return first, [p[0] for p in pairs], [p[1] for p in pairs]


def _decode(tags: list[str], scheme: Scheme) -> tuple[list[tuple[int, int, str]], Counter]:
    """:func:`toolkit.tags.tags_to_spans` on the entity tags only (each run of ``O`` kept as one ``O``).

    Spans only depend on where the ``O`` runs are, so the result is the same; on long mostly-``O``
    corpora (MSRA: 2.3M characters) this is several times faster.
    """
    positions = [i for i, tag in enumerate(tags) if tag != "O"]
    if not positions:
        return [], Counter()
    reduced: list[str] = []
    where_from: list[int] = []
    previous = -2
    for i in positions:
        if i != previous + 1:
            reduced.append("O")
            where_from.append(i - 1)
        reduced.append(tags[i])
        where_from.append(i)
        previous = i
    spans, repairs = tags_to_spans(reduced, scheme)
    return [(where_from[s], where_from[e - 1] + 1, label) for s, e, label in spans], repairs


def read_columns(path: str | Path, *, scheme: Scheme | None = None, member: str | None = None,
                 sentences: Sequence[int | None] | None = None, strict: bool = False
                 ) -> tuple[list[NerExample], ReadReport]:
    """Read a one-token-per-line tagged file (a plain file or one ``member`` of a zip).

    ``scheme`` is ``"BIO"``, ``"BIOES"`` or ``"BMES"``; ``None`` detects it from all the tags
    read. ``sentences=(start, stop)`` keeps only that slice of sentences (MSRA keeps its official
    test set as the last 4,631 sentences of one file: ``sentences=(50658, None)``). Tokens are
    concatenated into the text (characters for Chinese). Invalid tag sequences are repaired by
    :func:`toolkit.tags.tags_to_spans` and counted; unknown tags are read as ``O``, counted.

    >>> examples, report = read_columns("dev.char.bmes", scheme="BMES")   # doctest: +SKIP
    >>> examples[0].source                                                 # doctest: +SKIP
    'dev.char.bmes:1'
    """
    text, where = read_text(path, member)
    report = ReadReport(where)
    blocks = _sentence_blocks(text)
    if sentences is not None:
        start, stop = (list(sentences) + [None, None])[:2]
        start = start or 0
        if start < 0 or (stop is not None and not start <= stop <= len(blocks)) or start > len(blocks):
            raise CorpusError(f"asked for sentences {start}..{stop} but the file has {len(blocks)}", where=where,
                              hint="check the sentence range of this split (the catalogue's `sentences` option)")
        blocks = blocks[start:stop]
    parsed = [_parse_block(first, block, where) for first, block in blocks]
    distinct = {t for _, _, tags in parsed for t in set(tags)}
    if scheme is None:
        scheme = detect_scheme(distinct)
        logger.debug("%s: detected tag scheme %s", where, scheme)
    scheme = check_scheme(scheme)  # type: ignore[assignment]
    unknown = set()
    for tag in distinct:
        try:
            parse_tag(tag, scheme)
        except ValueError:
            unknown.add(tag)
    examples: list[NerExample] = []
    for first, tokens, tags in parsed:
        if unknown and not unknown.isdisjoint(tags):
            for i, tag in enumerate(tags):
                if tag in unknown:
                    report.repair(f"unknown tag (read as O) in a {scheme} file", f"{where}:{first + i}", tag)
                    tags[i] = "O"
        spans, repairs = _decode(tags, scheme)
        if repairs:
            bad = first + _first_bad_tag(tags, scheme)
            for kind, n in repairs.items():
                report.repair(f"tags: {kind}", f"{where}:{bad}", "", n)
        sentence = "".join(tokens)
        if len(sentence) != len(tokens):  # multi-character tokens: map token spans to characters
            ends = list(itertools.accumulate(len(t) for t in tokens))
            spans = [(ends[s] - len(tokens[s]), ends[e - 1], label) for s, e, label in spans]
        examples.append(NerExample(sentence, [Span(*s) for s in spans], f"{where}:{first}"))
    report.finish(examples, strict, records=len(parsed))
    return examples, report


# ----------------------------------------------------------------------------------------------
# CMeEE text, CBLUE JSON, CLUENER, generic JSON spans

CMEEE_EXPECTED = "'text|||start    end    type|||...' (end inclusive), e.g. '左肺癌|||0    2    dis|||'"


def read_cmeee(path: str | Path, *, member: str | None = None, strict: bool = False
               ) -> tuple[list[NerExample], ReadReport]:
    """Read the CMeEE / CHIP-2020 text format: ``text|||start    end    type|||`` (end inclusive).

    >>> examples, report = read_cmeee("train.txt")      # doctest: +SKIP
    >>> report.skipped                                   # doctest: +SKIP
    Counter({'empty span (end before start)': 2})
    """
    text, where = read_text(path, member)
    report = ReadReport(where)
    examples: list[NerExample] = []
    records = 0
    for number, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        records += 1
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
        examples.append(NerExample(sentence, unique_spans(spans, here, report), here))
    report.finish(examples, strict, records=records)
    return examples, report


def _json_ner(path: str | Path, member: str | None, strict: bool, expected: str, parse_spans
              ) -> tuple[list[NerExample], ReadReport]:
    """Shared loop of the JSON NER readers; ``parse_spans(record, text, here, report)`` -> spans."""
    text, where = read_text(path, member)
    report = ReadReport(where)
    examples: list[NerExample] = []
    records = 0
    for number, record in iter_json_records(text, where):
        records += 1
        here = f"{where}:{number}"
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise CorpusError("a record needs a string field 'text'", where=here, line=str(record), expected=expected)
        if not record["text"].strip():
            report.skip("empty text", here)
            continue
        spans = parse_spans(record, record["text"], here, report)
        examples.append(NerExample(record["text"], unique_spans(spans, here, report), here))
    report.finish(examples, strict, records=records)
    return examples, report


def _records(record: dict, key: str, here: str, expected: str) -> list:
    value = record.get(key) or []
    if not isinstance(value, list):
        raise CorpusError(f"field {key!r} is not a list", where=here, line=str(record), expected=expected)
    return value


CBLUE_EXPECTED = ('{"text": "...", "entities": [{"start_idx": 0, "end_idx": 2, "type": "dis", "entity": "..."}]} '
                  "(end inclusive)")


def read_cblue_ner(path: str | Path, *, member: str | None = None, strict: bool = False
                   ) -> tuple[list[NerExample], ReadReport]:
    """Read CBLUE NER JSON (``CMeEE_dev.json``): ``start_idx``/``end_idx`` inclusive, checked against ``entity``.

    >>> examples, report = read_cblue_ner("CMeEE_dev.json")   # doctest: +SKIP
    """
    def parse(record: dict, text: str, here: str, report: ReadReport) -> list[Span]:
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

    return _json_ner(path, member, strict, CBLUE_EXPECTED, parse)


CLUENER_EXPECTED = ('{"text": "...", "entity_list": [{"entity_type": "name", "entity": "...", '
                    '"entity_index": {"begin": 0, "end": 3}}]} (end exclusive)')


def read_cluener(path: str | Path, *, member: str | None = None, strict: bool = False
                 ) -> tuple[list[NerExample], ReadReport]:
    """Read CLUENER2020 JSONL, checking each span against its ``entity`` text.

    Two layouts are understood: ``entity_list`` with ``entity_index`` ``begin``/``end`` (end
    exclusive, the copy in ``shared/corpora``) and the original release's
    ``"label": {type: {mention: [[start, end]]}}`` (end inclusive).

    >>> examples, report = read_cluener("dev.txt")   # doctest: +SKIP
    """
    def parse(record: dict, text: str, here: str, report: ReadReport) -> list[Span]:
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

    return _json_ner(path, member, strict, CLUENER_EXPECTED, parse)


SPANS_EXPECTED = ('{"text": "...", "spans": [{"start": 0, "end": 2, "label": "LOC"}]} '
                  '(end exclusive; "entities" also accepted)')


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
    def parse(record: dict, text: str, here: str, report: ReadReport) -> list[Span]:
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

    return _json_ner(path, member, strict, SPANS_EXPECTED, parse)


# ----------------------------------------------------------------------------------------------
# CCKS-2017 zip of records

CCKS_EXPECTED = "'mention<TAB>start<TAB>end<TAB>type' (end inclusive), e.g. '右髋部\\t21\\t23\\t身体部位'"
TEXT_SUFFIX = ".txtoriginal.txt"


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def read_ccks2017(path: str | Path, *, strict: bool = False) -> tuple[list[NerExample], ReadReport]:
    """Read CCKS-2017 clinical records straight from their zip: one example per record.

    Each record is ``X.txtoriginal.txt`` (the text; trailing line breaks are dropped) with
    ``X.txt`` (``mention\\tstart\\tend\\ttype`` per line, end inclusive, checked against the
    mention). Records are returned in folder order, then by record number.

    >>> examples, report = read_ccks2017("data_origin.zip")   # doctest: +SKIP
    >>> len(examples)                                          # doctest: +SKIP
    1198
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise CorpusError("not a zip archive", where=str(path),
                          expected="the CCKS-2017 data_origin.zip (records as X.txtoriginal.txt + X.txt)")
    report = ReadReport(str(path))
    examples: list[NerExample] = []
    with zipfile.ZipFile(path) as archive:
        names = {n for n in archive.namelist() if not n.endswith("/")}
        texts = sorted((n for n in names if n.endswith(TEXT_SUFFIX)), key=_natural_key)
        for orphan in sorted(n for n in names if n.endswith(".txt") and not n.endswith(TEXT_SUFFIX)
                             and n[:-4] + TEXT_SUFFIX not in names):
            report.skip("annotation file without its .txtoriginal.txt text", location(path, orphan))
        for name in texts:
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
            spans = []
            for number, line in enumerate(split_lines(decode(archive.read(ann_name), ann_where)), 1):
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
            examples.append(NerExample(sentence, unique_spans(spans, ann_where, report), f"{text_where}:1"))
    report.finish(examples, strict, records=len(texts))
    return examples, report


def span_counts(examples: Sequence[NerExample]) -> Counter:
    """Number of spans per label in ``examples``.

    >>> span_counts([NerExample("北京", [Span(0, 2, "LOC")])])
    Counter({'LOC': 1})
    """
    return Counter(s.label for ex in examples for s in ex.spans)
