"""Readers for classification and sentence-pair corpora.

* :func:`read_table_cls` / :func:`read_table_pair`: CSV or TSV with a header row (ChnSentiCorp
  ``label\\ttext_a``, the review CSVs ``label,review`` / ``cat,label,review``, BQ
  ``sentence1,sentence2,label``; a UTF-8 BOM is fine; the file may sit inside a zip).
* :func:`read_json_cls` / :func:`read_json_pair`: a JSON array or JSON lines of objects (CBLUE
  ``{id, text|query, label}`` and ``{id, text1, text2, label}``, OCNLI ``{sentence1, sentence2,
  label}`` whose ``-`` label means "no gold label").

Labels are strings with surrounding whitespace removed (ChnSentiCorp has one ``"    0"``; counted
as a repair). Empty texts and missing labels are skipped and counted; labels listed in
``no_gold`` are left out and counted as omitted (not a defect).

Example:
    >>> examples, report = read_table_cls("train.tsv", text_column="text_a")   # doctest: +SKIP
    >>> examples[0].label, examples[0].source                                  # doctest: +SKIP
    ('1', 'train.tsv:2')
"""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from toolkit.data.examples import PairExample, TextExample
from toolkit.data.validation import CorpusError, ReadReport, iter_json_records, read_text

logger = logging.getLogger(__name__)


def _delimiter(name: str, header: str, delimiter: str | None) -> str:
    if delimiter is not None:
        return delimiter
    lower = name.lower()
    if lower.endswith(".tsv"):
        return "\t"
    if lower.endswith(".csv"):
        return ","
    return "\t" if "\t" in header else ","


def _table_rows(text: str, where: str, delimiter: str | None, columns: Sequence[str]
                ) -> Iterator[tuple[str, dict[str, str]]]:
    """``(path:line, {column: value})`` for each data row; the header must name ``columns``."""
    header_line = text.split("\n", 1)[0].rstrip("\r")
    sep = _delimiter(where, header_line, delimiter)
    # TSV corpora quote nothing and hold bare '"' inside texts; CSV uses standard quoting.
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quoting=quoting)
    header = next(reader, None)
    shown = "TAB" if sep == "\t" else repr(sep)
    if header is None:
        raise CorpusError("the file is empty", where=f"{where}:1", expected=f"a header row naming {', '.join(columns)}")
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise CorpusError(f"the header has no column {', '.join(map(repr, missing))}", where=f"{where}:1",
                          line=header_line, expected=f"columns {', '.join(columns)} separated by {shown}",
                          hint=f"the columns are {header}; pass text_column=/label_column= (or a_column=/b_column=) "
                               "to name yours")
    index = {c: header.index(c) for c in columns}
    line_no = reader.line_num
    for row in reader:
        first, line_no = line_no + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            lines = text.split("\n")
            raw_line = lines[first - 1] if first <= len(lines) else ""
            raise CorpusError(f"{len(row)} fields where the header has {len(header)}", where=f"{where}:{first}",
                              line=raw_line.rstrip("\r"),
                              expected=f"{shown}-separated {', '.join(header)}"
                                       + ("" if sep == "\t" else " (quote fields that contain the separator)"))
        yield f"{where}:{first}", {c: row[i] for c, i in index.items()}


def _label(value: Any, here: str, report: ReadReport, no_gold: Sequence[str], names: Mapping[str, str] | None = None) -> str | None:
    """The cleaned label (renamed by ``names`` when given, e.g. ``{"0": "negative"}``), or ``None``
    when it is missing (skipped) or a no-gold marker (omitted)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        report.skip("missing label", here)
        return None
    label = value if isinstance(value, str) else str(value)
    if label != label.strip():
        report.repair("label with surrounding whitespace (stripped)", here, repr(label))
        label = label.strip()
    if label in no_gold:
        report.omit(f"no gold label ({label!r})", here)
        return None
    return names.get(label, label) if names else label


def _text_ok(values: Sequence[Any], here: str, report: ReadReport) -> bool:
    if any(not isinstance(v, str) or not v.strip() for v in values):
        report.skip("empty text", here)
        return False
    return True


def read_table_cls(path: str | Path, *, text_column: str = "text", label_column: str = "label",
                   delimiter: str | None = None, member: str | None = None, no_gold: Sequence[str] = (), label_names: Mapping[str, str] | None = None,
                   strict: bool = False) -> tuple[list[TextExample], ReadReport]:
    """Read a CSV/TSV classification file with a header row.

    The delimiter follows the extension (``.tsv`` tab, ``.csv`` comma) unless given; TSV fields
    are not quoted, CSV fields may be.

    >>> # waimai.csv:  label,review / 1,很快，好吃
    >>> examples, report = read_table_cls("waimai.csv", text_column="review")   # doctest: +SKIP
    >>> examples[0]                                                            # doctest: +SKIP
    TextExample(text='很快，好吃', label='1', source='waimai.csv:2')
    """
    text, where = read_text(path, member)
    report = ReadReport(where)
    examples: list[TextExample] = []
    records = 0
    for here, row in _table_rows(text, where, delimiter, (text_column, label_column)):
        records += 1
        if not _text_ok([row[text_column]], here, report):
            continue
        label = _label(row[label_column], here, report, no_gold, label_names)
        if label is not None:
            examples.append(TextExample(row[text_column], label, here))
    report.finish(examples, strict, records=records)
    return examples, report


def read_table_pair(path: str | Path, *, a_column: str = "sentence1", b_column: str = "sentence2",
                    label_column: str = "label", delimiter: str | None = None, member: str | None = None,
                    no_gold: Sequence[str] = (), label_names: Mapping[str, str] | None = None, strict: bool = False) -> tuple[list[PairExample], ReadReport]:
    """Read a CSV/TSV sentence-pair file with a header row (BQ: ``sentence1,sentence2,label``).

    >>> examples, report = read_table_pair("bq/dev.csv")   # doctest: +SKIP
    >>> examples[0].text_a, examples[0].label              # doctest: +SKIP
    """
    text, where = read_text(path, member)
    report = ReadReport(where)
    examples: list[PairExample] = []
    records = 0
    for here, row in _table_rows(text, where, delimiter, (a_column, b_column, label_column)):
        records += 1
        if not _text_ok([row[a_column], row[b_column]], here, report):
            continue
        label = _label(row[label_column], here, report, no_gold, label_names)
        if label is not None:
            examples.append(PairExample(row[a_column], row[b_column], label, here))
    report.finish(examples, strict, records=records)
    return examples, report


def _json_rows(text: str, where: str, keys: Sequence[str]) -> Iterator[tuple[str, dict]]:
    expected = "{" + ", ".join(f'"{k}": ...' for k in keys) + "} per record (a JSON array or JSON lines)"
    for number, record in iter_json_records(text, where):
        here = f"{where}:{number}"
        if not isinstance(record, dict):
            raise CorpusError("a record is not a JSON object", where=here, line=str(record), expected=expected)
        missing = [k for k in keys[:-1] if k not in record]  # the last key is the label: may be missing
        if missing:
            raise CorpusError(f"a record has no field {', '.join(map(repr, missing))}", where=here,
                              line=str(record), expected=expected,
                              hint=f"its fields are {list(record)}; pass text_key=/a_key=/b_key= to name yours")
        yield here, record


def read_json_cls(path: str | Path, *, text_key: str = "text", label_key: str = "label",
                  member: str | None = None, no_gold: Sequence[str] = (), label_names: Mapping[str, str] | None = None, strict: bool = False
                  ) -> tuple[list[TextExample], ReadReport]:
    """Read classification records from a JSON array or JSON lines (CHIP-CTC, KUAKE-QIC).

    >>> examples, report = read_json_cls("KUAKE-QIC_dev.json", text_key="query")   # doctest: +SKIP
    """
    text, where = read_text(path, member)
    report = ReadReport(where)
    examples: list[TextExample] = []
    records = 0
    for here, record in _json_rows(text, where, (text_key, label_key)):
        records += 1
        if not _text_ok([record[text_key]], here, report):
            continue
        label = _label(record.get(label_key), here, report, no_gold, label_names)
        if label is not None:
            examples.append(TextExample(record[text_key], label, here))
    report.finish(examples, strict, records=records)
    return examples, report


def read_json_pair(path: str | Path, *, a_key: str = "text1", b_key: str = "text2", label_key: str = "label",
                   member: str | None = None, no_gold: Sequence[str] = (), label_names: Mapping[str, str] | None = None, strict: bool = False
                   ) -> tuple[list[PairExample], ReadReport]:
    """Read sentence-pair records from a JSON array or JSON lines (CHIP-STS, KUAKE-QQR, OCNLI).

    >>> examples, report = read_json_pair("dev.json", a_key="sentence1", b_key="sentence2",
    ...                                   no_gold=["-"])                      # doctest: +SKIP
    >>> report.omitted                                                        # doctest: +SKIP
    Counter({"no gold label ('-')": 50})
    """
    text, where = read_text(path, member)
    report = ReadReport(where)
    examples: list[PairExample] = []
    records = 0
    for here, record in _json_rows(text, where, (a_key, b_key, label_key)):
        records += 1
        if not _text_ok([record[a_key], record[b_key]], here, report):
            continue
        label = _label(record.get(label_key), here, report, no_gold, label_names)
        if label is not None:
            examples.append(PairExample(record[a_key], record[b_key], label, here))
    report.finish(examples, strict, records=records)
    return examples, report
