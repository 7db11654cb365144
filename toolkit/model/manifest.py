"""The model folder's manifest, ``toolkit.yaml``: read with ``yaml.safe_load`` into dataclasses.

Unknown keys are errors (a typo must not be ignored silently). Example manifest::

    format_version: 1
    toolkit_version: 0.1.0
    name: zh-multitask
    encoder: encoder
    max_length: 256
    normalization: {opencc: t2s, fullwidth: true, invisible: true, whitespace: true}
    tasks:
      ner:
        kind: tagger
        labels: [dis, sym]
        scheme: BIO
        options: {dropout: 0.1}
        weights: heads/ner.safetensors
        metrics: {cmeee:dev: {f1: 0.62}}
    files:                    # sha256 of every file the folder needs, written last (toolkit.model.folder)
      encoder/config.json: 5b1c...
      heads/ner.safetensors: 9e0f...

Paths (``encoder``, ``weights``, ``files``) are relative and stay inside the folder. Every error is a
:class:`~toolkit.errors.ConfigError` naming ``toolkit.yaml`` (a missing manifest:
:class:`~toolkit.errors.ModelFileMissingError`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..config import check_keys, read_yaml
from ..errors import ConfigError, ModelFileMissingError, UnknownNameError
from .folder import checksums, interrupted_save_hint, needed_files, relative_path
from ..text.normalize import NormalizationConfig
from .. import kinds
from ..files import MANIFEST
from ..version import __version__

FORMAT_VERSION = 1


@dataclass
class TaskSpec:
    """One head: its kind, labels, tag scheme (taggers), options, weights file and metrics."""

    name: str
    kind: str
    labels: list[str]
    scheme: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    weights: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    KEYS = ("kind", "labels", "scheme", "options", "weights", "metrics")

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any], where: str = "") -> "TaskSpec":
        """A task spec from its manifest (or recipe) mapping; ``where`` prefixes errors (a file name)."""
        at = f"{where}: task {name!r}" if where else f"task {name!r}"
        if not isinstance(data, dict):
            raise ConfigError(f"{at}: expected a mapping (kind, labels, ...), got {type(data).__name__}")
        check_keys(at, data, cls.KEYS)
        for key in ("kind", "labels"):
            if key not in data:
                raise ConfigError(f"{at}: missing {key!r}")
        if not isinstance(data["labels"], (list, tuple)) or not data["labels"]:
            raise ConfigError(f"{at}: labels must be a non-empty list such as [PER, LOC], got {data['labels']!r}")
        if data["kind"] not in kinds.KINDS:  # by name: importing the head classes would import torch
            raise ConfigError(f"{at}: unknown head kind {data['kind']!r}; known kinds: {', '.join(kinds.KINDS)}")
        for key in ("options", "metrics"):
            if not isinstance(data.get(key) or {}, dict):
                raise ConfigError(f"{at}: {key} must be a mapping, got {data[key]!r}")
        return cls(
            name=name,
            kind=data["kind"],
            labels=[str(x) for x in data["labels"]],
            scheme=data.get("scheme"),
            options=dict(data.get("options") or {}),
            weights=relative_path(at, "weights", data.get("weights") or f"heads/{name}.safetensors"),
            metrics=dict(data.get("metrics") or {}),
        )

    def build_head(self, hidden_size: int):
        options = kinds.get(self.kind).head_options(self)
        try:
            return kinds.head_class(self.kind)(hidden_size, self.labels, **options)
        except TypeError as err:
            raise ConfigError(f"task {self.name!r}: bad options for a {self.kind} head: {err}; fix its options in {MANIFEST}") from err

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "labels": list(self.labels)}
        if self.scheme is not None:
            data["scheme"] = self.scheme
        data.update(options=dict(self.options), weights=self.weights, metrics=dict(self.metrics))
        return data


@dataclass
class Manifest:
    """Everything needed to rebuild a :class:`toolkit.model.multitask.MultiTaskModel` from its folder."""

    name: str
    tasks: dict[str, TaskSpec]
    max_length: int = 256
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    encoder: str = "encoder"
    format_version: int = FORMAT_VERSION
    toolkit_version: str = __version__
    files: dict[str, str] | None = None  # None: a folder written before checksums (see toolkit.model.folder)

    KEYS = ("format_version", "toolkit_version", "name", "encoder", "max_length", "normalization", "tasks", "files")

    @classmethod
    def read(cls, folder: str | Path) -> "Manifest":
        """Parse ``folder/toolkit.yaml`` (checks its syntax and values, not the files it names:
        :func:`toolkit.model.folder.verify` does that)."""
        path = Path(folder) / MANIFEST
        if not path.exists() and not path.is_symlink():
            raise ModelFileMissingError(f"{folder} is not a model folder: {MANIFEST} is missing{interrupted_save_hint(folder)}")
        data = read_yaml(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a YAML mapping (format_version, name, encoder, tasks ...), got {type(data).__name__}")
        check_keys(str(path), data, cls.KEYS)
        version = _integer(path, "format_version", data.get("format_version", 0))
        if version != FORMAT_VERSION:
            raise ConfigError(f"{path}: format_version {version} is not supported by toolkit {__version__} (expects {FORMAT_VERSION}); upgrade toolkit")
        tasks = data.get("tasks") or {}
        if not isinstance(tasks, dict):
            raise ConfigError(f"{path}: tasks must be a mapping of task name to its spec (ner: {{kind: tagger, labels: [...]}}), "
                              f"got a {type(tasks).__name__}; write each task as 'name:' followed by its keys")
        if not tasks:
            raise ConfigError(f"{path}: the model has no tasks")
        files = data.get("files")
        if files is not None and not isinstance(files, dict):
            raise ConfigError(f"{path}: files must be a mapping of path to sha256, got a {type(files).__name__}; re-save the model")
        try:
            normalization = NormalizationConfig.from_dict(data.get("normalization"))
        except ValueError as err:
            raise ConfigError(f"{path}: normalization: {err}") from err
        return cls(
            name=str(data.get("name", Path(folder).name)),
            tasks={str(name): TaskSpec.from_dict(str(name), spec, str(path)) for name, spec in tasks.items()},
            max_length=_integer(path, "max_length", data.get("max_length", 256)),
            normalization=normalization,
            encoder=relative_path(str(path), "encoder", data.get("encoder", "encoder")),
            format_version=version,
            toolkit_version=str(data.get("toolkit_version", "")),
            files=None if files is None else {relative_path(str(path), "files", k): str(v) for k, v in files.items()},
        )

    def write(self, folder: str | Path) -> None:
        """Write ``folder/toolkit.yaml`` with the sha256 of the files the folder needs (so write it
        last, once those files are complete); sets :attr:`files`."""
        self.files = checksums(folder, needed_files(folder, self))
        data = {
            "format_version": self.format_version,
            "toolkit_version": __version__,
            "name": self.name,
            "encoder": self.encoder,
            "max_length": self.max_length,
            "normalization": self.normalization.to_dict(),
            "tasks": {name: spec.to_dict() for name, spec in self.tasks.items()},
            "files": dict(self.files),
        }
        text = yaml.dump(data, Dumper=_NoAliases, allow_unicode=True, sort_keys=False)
        tmp = Path(folder) / f".{MANIFEST}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, Path(folder) / MANIFEST)  # a reader sees the old manifest or the new one

    def select(self, tasks: Iterable[str] | None) -> list[str]:
        """Validated task names (all when ``tasks`` is None)."""
        if tasks is None:
            return list(self.tasks)
        tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise UnknownNameError(f"model {self.name!r} has no task {unknown[0]!r}; its tasks: {', '.join(self.tasks)}")
        return tasks

    def default_card(self) -> str:
        lines = [f"# {self.name}", "", "Multi-task model folder written by toolkit {}.".format(__version__), "", "| task | kind | labels |", "|---|---|---|"]
        for name, spec in self.tasks.items():
            lines.append(f"| {name} | {spec.kind} | {', '.join(spec.labels)} |")
        lines += ["", "No training data, metrics or licence recorded: this card was generated automatically.", ""]
        return "\n".join(lines)


class _NoAliases(yaml.SafeDumper):
    """Writes shared values out in full: the manifest reader refuses alias-heavy YAML."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _integer(path: Path, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{path}: {key} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError as err:
        raise ConfigError(f"{path}: {key} must be an integer, got {value!r}") from err


def seal(folder: str | Path) -> dict[str, str]:
    """Record the checksums of a folder's current files in its manifest (for folders written before
    ``files:`` existed, or edited by hand on purpose); returns them. Only the manifest is rewritten.

    Example:
        >>> seal("my-old-model")  # doctest: +SKIP
        {'encoder/config.json': '5b1c...', ...}
    """
    manifest = Manifest.read(folder)
    manifest.write(folder)
    return dict(Manifest.read(folder).files or {})
