"""Where corpus bytes become located text: a file or a zip member, UTF-8, in streamed pieces.

Every reader opens its input here, so every reader gets the same guarantees:

* a UTF-8 byte-order mark at the start of the file (or zip member) is dropped, never part of the
  first text or column name;
* bytes that are not UTF-8 raise :class:`CorpusError` naming
  ``file:line``, the line, and the ``iconv`` command that converts it;
* the file is read in pieces of about :data:`PIECE_BYTES` that end at a line end, so a reader can
  stream a large corpus without holding its text (JSON *array* files are the exception: they are
  one document and are read whole).

Line numbers count ``\\n`` line ends here (a ``\\r\\n`` is one line end). The column reader adds
its own rule for lone ``\\r`` (see :mod:`toolkit.data.readers_columns`).

Example:
    >>> # with open_binary("msra.zip", "dh_msra.txt") as (handle, where):
    >>> #     for piece in text_pieces(handle, where): ...     where == "msra.zip!dh_msra.txt"
"""
from __future__ import annotations

import difflib
import io
import itertools
import json
import logging
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator

from toolkit.errors import DataError

logger = logging.getLogger(__name__)

PIECE_BYTES = 1 << 20
BOM = "\ufeff"
MAX_LINE_CHARS = 120


def shorten(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """``text`` cut to ``limit`` characters with ``...`` marking the cut.

    >>> shorten("abcdef", 4)
    'abc...'
    """
    return text if len(text) <= limit else text[: limit - 1] + "..."


class CorpusError(DataError):
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


def location(path: str | Path, member: str | None = None) -> str:
    """The name used in ``source`` fields: ``path`` or ``path!member`` for a file inside a zip."""
    return f"{path}!{member}" if member else str(path)


def decode(raw: bytes | bytearray, where: str, first_line: int = 1, bom: bool = True) -> str:
    """UTF-8 text from ``raw`` (a leading BOM is dropped when ``bom``); :class:`CorpusError` with the line if not UTF-8.

    ``first_line`` is the line number of ``raw``'s first line (for a piece in the middle of a file).

    >>> decode(b"\\xef\\xbb\\xbflabel", "a.csv")
    'label'
    """
    try:
        return raw.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as err:
        line_no = first_line + raw[: err.start].count(b"\n")
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        line_end = raw.find(b"\n", err.start)
        line = bytes(raw[line_start: line_end if line_end >= 0 else None])
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


@contextmanager
def open_binary(path: str | Path, member: str | None = None) -> Iterator[tuple[IO[bytes], str]]:
    """``(binary handle, where)`` of a file, or of one ``member`` of a ``.zip`` file, closed on exit."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path} (check the path, or the data root "
                                "for catalogued datasets)")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            member = zip_member(archive, path, member)
            with archive.open(member) as handle:
                yield handle, location(path, member)
        return
    if member is not None:
        raise CorpusError(f"member={member!r} was given but the file is not a zip archive", where=str(path))
    with path.open("rb") as handle:
        yield handle, location(path)


def read_text(path: str | Path, member: str | None = None) -> tuple[str, str]:
    """``(text, where)`` of a whole UTF-8 file, or of one ``member`` of a ``.zip`` file (BOM dropped).

    >>> # text, where = read_text("msra.zip", "dh_msra.txt")  -> where == "msra.zip!dh_msra.txt"
    """
    with open_binary(path, member) as (handle, where):
        return decode(handle.read(), where), where


def _last_lone_cr(buf: bytearray) -> int:
    """Index just after the last ``\\r`` of ``buf`` that is followed by a byte other than ``\\r``/``\\n``."""
    at = buf.rfind(b"\r", 0, len(buf) - 1)
    while at >= 0 and buf[at + 1] in b"\r\n":
        at = buf.rfind(b"\r", 0, at)
    return at + 1


def text_pieces(handle: IO[bytes], where: str, size: int | None = None) -> Iterator[str]:
    """Decoded text of ``handle`` in pieces of about ``size`` bytes (:data:`PIECE_BYTES`), each ending at a line end.

    A piece ends after a ``\\n`` (or, in a file without one, after a ``\\r`` not followed by another
    line-end byte), so no character, ``\\r\\n`` pair or run of ``\\r`` before a ``\\n`` is cut.
    """
    buf = bytearray()
    line, first = 1, True
    size = size or PIECE_BYTES
    while True:
        data = handle.read(size)
        buf += data
        cut = len(buf) if not data else (buf.rfind(b"\n") + 1 or _last_lone_cr(buf))
        if cut:
            piece = buf[:cut]
            del buf[:cut]
            text = decode(piece, where, line, bom=first)
            line += piece.count(b"\n")
            first = False
            yield text
        if not data:
            return


def numbered_lines(pieces: Iterable[str]) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` for the lines of ``pieces``, split at ``\\n`` only, ``\\r\\n`` ends removed.

    >>> list(numbered_lines(["a\\r\\nb", "c\\n"]))
    [(1, 'a'), (2, 'bc')]
    """
    number, tail = 0, ""
    for piece in pieces:
        lines = (tail + piece).split("\n") if tail else piece.split("\n")
        tail = lines.pop()
        for line in lines:
            number += 1
            yield number, line[:-1] if line.endswith("\r") else line
    if tail:
        yield number + 1, tail[:-1] if tail.endswith("\r") else tail


def split_lines(text: str) -> list[str]:
    """Lines of ``text`` without their ``\\n`` / ``\\r\\n`` ends (only ``\\n`` splits, unlike ``splitlines``)."""
    return [line for _, line in numbered_lines([text])]


def table_lines(pieces: Iterable[str]) -> Iterator[str]:
    """Lines for :mod:`csv` with their ends kept, split at ``\\n``, ``\\r\\n`` or ``\\r`` (as ``newline=""`` does)."""
    for piece in pieces:
        yield from io.StringIO(piece, newline="")


def iter_json_records(text: str, where: str) -> Iterator[tuple[int, object]]:
    """``(line_number, record)`` from the whole text of a JSON array file or a JSON-lines file.

    Raises :class:`CorpusError` with the line for JSON that does not parse.
    """
    if not text.lstrip().startswith("["):
        yield from _json_lines(numbered_lines([text]), where)
        return
    yield from _json_array(text, where)


def json_file_records(pieces: Iterable[str], where: str) -> Iterator[tuple[int, object]]:
    """:func:`iter_json_records` over streamed ``pieces``: JSON lines stream, a JSON array is read whole."""
    pieces = iter(pieces)
    head: list[str] = []
    for piece in pieces:
        head.append(piece)
        if piece.strip():
            break
    chained = itertools.chain(head, pieces)
    if "".join(head).lstrip().startswith("["):
        yield from _json_array("".join(chained), where)
    else:
        yield from _json_lines(numbered_lines(chained), where)


def _json_lines(lines: Iterable[tuple[int, str]], where: str) -> Iterator[tuple[int, object]]:
    for number, line in lines:
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise CorpusError(f"invalid JSON ({err.msg}, column {err.colno})", where=f"{where}:{number}",
                              line=line, expected="one JSON object per line") from None


def _json_array(text: str, where: str) -> Iterator[tuple[int, object]]:
    stripped = text.lstrip()
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
