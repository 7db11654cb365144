"""Strict config parsing shared by the manifest, recipes and normalisation settings.

Unknown keys are errors, and simple values are checked against the dataclass's field types: YAML
reads ``1e-4`` as a string and ``"no"`` as a truthy string, and both must fail here, with the key's
name, rather than deep inside training.
"""
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


def coerce(where: str, key: str, value: Any, annotation: str) -> Any:
    """``value`` checked (and, for numbers written as strings, converted) against ``annotation``.

    >>> coerce("train", "lr", "1e-4", "float")
    0.0001
    """
    kinds = [k.strip() for k in str(annotation).split("|")]
    if value is None:
        if "None" in kinds or "Any" in kinds:
            return None
        raise ValueError(f"{where}: {key} must be set (a {annotation})")
    simple = {"int", "float", "bool", "str"} & set(kinds)
    if "Any" in kinds or not simple and not any(k.startswith(("dict", "list", "tuple")) for k in kinds):
        return value  # nested dataclasses and the like are checked by their own from_dict
    if any(k.startswith(("dict", "list", "tuple")) for k in kinds) and isinstance(value, (dict, list, tuple)):
        return value
    if isinstance(value, bool):
        if "bool" in kinds:
            return value
    elif "int" in kinds and isinstance(value, int):
        return value
    elif "float" in kinds and isinstance(value, (int, float)):
        return float(value)
    elif "int" in kinds and isinstance(value, float) and value.is_integer():
        return int(value)
    elif isinstance(value, str):
        if "str" in kinds:
            return value
        for kind, convert in (("int", int), ("float", float)):
            if kind in kinds:
                try:
                    return convert(value)
                except ValueError:
                    pass
    elif "str" in kinds and not isinstance(value, (dict, list)):
        return value
    raise ValueError(f"{where}: {key} must be a {annotation}, got {value!r}")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """``cls(**data)`` for a dataclass, refusing unknown keys and values of the wrong type."""
    data = dict(data or {})
    types = {f.name: f.type for f in fields(cls)}
    check_keys(where, data, list(types))
    return cls(**{k: coerce(where, k, v, types[k]) for k, v in data.items()})
