"""Strict config parsing shared by the manifest, recipes and normalisation settings."""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Iterable, TypeVar

T = TypeVar("T")


def check_keys(where: str, data: dict[str, Any], allowed: Iterable[str]) -> None:
    """Raise ``ValueError`` naming any key of ``data`` that is not in ``allowed`` (typos must not pass)."""
    allowed = list(allowed)
    unknown = set(data) - set(allowed)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """``cls(**data)`` for a dataclass, refusing unknown keys."""
    data = dict(data or {})
    check_keys(where, data, [f.name for f in fields(cls)])
    return cls(**data)
