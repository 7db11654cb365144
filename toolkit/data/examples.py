"""The in-memory forms every reader produces and every trainer consumes.

All offsets are character offsets into ``text`` with ``end`` exclusive (Python slicing), whatever
convention the file on disk used. ``source`` is ``"path:line"`` so errors and warnings can point
at the line a user has to fix.

The classes use ``__slots__`` (no per-object ``__dict__``): a corpus of half a million sentences is
held in a few times its file size, not thirty.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Span:
    """An entity mention: ``text[start:end]`` has type ``label``."""

    start: int
    end: int
    label: str

    def as_tuple(self) -> tuple[int, int, str]:
        return (self.start, self.end, self.label)


@dataclass(slots=True)
class NerExample:
    """A text with its (possibly nested) entity spans."""

    text: str
    spans: list[Span] = field(default_factory=list)
    source: str | None = None


@dataclass(slots=True)
class TextExample:
    """A text with one class label."""

    text: str
    label: str
    source: str | None = None


@dataclass(slots=True)
class PairExample:
    """Two texts with one label for the pair (similar / not, entailment ...)."""

    text_a: str
    text_b: str
    label: str
    source: str | None = None
