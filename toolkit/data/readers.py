"""Every corpus reader by name, and :func:`read` to call one.

Each reader takes a path (plus format options) and returns ``(examples, report)``: a plain list
of :class:`~toolkit.data.examples.NerExample`, :class:`~toolkit.data.examples.TextExample` or
:class:`~toolkit.data.examples.PairExample` (``source`` = ``"path:line"``, or
``"path!member:line"`` inside a zip), and a :class:`~toolkit.data.validation.ReadReport` counting
what was repaired, skipped or omitted. Malformed lines raise
:class:`~toolkit.data.validation.CorpusError` with file, line number and the expected form.

=============  ==========  ====================================================================
name           task        format
=============  ==========  ====================================================================
columns        ner         one token per line + tag (BIO / BIOES / BMES), blank line between
cmeee          ner         ``text|||start    end    type|||`` (end inclusive)
cblue-ner      ner         CBLUE JSON ``start_idx``/``end_idx`` (end inclusive)
cluener        ner         CLUENER JSONL ``entity_index`` (end exclusive)
ccks2017       ner         CCKS-2017 zip: ``X.txtoriginal.txt`` + ``X.txt`` (end inclusive)
json-spans     ner         JSONL ``{"text", "spans": [{"start", "end", "label"}]}`` (end exclusive)
table-cls      cls         CSV/TSV with header (``text_column``, ``label_column``)
json-cls       cls         JSON array / JSONL (``text_key``, ``label_key``)
table-pair     pair        CSV/TSV with header (``a_column``, ``b_column``, ``label_column``)
json-pair      pair        JSON array / JSONL (``a_key``, ``b_key``, ``label_key``)
=============  ==========  ====================================================================

:func:`iter_examples` is the streaming form: the same readers, yielding one example at a time
(the report is complete when the iteration ends).

Example:
    >>> examples, report = read("my_ner.jsonl", "json-spans")        # doctest: +SKIP
    >>> examples, report = read("train.char.bmes", "columns", scheme="BMES")   # doctest: +SKIP
    >>> print(report.summary())                                        # doctest: +SKIP
"""
from __future__ import annotations

import difflib
import inspect
import logging
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from toolkit.data.readers_cls import (json_cls_examples, json_pair_examples, read_json_cls, read_json_pair,
                                      read_table_cls, read_table_pair, table_cls_examples, table_pair_examples)
from toolkit.data.readers_columns import columns_examples, read_columns
from toolkit.data.readers_ner import (ccks2017_examples, cblue_ner_examples, cluener_examples, cmeee_examples,
                                      json_spans_examples, read_cblue_ner, read_ccks2017, read_cluener, read_cmeee,
                                      read_json_spans, span_counts)
from toolkit.data.validation import (CorpusError, ExampleStream, ReadReport, duplicates, flatten_examples,
                                     inclusive_to_exclusive, overlap)

logger = logging.getLogger(__name__)

READERS: dict[str, Callable[..., tuple[list, ReadReport]]] = {
    "columns": read_columns,
    "cmeee": read_cmeee,
    "cblue-ner": read_cblue_ner,
    "cluener": read_cluener,
    "ccks2017": read_ccks2017,
    "json-spans": read_json_spans,
    "table-cls": read_table_cls,
    "json-cls": read_json_cls,
    "table-pair": read_table_pair,
    "json-pair": read_json_pair,
}

#: The generator behind each reader: ``produce(path, report, **options)`` yields examples one by one.
STREAMS: dict[str, Callable[..., Iterator]] = {
    "columns": columns_examples,
    "cmeee": cmeee_examples,
    "cblue-ner": cblue_ner_examples,
    "cluener": cluener_examples,
    "ccks2017": ccks2017_examples,
    "json-spans": json_spans_examples,
    "table-cls": table_cls_examples,
    "json-cls": json_cls_examples,
    "table-pair": table_pair_examples,
    "json-pair": json_pair_examples,
}

# The three kinds of user data (`toolkit train ner|cls|pair`) and the reader a file extension implies
# (which head kind trains on which data: toolkit.kinds).
Kind = Literal["ner", "cls", "pair"]
FORMATS = {
    "ner": {".bio": "columns", ".bmes": "columns", ".bioes": "columns", ".iob": "columns", ".conll": "columns", ".jsonl": "json-spans", ".json": "json-spans"},
    "cls": {".tsv": "table-cls", ".csv": "table-cls", ".json": "json-cls", ".jsonl": "json-cls"},
    "pair": {".tsv": "table-pair", ".csv": "table-pair", ".json": "json-pair", ".jsonl": "json-pair"},
}


def guess_format(kind: Kind, path: str | Path) -> str:
    """Reader name for ``path`` from its extension (``my.bmes`` -> ``columns``); say ``--format`` otherwise."""
    name = Path(path).name.lower()
    for ext, fmt in FORMATS[kind].items():
        if name.endswith(ext) or name.endswith(ext + ".gz"):
            return fmt
    raise ValueError(f"cannot tell the format of {path} from its name; pass format= (--format) with one of {sorted(set(FORMATS[kind].values()))}")


READER_TASKS: dict[str, str] = {
    "columns": "ner", "cmeee": "ner", "cblue-ner": "ner", "cluener": "ner", "ccks2017": "ner",
    "json-spans": "ner", "table-cls": "cls", "json-cls": "cls", "table-pair": "pair", "json-pair": "pair",
}


def get_reader(name: str) -> Callable[..., tuple[list, ReadReport]]:
    """The reader function called ``name``; ``ValueError`` naming the closest known reader otherwise.

    >>> get_reader("cmeee").__name__
    'read_cmeee'
    """
    if name in READERS:
        return READERS[name]
    close = difflib.get_close_matches(name, list(READERS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown corpus format {name!r}.{hint} Known formats: {', '.join(READERS)}")


def iter_examples(path: str | Path, format: str, *, strict: bool = False, **options: Any) -> ExampleStream:
    """The examples of ``path`` one by one, read as you iterate (for callers that can stream).

    Takes the same arguments as :func:`read`; iterate the returned :class:`ExampleStream` once,
    then read its ``report``. The file is read in pieces, so memory does not grow with it (JSON
    *array* files are read whole; ``columns`` without a ``scheme`` reads the file twice, first to
    detect the scheme). Errors in the file surface while iterating, where they occur.

    >>> stream = iter_examples("big.bio", "columns", scheme="BIO")   # doctest: +SKIP
    >>> chars = sum(len(ex.text) for ex in stream)                   # doctest: +SKIP
    >>> stream.report.examples                                       # doctest: +SKIP
    """
    reader = get_reader(format)
    accepted = [p for p in inspect.signature(reader).parameters if p not in ("path", "strict")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"reader {format!r} does not take option(s) {', '.join(unknown)}; "
                         f"its options are: {', '.join(accepted) or 'none'}")
    return ExampleStream(STREAMS[format], path, strict=strict, **options)


def read(path: str | Path, format: str, *, strict: bool = False, **options: Any) -> tuple[list, ReadReport]:
    """Read ``path`` with the reader named ``format`` (see the table above) and its ``options``.

    ``strict=True`` raises :class:`CorpusError` instead of repairing or skipping bad annotations.
    The examples are built one at a time from a stream of the file (:func:`iter_examples`): the
    returned list is the only copy held.

    >>> examples, report = read("train.tsv", "table-cls", text_column="text_a")   # doctest: +SKIP
    """
    return iter_examples(path, format, strict=strict, **options).collect()


__all__ = [
    "FORMATS", "Kind", "guess_format",
    "READERS", "READER_TASKS", "STREAMS", "CorpusError", "ExampleStream", "ReadReport", "duplicates",
    "flatten_examples", "get_reader", "inclusive_to_exclusive", "iter_examples", "overlap", "read",
    "read_cblue_ner", "read_ccks2017", "read_cluener", "read_cmeee", "read_columns", "read_json_cls",
    "read_json_pair", "read_json_spans", "read_table_cls", "read_table_pair", "span_counts",
]
