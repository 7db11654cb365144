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

Each ``read_x`` has a generator ``x_examples(path, report, **options)`` behind it, which
:func:`toolkit.data.readers.iter_examples` streams (CSV/TSV and JSON lines are streamed; a JSON
array file is read whole). A UTF-8 BOM never reaches a column name or the first text.

Example:
    >>> examples, report = read_table_cls("train.tsv", text_column="text_a")   # doctest: +SKIP
    >>> examples[0].label, examples[0].source                                  # doctest: +SKIP
    ('1', 'train.tsv:2')
"""
from __future__ import annotations

import csv
import itertools
import logging
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from toolkit.data.examples import PairExample, TextExample
from toolkit.data.sources import CorpusError, json_file_records, open_binary, table_lines, text_pieces
from toolkit.data.validation import ExampleStream, ReadReport

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


def _table_rows(lines: Iterator[str], where: str, delimiter: str | None, columns: Sequence[str]
                ) -> Iterator[tuple[str, dict[str, str]]]:
    """``(path:line, {column: value})`` for each data row of ``lines``; the header must name ``columns``."""
    header_line = next(lines, None)
    if header_line is None:
        raise CorpusError("the file is empty", where=f"{where}:1", expected=f"a header row naming {', '.join(columns)}")
    header_line = header_line.rstrip("\r\n")
    sep = _delimiter(where, header_line, delimiter)
    # TSV corpora quote nothing and hold bare '"' inside texts; CSV uses standard quoting.
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    row_lines: list[str] = []  # the raw lines of the row being read (for error messages)

    def remembered() -> Iterator[str]:
        for line in lines:
            row_lines.append(line)
            yield line

    reader = csv.reader(itertools.chain([header_line], remembered()), delimiter=sep, quoting=quoting)
    header = [h.strip() for h in next(reader)]
    shown = "TAB" if sep == "\t" else repr(sep)
    missing = [c for c in columns if c not in header]
    if missing:
        raise CorpusError(f"the header has no column {', '.join(map(repr, missing))}", where=f"{where}:1",
                          line=header_line, expected=f"columns {', '.join(columns)} separated by {shown}",
                          hint=f"the columns are {header}; pass text_column=/label_column= (or a_column=/b_column=) "
                               "to name yours")
    index = {c: header.index(c) for c in columns}
    line_no = reader.line_num
    row_lines.clear()
    for row in reader:
        first, line_no = line_no + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            row_lines.clear()
            continue
        if len(row) != len(header):
            raise CorpusError(f"{len(row)} fields where the header has {len(header)}", where=f"{where}:{first}",
                              line=row_lines[0].rstrip("\r\n") if row_lines else "",
                              expected=f"{shown}-separated {', '.join(header)}"
                                       + ("" if sep == "\t" else " (quote fields that contain the separator)"))
        row_lines.clear()
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


Rows = Callable[[Iterator[str], str], Iterator[tuple[str, Mapping[str, Any]]]]


def _examples(path: str | Path, report: ReadReport, member: str | None, rows: Rows, text_keys: Sequence[str],
              label_key: str, no_gold: Sequence[str], names: Mapping[str, str] | None, make: Callable[..., Any]
              ) -> Iterator[Any]:
    """Shared loop of the four readers: ``make(*texts, label, source)`` for each usable row."""
    with open_binary(path, member) as (handle, where):
        report.source = where
        for here, row in rows(text_pieces(handle, where), where):
            report.records += 1
            texts = [row[k] for k in text_keys]
            if not _text_ok(texts, here, report):
                continue
            label = _label(row.get(label_key), here, report, no_gold, names)
            if label is not None:
                yield make(*texts, label, here)


def table_cls_examples(path: str | Path, report: ReadReport, *, text_column: str = "text",
                       label_column: str = "label", delimiter: str | None = None, member: str | None = None,
                       no_gold: Sequence[str] = (), label_names: Mapping[str, str] | None = None
                       ) -> Iterator[TextExample]:
    """The generator behind :func:`read_table_cls` (same options); counts into ``report``."""
    def rows(pieces: Iterator[str], where: str) -> Iterator[tuple[str, dict[str, str]]]:
        return _table_rows(table_lines(pieces), where, delimiter, (text_column, label_column))
    return _examples(path, report, member, rows, (text_column,), label_column, no_gold, label_names, TextExample)


def read_table_cls(path: str | Path, *, text_column: str = "text", label_column: str = "label",
                   delimiter: str | None = None, member: str | None = None, no_gold: Sequence[str] = (),
                   label_names: Mapping[str, str] | None = None, strict: bool = False
                   ) -> tuple[list[TextExample], ReadReport]:
    """Read a CSV/TSV classification file with a header row.

    The delimiter follows the extension (``.tsv`` tab, ``.csv`` comma) unless given; TSV fields
    are not quoted, CSV fields may be.

    >>> # waimai.csv:  label,review / 1,很快，好吃
    >>> examples, report = read_table_cls("waimai.csv", text_column="review")   # doctest: +SKIP
    >>> examples[0]                                                            # doctest: +SKIP
    TextExample(text='很快，好吃', label='1', source='waimai.csv:2')
    """
    return ExampleStream(table_cls_examples, path, strict=strict, text_column=text_column,
                         label_column=label_column, delimiter=delimiter, member=member, no_gold=no_gold,
                         label_names=label_names).collect()


def table_pair_examples(path: str | Path, report: ReadReport, *, a_column: str = "sentence1",
                        b_column: str = "sentence2", label_column: str = "label", delimiter: str | None = None,
                        member: str | None = None, no_gold: Sequence[str] = (),
                        label_names: Mapping[str, str] | None = None) -> Iterator[PairExample]:
    """The generator behind :func:`read_table_pair` (same options); counts into ``report``."""
    def rows(pieces: Iterator[str], where: str) -> Iterator[tuple[str, dict[str, str]]]:
        return _table_rows(table_lines(pieces), where, delimiter, (a_column, b_column, label_column))
    return _examples(path, report, member, rows, (a_column, b_column), label_column, no_gold, label_names,
                     PairExample)


def read_table_pair(path: str | Path, *, a_column: str = "sentence1", b_column: str = "sentence2",
                    label_column: str = "label", delimiter: str | None = None, member: str | None = None,
                    no_gold: Sequence[str] = (), label_names: Mapping[str, str] | None = None,
                    strict: bool = False) -> tuple[list[PairExample], ReadReport]:
    """Read a CSV/TSV sentence-pair file with a header row (BQ: ``sentence1,sentence2,label``).

    >>> examples, report = read_table_pair("bq/dev.csv")   # doctest: +SKIP
    >>> examples[0].text_a, examples[0].label              # doctest: +SKIP
    """
    return ExampleStream(table_pair_examples, path, strict=strict, a_column=a_column, b_column=b_column,
                         label_column=label_column, delimiter=delimiter, member=member, no_gold=no_gold,
                         label_names=label_names).collect()


def _json_rows(pieces: Iterator[str], where: str, keys: Sequence[str]) -> Iterator[tuple[str, dict]]:
    expected = "{" + ", ".join(f'"{k}": ...' for k in keys) + "} per record (a JSON array or JSON lines)"
    for number, record in json_file_records(pieces, where):
        here = f"{where}:{number}"
        if not isinstance(record, dict):
            raise CorpusError("a record is not a JSON object", where=here, line=str(record), expected=expected)
        missing = [k for k in keys[:-1] if k not in record]  # the last key is the label: may be missing
        if missing:
            raise CorpusError(f"a record has no field {', '.join(map(repr, missing))}", where=here,
                              line=str(record), expected=expected,
                              hint=f"its fields are {list(record)}; pass text_key=/a_key=/b_key= to name yours")
        yield here, record


def json_cls_examples(path: str | Path, report: ReadReport, *, text_key: str = "text", label_key: str = "label",
                      member: str | None = None, no_gold: Sequence[str] = (),
                      label_names: Mapping[str, str] | None = None) -> Iterator[TextExample]:
    """The generator behind :func:`read_json_cls` (same options); counts into ``report``."""
    def rows(pieces: Iterator[str], where: str) -> Iterator[tuple[str, dict]]:
        return _json_rows(pieces, where, (text_key, label_key))
    return _examples(path, report, member, rows, (text_key,), label_key, no_gold, label_names, TextExample)


def read_json_cls(path: str | Path, *, text_key: str = "text", label_key: str = "label",
                  member: str | None = None, no_gold: Sequence[str] = (),
                  label_names: Mapping[str, str] | None = None, strict: bool = False
                  ) -> tuple[list[TextExample], ReadReport]:
    """Read classification records from a JSON array or JSON lines (CHIP-CTC, KUAKE-QIC).

    >>> examples, report = read_json_cls("KUAKE-QIC_dev.json", text_key="query")   # doctest: +SKIP
    """
    return ExampleStream(json_cls_examples, path, strict=strict, text_key=text_key, label_key=label_key,
                         member=member, no_gold=no_gold, label_names=label_names).collect()


def json_pair_examples(path: str | Path, report: ReadReport, *, a_key: str = "text1", b_key: str = "text2",
                       label_key: str = "label", member: str | None = None, no_gold: Sequence[str] = (),
                       label_names: Mapping[str, str] | None = None) -> Iterator[PairExample]:
    """The generator behind :func:`read_json_pair` (same options); counts into ``report``."""
    def rows(pieces: Iterator[str], where: str) -> Iterator[tuple[str, dict]]:
        return _json_rows(pieces, where, (a_key, b_key, label_key))
    return _examples(path, report, member, rows, (a_key, b_key), label_key, no_gold, label_names, PairExample)


def read_json_pair(path: str | Path, *, a_key: str = "text1", b_key: str = "text2", label_key: str = "label",
                   member: str | None = None, no_gold: Sequence[str] = (),
                   label_names: Mapping[str, str] | None = None, strict: bool = False
                   ) -> tuple[list[PairExample], ReadReport]:
    """Read sentence-pair records from a JSON array or JSON lines (CHIP-STS, KUAKE-QQR, OCNLI).

    >>> examples, report = read_json_pair("dev.json", a_key="sentence1", b_key="sentence2",
    ...                                   no_gold=["-"])                      # doctest: +SKIP
    >>> report.omitted                                                        # doctest: +SKIP
    Counter({"no gold label ('-')": 50})
    """
    return ExampleStream(json_pair_examples, path, strict=strict, a_key=a_key, b_key=b_key,
                         label_key=label_key, member=member, no_gold=no_gold, label_names=label_names).collect()
