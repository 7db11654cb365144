"""Corpus-scale batch inference: ``toolkit batch NAME --input FILES --output DIR``.

* inputs: TXT (one text per line; ``text_a<TAB>text_b`` for a pair model), JSONL (objects with a
  ``text`` field, or ``text_a`` and ``text_b`` for pairs; ``text_field`` renames ``text``) and
  Parquet (the same columns; needs ``pyarrow``: ``pip install -e ".[ray]"``);
* each input is cut into *shards* of ``chunk_size`` lines (byte ranges found in one pass, so no
  file is held in memory); each shard is read, run through the pipeline's own length-sorted
  batching, and appended to the output;
* one output per input in DIR (``<stem>.jsonl`` or ``<stem>.parquet``), rows in input order:
  ``{"file", "line" (1-based), "text" | "text_a", "text_b", "result"}`` with ``result`` in the
  JSON form of ``toolkit run`` (:func:`toolkit.results.to_json_data`). Parquet keeps ``result`` as a
  JSON string (entities and label dicts do not share one column type);
* each output is written to a temporary file next to it and renamed when that input is done, so a
  failed or interrupted run leaves no partial file.

Local mode (:func:`run_batch`) runs here; Ray mode (:func:`toolkit.batch.ray_data.run_batch_ray`) runs
the same shards on an actor pool and writes with the same writer, so the outputs are identical.

Example:
    >>> run_batch("ner-medical", ["notes/*.txt"], "out/", runtime="onnx", quantize="int8")  # doctest: +SKIP
    [PosixPath('out/notes1.jsonl'), PosixPath('out/notes2.jsonl')]
"""
from __future__ import annotations

import glob
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence

from ..cli_io import to_json
from ..files import atomic_path
from ..errors import DataError, InputError

logger = logging.getLogger(__name__)

CHUNK_SIZE = 10_000  # lines per shard: what one pipeline call (or one Ray task) sees
FORMATS = ("jsonl", "parquet")
Format = Literal["jsonl", "parquet"]
Kind = Literal["text", "pair", "both"]  # what the pipeline takes: texts, pairs, or either (per row)
COLUMNS = ("file", "line", "text", "text_a", "text_b", "result")  # every row has all, None where absent
RAY_HINT = 'pip install -e ".[ray]"  (or: pip install "ray[data]" pyarrow)'


def require_pyarrow():
    """Import ``pyarrow`` (Parquet input and output) or explain how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as err:
        raise ImportError(f"Parquet files need the 'pyarrow' package, which is not installed: {RAY_HINT}") from err
    return pyarrow


@dataclass(frozen=True)
class Shard:
    """Lines ``first_line ..`` of ``path``: bytes ``[start, end)`` of a text file, or Parquet rows
    ``[start, end)`` (``first_line`` is then ``start + 1``)."""

    path: str
    first_line: int
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def expand_inputs(patterns: Sequence[str]) -> list[Path]:
    """Files named or matched by ``patterns`` (globs allowed), in order, each once.

    Raises :class:`InputError` for a pattern that matches no file, a folder, or an unknown suffix.
    """
    files: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches or not all(Path(m).exists() for m in matches):
            raise InputError(f"--input {pattern}: no such file; give existing .txt, .jsonl or .parquet files (globs allowed)")
        for m in matches:
            path = Path(m)
            if path.is_dir():
                raise InputError(f"--input {m} is a folder: give its files, e.g. --input '{path / '*.jsonl'}'")
            if input_format(path) is None:
                raise InputError(f"--input {m}: unknown file type {path.suffix!r}; use .txt, .jsonl (or .json lines) or .parquet")
            if path not in files:
                files.append(path)
    return files


def input_format(path: Path) -> str | None:
    """``"txt"``, ``"jsonl"`` or ``"parquet"`` from the suffix (None when unknown)."""
    return {".txt": "txt", ".tsv": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
            ".parquet": "parquet", ".pq": "parquet"}.get(path.suffix.lower())


def output_paths(inputs: Sequence[Path], output_dir: str | Path, fmt: Format) -> list[Path]:
    """``DIR/<stem>.<fmt>`` per input; refuses two inputs with one stem and an output that is an input."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    out_dir = Path(output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--output {out_dir} is a file: give a folder (it is created when missing)")
    outputs = [out_dir / f"{p.stem}.{fmt}" for p in inputs]
    seen: dict[Path, Path] = {}
    for src, out in zip(inputs, outputs):
        if out in seen:
            raise InputError(f"{seen[out]} and {src} would both be written to {out}: run them with different --output folders")
        seen[out] = src
        if out.exists() and os.path.samefile(out, src):
            raise InputError(f"--output {out_dir} would overwrite the input {src}: choose another folder")
    return outputs


def shards(path: Path, chunk_size: int = CHUNK_SIZE) -> list[Shard]:
    """The shards of ``path``, ``chunk_size`` lines (rows) each, found in one pass over the file."""
    if input_format(path) == "parquet":
        rows = require_pyarrow().parquet.ParquetFile(path).metadata.num_rows
        return [Shard(str(path), i + 1, i, min(i + chunk_size, rows)) for i in range(0, rows, chunk_size)]
    out, start, pos, first, n = [], 0, 0, 1, 0
    with open(path, "rb") as f:
        for line in f:
            pos += len(line)
            n += 1
            if n % chunk_size == 0:
                out.append(Shard(str(path), first, start, pos))
                start, first = pos, n + 1
    if pos > start:
        out.append(Shard(str(path), first, start, pos))
    return out


def read_shard(shard: Shard, kind: Kind, text_field: str = "text") -> list[dict[str, Any]]:
    """The rows of ``shard``: ``{"file", "line", "text", "text_a", "text_b"}`` (None where absent).

    TXT lines are texts (``text_a<TAB>text_b`` when the model takes pairs; blank lines are kept as
    blank texts); JSONL blank lines are skipped. Raises :class:`DataError` naming ``file:line``.
    """
    path = Path(shard.path)
    fmt = input_format(path)
    if fmt == "parquet":
        records = enumerate(_parquet_rows(path, shard.start, shard.end), shard.first_line)
        return [_row(shard.path, i, obj, kind, text_field) for i, obj in records]
    with open(path, "rb") as f:
        f.seek(shard.start)
        data = f.read(shard.end - shard.start)
    rows = []
    for i, raw in enumerate(data.splitlines(), shard.first_line):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{path}:{i}: not UTF-8 ({err}); convert the file, e.g. iconv -f GBK -t UTF-8") from None
        if i == 1:
            line = line.lstrip("\ufeff")
        if fmt == "txt":
            rows.append(_txt_row(shard.path, i, line, kind))
        elif line.strip():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{i}: not a JSON object ({err.msg}): {line[:80]!r}; write one object per line") from None
            rows.append(_row(shard.path, i, obj, kind, text_field))
    return rows


def _parquet_rows(path: Path, start: int, end: int) -> list[dict[str, Any]]:
    """Rows ``[start, end)`` of a Parquet file, reading only the row groups that hold them."""
    pa = require_pyarrow()
    f = pa.parquet.ParquetFile(path)
    groups, offset, first = [], 0, None
    for g in range(f.metadata.num_row_groups):
        n = f.metadata.row_group(g).num_rows
        if offset < end and offset + n > start:
            groups.append(g)
            first = offset if first is None else first
        offset += n
    if not groups:
        return []
    return f.read_row_groups(groups).slice(start - first, end - start).to_pylist()


def _txt_row(file: str, i: int, line: str, kind: Kind) -> dict[str, Any]:
    if kind != "pair":
        return _make(file, i, text=line)
    a, sep, b = line.partition("\t")
    if not sep:
        raise DataError(f"{file}:{i}: this model compares two texts: expected 'text_a<TAB>text_b', got {line[:80]!r}")
    return _make(file, i, text_a=a, text_b=b)


def _row(file: str, i: int, obj: Any, kind: Kind, text_field: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataError(f"{file}:{i}: expected an object with a {text_field!r} field, got {type(obj).__name__}")
    has_pair = isinstance(obj.get("text_a"), str) and isinstance(obj.get("text_b"), str)
    has_text = isinstance(obj.get(text_field), str)
    if kind != "text" and has_pair and not (kind == "both" and has_text):
        return _make(file, i, text_a=obj["text_a"], text_b=obj["text_b"])
    if kind != "pair" and has_text:
        return _make(file, i, text=obj[text_field])
    wanted = "'text_a' and 'text_b' (strings)" if kind == "pair" else f"a {text_field!r} string (--text-field names another)"
    raise DataError(f"{file}:{i}: expected {wanted}; the row has the fields {sorted(obj)}")


def _make(file: str, line: int, text: str | None = None, text_a: str | None = None, text_b: str | None = None) -> dict[str, Any]:
    return {"file": file, "line": line, "text": text, "text_a": text_a, "text_b": text_b}


def pipeline_kind(pipe: Any) -> Kind:
    """What ``pipe`` takes: ``"text"``, ``"pair"`` or ``"both"`` (a model with text and pair heads)."""
    from ..runtime.pipeline import MultiTaskPipeline, PairPipeline

    return "both" if isinstance(pipe, MultiTaskPipeline) else "pair" if isinstance(pipe, PairPipeline) else "text"


def predict_rows(pipe: Any, rows: list[dict[str, Any]], batch_size: int | None = None) -> list[dict[str, Any]]:
    """``rows`` with ``result`` added (a JSON string, as :func:`toolkit.cli_io.to_json` writes it):
    one pipeline call for the texts and one for the pairs, each batched by length."""
    texts = [i for i, r in enumerate(rows) if r["text"] is not None]
    pairs = [i for i, r in enumerate(rows) if r["text"] is None]
    out = [dict(r) for r in rows]
    for idx, inputs in ((texts, [rows[i]["text"] for i in texts]), (pairs, [(rows[i]["text_a"], rows[i]["text_b"]) for i in pairs])):
        if idx:
            for i, result in zip(idx, pipe(inputs, batch_size=batch_size)):
                out[i]["result"] = to_json(result, f"{rows[i]['file']}:{rows[i]['line']}")
    return out


class RowWriter:
    """Appends predicted rows to one JSONL or Parquet file (use as a context manager with
    :func:`atomic_path`); the one writer of local and Ray mode."""

    def __init__(self, path: Path, fmt: Format) -> None:
        self.fmt = fmt
        if fmt == "parquet":
            pa = require_pyarrow()
            self.schema = pa.schema([("file", pa.string()), ("line", pa.int64()), ("text", pa.string()), ("text_a", pa.string()),
                                     ("text_b", pa.string()), ("result", pa.string())])
            self.writer = pa.parquet.ParquetWriter(str(path), self.schema)
        else:
            self.stream = open(path, "w", encoding="utf-8")

    def write(self, rows: list[dict[str, Any]]) -> None:
        if self.fmt == "parquet":
            import pyarrow as pa

            self.writer.write_table(pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=self.schema))
            return
        for r in rows:  # the result is JSON already: splice it in rather than parse it again
            head = to_json({k: v for k, v in r.items() if k != "result" and v is not None}, f"{r['file']}:{r['line']}")
            self.stream.write(f'{head[:-1]}, "result": {r["result"]}}}\n')

    def close(self) -> None:
        (self.writer if self.fmt == "parquet" else self.stream).close()

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_output(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a batch output (JSONL or Parquet), ``result`` parsed, None fields dropped.

    >>> read_output("out/notes.jsonl")[0]["line"]  # doctest: +SKIP
    1
    """
    path = Path(path)
    if path.suffix == ".parquet":
        rows = require_pyarrow().parquet.read_table(path).to_pylist()
        return [{k: json.loads(v) if k == "result" else v for k, v in r.items() if v is not None} for r in rows]
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def run_batch(
    name: str, inputs: Sequence[str], output_dir: str | Path, fmt: Format = "jsonl", text_field: str = "text",
    chunk_size: int = CHUNK_SIZE, progress: bool = False, batch_size: int | None = None, **load_options: Any,
) -> list[Path]:
    """Run model ``name`` over every input file here, one output per input in ``output_dir``.

    Args:
        name: registered model name or model folder.
        inputs: files or globs (TXT, JSONL, Parquet).
        output_dir: created when missing; gets ``<stem>.jsonl`` or ``<stem>.parquet`` per input.
        fmt: ``"jsonl"`` or ``"parquet"``.
        text_field: the JSONL/Parquet field holding the text (pairs: ``text_a``, ``text_b``).
        chunk_size: lines read, predicted and written at a time (memory stays bounded).
        progress: a tqdm bar over the lines.
        batch_size: windows per encoder pass (the pipeline's batching).
        load_options: passed to :func:`toolkit.load` (``tasks``, ``runtime``, ``quantize``, ``threads``, ``device``).

    Returns the output paths.

    Example:
        >>> run_batch("ner-medical", ["a.txt", "b.jsonl"], "out", runtime="onnx", quantize="int8")  # doctest: +SKIP
        [PosixPath('out/a.jsonl'), PosixPath('out/b.jsonl')]
    """
    from .. import load

    files, outputs = plan(inputs, output_dir, fmt, chunk_size)
    pipe = load(name, batch_size=batch_size, **load_options)
    kind = pipeline_kind(pipe)
    batches = (predict_rows(pipe, read_shard(s, kind, text_field), batch_size) for path in files for s in shards(path, chunk_size))
    return write_outputs(files, outputs, fmt, batches, progress)


def write_outputs(files: Sequence[Path], outputs: Sequence[Path], fmt: Format, batches: Iterable[list[dict[str, Any]]],
                  progress: bool = False) -> list[Path]:
    """Write predicted row ``batches`` (in input order: file by file, line by line) to ``outputs``,
    one file per input (an input without rows gets an empty file); each output is renamed into
    place when its rows are done, so a failure leaves no partial file."""
    pieces = _by_file(batches, {str(p): k for k, p in enumerate(files)}, progress_bar(progress))
    pending = next(pieces, None)
    for k, out in enumerate(outputs):
        with atomic_path(out) as tmp, RowWriter(tmp, fmt) as writer:
            while pending is not None and pending[0] == k:
                writer.write(pending[1])
                pending = next(pieces, None)
        logger.info("wrote %s", out)
    return list(outputs)


def _by_file(batches: Iterable[list[dict[str, Any]]], index: dict[str, int], bar: Any) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """``(input number, rows)`` runs of each batch; checks that the rows come in input order."""
    last = (-1, 0)
    for rows in batches:
        start = 0
        for j, r in enumerate(rows):
            key = (index[r["file"]], r["line"])
            if key <= last:
                raise RuntimeError(f"row {r['file']}:{r['line']} came after {last}: batch outputs must come in input order")
            if j > start and key[0] != last[0]:
                yield last[0], rows[start:j]
                start = j
            last = key
        if rows[start:]:
            yield last[0], rows[start:]
        bar.update(len(rows))
    bar.close()


def plan(inputs: Sequence[str], output_dir: str | Path, fmt: Format, chunk_size: int) -> tuple[list[Path], list[Path]]:
    """Checked inputs and their outputs (the output folder created), before any model loads."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    files = expand_inputs([inputs] if isinstance(inputs, str) else inputs)
    if fmt == "parquet" or any(input_format(p) == "parquet" for p in files):
        require_pyarrow()
    outputs = output_paths(files, output_dir, fmt)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return files, outputs


def progress_bar(enabled: bool):
    """A tqdm bar over lines (disabled: a no-op)."""
    from tqdm.auto import tqdm

    return tqdm(unit="line", desc="batch", disable=not enabled)


__all__ = ["CHUNK_SIZE", "RowWriter", "Shard", "atomic_path", "expand_inputs", "plan", "predict_rows", "read_output", "read_shard",
           "run_batch", "shards", "write_outputs"]
