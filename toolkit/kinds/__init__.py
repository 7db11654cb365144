"""Head kinds, by name: the plain-dict registry :data:`KINDS` and the one line that adds a kind.

Every kind-specific decision (data it trains on, features, decoder, window policy, results,
metric, ONNX axes) belongs to its :class:`~toolkit.kinds.base.HeadKind` object; see
``ARCHITECTURE.md`` for how to add one. Nothing here imports torch.

Example:
    >>> get("tagger").data, get("matcher").input
    ('ner', 'pair')
    >>> for_data("cls").name
    'classifier'
"""
from __future__ import annotations

import difflib

from ..errors import UnknownNameError
from .base import Feature, HeadKind, Item
from .labels import ClassifierKind, MatcherKind
from .span import SpanKind
from .tagger import TaggerKind

KINDS: dict[str, HeadKind] = {}


def register(kind: HeadKind) -> HeadKind:
    """Make ``kind`` known under ``kind.name`` (manifests, recipes, ``toolkit train <data> --head NAME``)."""
    KINDS[kind.name] = kind
    return kind


def get(name: str) -> HeadKind:
    """The kind called ``name``; :class:`~toolkit.errors.UnknownNameError` naming the known ones otherwise."""
    if name in KINDS:
        return KINDS[name]
    close = difflib.get_close_matches(str(name), list(KINDS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownNameError(f"unknown head kind {name!r}.{hint} Known kinds: {', '.join(KINDS)}")


def for_data(data: str, head: str | None = None) -> HeadKind:
    """The kind that trains on ``data`` (``ner``, ``cls``, ``pair``): ``head`` if given (it must
    read that data), else the data's default kind."""
    if head is not None:
        kind = get(head)
        if kind.data != data:
            raise UnknownNameError(f"a {kind.name} head trains on {kind.data} data, not {data}; heads for {data} data: "
                                   f"{', '.join(k.name for k in KINDS.values() if k.data == data)}")
        return kind
    for kind in KINDS.values():
        if kind.data == data and kind.default_for_data:
            return kind
    raise UnknownNameError(f"no head kind trains on {data!r} data; data kinds: {', '.join(sorted(data_kinds()))}")


def data_kinds() -> set[str]:
    """The data words ``toolkit train`` takes (``ner``, ``cls``, ``pair`` ...)."""
    return {k.data for k in KINDS.values()}


def head_class(name: str):
    """The torch head class of kind ``name`` (imports torch)."""
    from importlib import import_module

    head = get(name).head
    if not isinstance(head, str):  # a kind defined in user code may hold the class itself
        return head
    module, _, cls = head.partition(":")
    return getattr(import_module(module), cls)


register(TaggerKind())
register(ClassifierKind())
register(MatcherKind())
register(SpanKind())

__all__ = ["KINDS", "HeadKind", "Feature", "Item", "register", "get", "for_data", "data_kinds", "head_class"]
