"""Text normalisation that remembers where every character came from.

The model sees normalised text (simplified characters, half-width ASCII, no invisible characters,
plain spaces); users get spans in their **original** string. :class:`Normalized` keeps, for every
character of the normalised text, the ``[start, end)`` range of original characters it came from,
so ``original[slice(*n.to_original(s, e))]`` is the original text of normalised ``[s, e)``.

Example:
    >>> norm = Normalizer(NormalizationConfig(opencc="t2s"))
    >>> n = norm("醫院\\u200b門診ＣＴ")
    >>> n.text
    '医院门诊CT'
    >>> n.original[slice(*n.to_original(2, 4))]
    '門診'
"""
from __future__ import annotations

import logging
import re
import threading
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..config import from_dict

logger = logging.getLogger(__name__)

# Zero-width characters, BOM, bidi marks, soft hyphen and C0/C1 controls other than \t \n \r.
_INVISIBLE = re.compile(
    "[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\u206a-\u206f\ufeff\ufe00-\ufe0f"
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
)
_FULLWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}
_SPACES = {ord(c): " " for c in "\t\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"}


@dataclass(frozen=True)
class NormalizationConfig:
    """What :class:`Normalizer` does; stored in every model folder's manifest.

    Attributes:
        opencc: an OpenCC conversion (``"t2s"``, ``"tw2s"``, ``"hk2s"``, ``"s2t"`` ...) or ``None``.
        fullwidth: map full-width ASCII forms (U+FF01-U+FF5E) to their half-width forms.
        invisible: remove zero-width characters, BOM, bidi marks and control characters.
        whitespace: map every Unicode space (``\\u3000``, ``\\xa0``, tabs ...) to ``" "``; ``\\n`` stays.
    """

    opencc: str | None = "t2s"
    fullwidth: bool = True
    invisible: bool = True
    whitespace: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "NormalizationConfig":
        return from_dict(cls, data, "normalization settings")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Normalized:
    """A normalised text with the map back to the original.

    ``starts[i]``/``ends[i]`` are the original range that normalised character ``i`` came from.
    """

    original: str
    text: str
    starts: np.ndarray
    ends: np.ndarray

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a normalised span ``[start, end)`` (``end > start``) to the original string."""
        return int(self.starts[start]), int(self.ends[end - 1])


class Normalizer:
    """Callable that turns a string into a :class:`Normalized`; thread-safe."""

    def __init__(self, config: NormalizationConfig | None = None) -> None:
        self.config = config or NormalizationConfig()
        table: dict[int, Any] = {}
        if self.config.fullwidth:
            table.update(_FULLWIDTH)
        if self.config.whitespace:
            table.update(_SPACES)
        self._table = table
        self._converter = _opencc(self.config.opencc) if self.config.opencc else None
        self._lock = threading.Lock()

    def __call__(self, text: str) -> Normalized:
        if not isinstance(text, str):
            raise TypeError(f"expected a str, got {type(text).__name__}")
        n = len(text)
        index = np.arange(n, dtype=np.int64)
        out = text
        if self.config.invisible and _INVISIBLE.search(out):
            keep = np.ones(n, dtype=bool)
            for m in _INVISIBLE.finditer(out):
                keep[m.start()] = False
            index = index[keep]
            out = _INVISIBLE.sub("", out)
        if self._table:
            out = out.translate(self._table)  # 1:1 by construction
        starts, ends = index, index + 1
        if self._converter is not None and out:
            converted = self._convert(out)
            if len(converted) == len(out):
                out = converted
            else:  # a conversion changed the length: convert char by char to keep an exact map
                pieces = [self._convert(ch) or ch for ch in out]
                rep = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
                starts, ends = np.repeat(starts, rep), np.repeat(ends, rep)
                out = "".join(pieces)
        return Normalized(text, out, starts, ends)

    def _convert(self, text: str) -> str:
        with self._lock:  # OpenCC objects are not documented as thread-safe
            return self._converter.convert(text)


def _opencc(config: str):
    try:
        import opencc
    except ImportError as err:  # pragma: no cover - opencc is a dependency
        raise ImportError("traditional->simplified conversion needs OpenCC: pip install opencc") from err
    name = config if config.endswith(".json") else f"{config}.json"
    try:
        return opencc.OpenCC(name)
    except Exception as err:  # OpenCC raises its own error types for unknown configs
        raise ValueError(f"unknown OpenCC conversion {config!r} (try 't2s', 'tw2s', 'hk2s', 's2t'): {err}") from err


def is_blank(text: str) -> bool:
    """True for text that holds nothing but spaces and invisible characters."""
    return all(unicodedata.category(c) in ("Zs", "Zl", "Zp", "Cc", "Cf") for c in text)
