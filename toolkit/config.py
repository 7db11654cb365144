"""Strict config parsing shared by the manifest, recipes, the data catalogue and normalisation settings.

Unknown keys are errors, and simple values are checked against the dataclass's field types: YAML
reads ``1e-4`` as a string and ``"no"`` as a truthy string, and both must fail here, with the key's
name, rather than deep inside training. Every error is a :class:`~toolkit.errors.ConfigError`.

:func:`read_yaml` is the one way the toolkit reads YAML: ``yaml.safe_load`` with limits (file size,
aliases, expanded size) so that a hostile file cannot hang or exhaust a process, and syntax errors
reported as ``file:line``.
"""
from __future__ import annotations

import os
import stat
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml

from .errors import ConfigError, ModelFileMissingError

T = TypeVar("T")

MAX_YAML_BYTES = 1 << 20  # manifests, recipes and the catalogue are a few KiB
MAX_YAML_ALIASES = 100  # anchors are allowed (recipes may share settings), alias bombs are not
MAX_YAML_NODES = 100_000  # nodes after expanding every alias


def read_yaml(path: str | Path, max_bytes: int = MAX_YAML_BYTES) -> Any:
    """The YAML document in ``path`` read with ``yaml.safe_load`` semantics, within limits.

    A missing file is a :class:`~toolkit.errors.ModelFileMissingError` (a ``FileNotFoundError``);
    a file that is not regular (a FIFO), larger than ``max_bytes``, not UTF-8, not valid YAML
    (``file:line``), or with more than :data:`MAX_YAML_ALIASES` aliases or
    :data:`MAX_YAML_NODES` nodes once expanded, is a :class:`~toolkit.errors.ConfigError`.

    Example:
        >>> read_yaml("pretrained/zh-multitask/toolkit.yaml")["name"]  # doctest: +SKIP
        'zh-multitask'
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as err:
        raise ModelFileMissingError(f"{path} is missing or unreadable ({err.strerror})") from err
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path} is not a regular file; replace it with a YAML file")
    if st.st_size > max_bytes:
        raise ConfigError(f"{path} has {st.st_size:,} bytes, more than the {max_bytes:,} a YAML file may have here; "
                          "is it the right file?")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from err
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)  # libyaml when installed: 6x faster
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(path, node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = " ".join(str(x) for x in (err.context, err.problem) if x)
        raise ConfigError(f"{where}: invalid YAML ({problem}); fix the syntax on that line") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({err}); fix the file") from err
    finally:
        loader.dispose()


def _check_size(path: Path, root: yaml.Node) -> None:
    """Refuse documents with too many aliases or too many nodes once aliases are expanded."""
    sizes: dict[int, int] = {}
    seen: set[int] = set()
    aliases = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # post-order without recursion: a deep document must not overflow the stack
        node, done = stack.pop()
        if id(node) in sizes:
            aliases += 1  # a node reached again is an alias (or a merge of an anchor)
            continue
        children = _children(node)
        if not done:
            if id(node) in seen:
                raise ConfigError(f"{path}: a YAML alias refers to itself; remove the recursive anchor")
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children)
            continue
        sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
        if aliases > MAX_YAML_ALIASES or sizes[id(node)] > MAX_YAML_NODES:
            raise ConfigError(f"{path}: too many YAML aliases ({aliases}) or nodes ({sizes[id(node)]:,} once expanded; "
                              f"limits {MAX_YAML_ALIASES} and {MAX_YAML_NODES:,}); write the values out instead of "
                              "repeating anchors")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_keys(where: str, data: dict[str, Any], allowed: Iterable[str]) -> None:
    """Raise ``ConfigError`` (a ``ValueError``) naming any key of ``data`` that is not in ``allowed`` (typos must not pass)."""
    allowed = list(allowed)
    unknown = set(data) - set(allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def coerce(where: str, key: str, value: Any, annotation: str) -> Any:
    """``value`` checked (and, for numbers written as strings, converted) against ``annotation``.

    >>> coerce("train", "lr", "1e-4", "float")
    0.0001
    """
    kinds = [k.strip() for k in str(annotation).split("|")]
    if value is None:
        if "None" in kinds or "Any" in kinds:
            return None
        raise ConfigError(f"{where}: {key} must be set (a {annotation})")
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
    raise ConfigError(f"{where}: {key} must be a {annotation}, got {value!r}")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """``cls(**data)`` for a dataclass, refusing unknown keys and values of the wrong type."""
    data = dict(data or {})
    types = {f.name: f.type for f in fields(cls)}
    check_keys(where, data, list(types))
    return cls(**{k: coerce(where, k, v, types[k]) for k, v in data.items()})
