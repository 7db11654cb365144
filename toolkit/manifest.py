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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from .config import check_keys
from .normalize import NormalizationConfig
from .registry import HEADS, MANIFEST, head_class
from .version import __version__

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
    def from_dict(cls, name: str, data: dict[str, Any]) -> "TaskSpec":
        if not isinstance(data, dict):
            raise ValueError(f"task {name!r}: expected a mapping, got {type(data).__name__}")
        check_keys(f"task {name!r}", data, cls.KEYS)
        for key in ("kind", "labels"):
            if key not in data:
                raise ValueError(f"task {name!r}: missing {key!r}")
        if not isinstance(data["labels"], (list, tuple)):
            raise ValueError(f"task {name!r}: labels must be a list such as [PER, LOC], got {data['labels']!r}")
        if data["kind"] not in HEADS:  # by name: importing the head classes would import torch
            raise ValueError(f"task {name!r}: unknown head kind {data['kind']!r}; known kinds: {', '.join(HEADS)}")
        return cls(
            name=name,
            kind=data["kind"],
            labels=[str(x) for x in data["labels"]],
            scheme=data.get("scheme"),
            options=dict(data.get("options") or {}),
            weights=data.get("weights") or f"heads/{name}.safetensors",
            metrics=dict(data.get("metrics") or {}),
        )

    def build_head(self, hidden_size: int):
        options = dict(self.options)
        if self.scheme is not None:
            options["scheme"] = self.scheme
        try:
            return head_class(self.kind)(hidden_size, self.labels, **options)
        except TypeError as err:
            raise ValueError(f"task {self.name!r}: bad options for a {self.kind} head: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "labels": list(self.labels)}
        if self.scheme is not None:
            data["scheme"] = self.scheme
        data.update(options=dict(self.options), weights=self.weights, metrics=dict(self.metrics))
        return data


@dataclass
class Manifest:
    """Everything needed to rebuild a :class:`toolkit.model.MultiTaskModel` from its folder."""

    name: str
    tasks: dict[str, TaskSpec]
    max_length: int = 256
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    encoder: str = "encoder"
    format_version: int = FORMAT_VERSION
    toolkit_version: str = __version__

    KEYS = ("format_version", "toolkit_version", "name", "encoder", "max_length", "normalization", "tasks")

    @classmethod
    def read(cls, folder: str | Path) -> "Manifest":
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a model folder: {MANIFEST} is missing")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a YAML mapping")
        check_keys(str(path), data, cls.KEYS)
        version = int(data.get("format_version", 0))
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {version} is not supported by toolkit {__version__} (expects {FORMAT_VERSION}); upgrade toolkit")
        tasks = data.get("tasks") or {}
        if not tasks:
            raise ValueError(f"{path}: the model has no tasks")
        return cls(
            name=str(data.get("name", Path(folder).name)),
            tasks={name: TaskSpec.from_dict(name, spec) for name, spec in tasks.items()},
            max_length=int(data.get("max_length", 256)),
            normalization=NormalizationConfig.from_dict(data.get("normalization")),
            encoder=str(data.get("encoder", "encoder")),
            format_version=version,
            toolkit_version=str(data.get("toolkit_version", "")),
        )

    def write(self, folder: str | Path) -> None:
        data = {
            "format_version": self.format_version,
            "toolkit_version": __version__,
            "name": self.name,
            "encoder": self.encoder,
            "max_length": self.max_length,
            "normalization": self.normalization.to_dict(),
            "tasks": {name: spec.to_dict() for name, spec in self.tasks.items()},
        }
        text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
        (Path(folder) / MANIFEST).write_text(text, encoding="utf-8")

    def select(self, tasks: Iterable[str] | None) -> list[str]:
        """Validated task names (all when ``tasks`` is None)."""
        if tasks is None:
            return list(self.tasks)
        tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise KeyError(f"model {self.name!r} has no task {unknown[0]!r}; its tasks: {', '.join(self.tasks)}")
        return tasks

    def default_card(self) -> str:
        lines = [f"# {self.name}", "", "Multi-task model folder written by toolkit {}.".format(__version__), "", "| task | kind | labels |", "|---|---|---|"]
        for name, spec in self.tasks.items():
            lines.append(f"| {name} | {spec.kind} | {', '.join(spec.labels)} |")
        lines += ["", "No training data, metrics or licence recorded: this card was generated automatically.", ""]
        return "\n".join(lines)
