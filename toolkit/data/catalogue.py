"""Public datasets by name: ``load_dataset("cmeee:train")`` -> ``(examples, report)``.

The names, files, checksums, licences and label sets live in ``catalogue.yaml`` beside this module
(package data: installed with the package). The files themselves are not in the
repository nor in the installed package; they are found under a *data root* the user names,
resolved in this order:

1. the ``data_root=`` argument (``--data-root`` on the command line);
2. the ``TOOLKIT_DATA_ROOT`` environment variable;
3. only as a development fallback in a source checkout: ``../shared/corpora`` beside the
   repository root, when that folder exists.

With none of them, :func:`resolve_data_root` raises, saying to pass ``--data-root`` or set
``TOOLKIT_DATA_ROOT``.

Each file's sha256 is checked once per process (a mismatch warns, it does not fail: a user's own
copy may differ, and the reader still validates every line).

Example:
    >>> list_datasets("pair")[:2]                                    # doctest: +SKIP
    ['bq:dev', 'bq:test']
    >>> examples, report = load_dataset("msra:test")                 # doctest: +SKIP
    >>> len(examples), dict(report.repaired)                         # doctest: +SKIP
    (4631, {'tags: inside without begin': 11})
"""
from __future__ import annotations

import difflib
import logging
import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from toolkit.config import read_yaml
from toolkit.data.readers import READER_TASKS, get_reader
from toolkit.data.validation import ReadReport
from toolkit.errors import UnknownNameError
from toolkit.files import file_sha256

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOGUE_PATH = Path(__file__).resolve().parent / "catalogue.yaml"  # package data: installed with the package
DATA_ROOT_ENV = "TOOLKIT_DATA_ROOT"
# The development fallback: only in a source checkout (not in an installed package), only when it exists.
DEFAULT_DATA_ROOT: Path | None = REPO_ROOT.parent / "shared" / "corpora" if (REPO_ROOT / "setup.py").is_file() else None
TASKS = ("ner", "cls", "pair")


class UnknownDatasetError(UnknownNameError):
    """An unknown dataset or split name; the message lists the known names and the closest one."""


@dataclass(frozen=True)
class SplitSpec:
    """One file (or one slice of a file) of a dataset."""

    path: str
    sha256: str | None = None
    count: int | None = None
    reader: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """A catalogue entry: how to read a dataset, and where it comes from."""

    id: str
    task: str
    reader: str
    splits: dict[str, SplitSpec]
    title: str = ""
    labels: list[str] = field(default_factory=list)
    licence: str = ""
    source: list[str] = field(default_factory=list)
    notes: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def reader_for(self, split: str) -> tuple[str, dict[str, Any]]:
        """Reader name and options for ``split`` (split-level settings override the dataset's)."""
        spec = self.splits[split]
        return spec.reader or self.reader, {**self.options, **spec.options}


def _build(cls: type, data: Any, where: str) -> Any:
    """``cls(**data)`` refusing unknown or missing keys with a message naming the entry."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    try:
        return cls(**data)
    except TypeError as err:
        raise ValueError(f"{where}: {err}") from None


@lru_cache(maxsize=4)
def load_catalogue(path: str | Path = CATALOGUE_PATH) -> dict[str, DatasetSpec]:
    """Parse a catalogue YAML file into ``{dataset id: DatasetSpec}``.

    >>> sorted(load_catalogue())[:3]     # doctest: +SKIP
    ['bq', 'ccks2017', 'chip-ctc']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset catalogue not found at {path}; it ships with the package as "
                                "toolkit/data/catalogue.yaml: reinstall the toolkit")
    raw = read_yaml(path) or {}  # limits and file:line syntax errors (toolkit.config)
    unknown = sorted(set(raw) - {"format_version", "datasets"})
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; allowed: format_version, datasets")
    if raw.get("format_version") != 1:
        raise ValueError(f"{path}: format_version {raw.get('format_version')!r} is not supported (expected 1)")
    catalogue: dict[str, DatasetSpec] = {}
    for name, entry in (raw.get("datasets") or {}).items():
        where = f"{path}: dataset {name!r}"
        if not isinstance(entry, dict) or not isinstance(entry.get("splits"), dict):
            raise ValueError(f"{where}: needs a 'splits' mapping")
        splits = {split: _build(SplitSpec, value, f"{where} split {split!r}")
                  for split, value in entry["splits"].items()}
        spec = _build(DatasetSpec, {**entry, "id": name, "splits": splits}, where)
        if spec.task not in TASKS:
            raise ValueError(f"{where}: task {spec.task!r} is not one of {', '.join(TASKS)}")
        for split in splits:
            reader, _ = spec.reader_for(split)
            get_reader(reader)  # raises for an unknown reader name
            if READER_TASKS[reader] != spec.task:
                raise ValueError(f"{where}: reader {reader!r} reads {READER_TASKS[reader]} data, not {spec.task}")
        catalogue[name] = spec
    return catalogue


def list_datasets(task: str | None = None) -> list[str]:
    """Every ``"dataset:split"`` name, optionally only those of one ``task`` (ner, cls or pair).

    >>> "cmeee:train" in list_datasets("ner")
    True
    """
    return sorted(f"{spec.id}:{split}" for spec in load_catalogue().values()
                  if task is None or spec.task == task for split in spec.splits)


def dataset_info(name: str) -> DatasetSpec:
    """The catalogue entry of dataset ``name`` (``"cmeee"`` or ``"cmeee:train"``).

    >>> dataset_info("ocnli").licence
    'CC BY-NC 2.0 (non-commercial)'
    """
    return _resolve_name(name, need_split=False)[0]


def _resolve_name(name: str, need_split: bool = True) -> tuple[DatasetSpec, str | None]:
    catalogue = load_catalogue()
    known = list_datasets()
    dataset, _, split = name.partition(":")
    if dataset not in catalogue:
        close = difflib.get_close_matches(name, known + list(catalogue), n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownDatasetError(f"unknown dataset {name!r}.{hint} Known: {', '.join(known)}")
    spec = catalogue[dataset]
    if not split:
        if need_split:
            choices = ", ".join(f"'{dataset}:{s}'" for s in spec.splits)
            raise UnknownDatasetError(f"name a split of {dataset!r}: {choices}")
        return spec, None
    if split not in spec.splits:
        close = difflib.get_close_matches(split, list(spec.splits), n=1, cutoff=0.5)
        hint = f" Did you mean '{dataset}:{close[0]}'?" if close else ""
        raise UnknownDatasetError(f"unknown split {split!r} of dataset {dataset!r}.{hint} "
                       f"Known: {', '.join(f'{dataset}:{s}' for s in spec.splits)}")
    return spec, split


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """The directory holding the corpora: the ``data_root`` argument (``--data-root``), else
    ``$TOOLKIT_DATA_ROOT``, else (a development fallback) :data:`DEFAULT_DATA_ROOT`, the checkout's
    ``../shared/corpora``, when it exists. Raises ``FileNotFoundError`` saying what to set otherwise.

    >>> resolve_data_root("/data/corpora")          # doctest: +SKIP
    PosixPath('/data/corpora')
    """
    if data_root is not None:
        root, origin = Path(data_root).expanduser(), "the data_root argument"
    elif os.environ.get(DATA_ROOT_ENV):
        root, origin = Path(os.environ[DATA_ROOT_ENV]).expanduser(), f"${DATA_ROOT_ENV}"
    elif DEFAULT_DATA_ROOT is not None and DEFAULT_DATA_ROOT.is_dir():
        return DEFAULT_DATA_ROOT
    else:
        fallback = f" ({DEFAULT_DATA_ROOT})" if DEFAULT_DATA_ROOT is not None else ""
        raise FileNotFoundError(
            "no data root for the catalogued corpora: pass --data-root /path/to/corpora (data_root= in Python) "
            f"or set {DATA_ROOT_ENV}=/path/to/corpora, the folder holding ner/, cls/ and pair/. (A source "
            f"checkout also falls back to ../shared/corpora beside the repository{fallback} when it exists.) "
            "See toolkit/data/CATALOGUE.md.")
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} (from {origin}) is not a directory")
    return root


def verify_file(path: str | Path, expected: str | None) -> bool:
    """True when ``path`` has the ``expected`` sha256 (or none is expected); warns on a mismatch."""
    if not expected:
        return True
    actual = file_sha256(path)
    if actual != expected.lower():
        logger.warning("%s: sha256 %s differs from the catalogue's %s; this copy is not the one the catalogue "
                       "describes, so counts and results may differ", path, actual, expected)
        return False
    return True


def dataset_path(name: str, data_root: str | Path | None = None) -> Path:
    """The file behind ``"dataset:split"`` under the data root.

    >>> dataset_path("bq:dev")                        # doctest: +SKIP
    PosixPath('.../shared/corpora/pair/bq/dev.csv')
    """
    spec, split = _resolve_name(name)
    return resolve_data_root(data_root) / spec.splits[split].path  # type: ignore[index]


def load_dataset(name: str, data_root: str | Path | None = None, strict: bool = False,
                 verify: bool = True) -> tuple[list, ReadReport]:
    """Read a catalogued split, e.g. ``"cmeee:train"``; returns ``(examples, report)``.

    ``strict=True`` refuses annotation problems instead of repairing or skipping them; ``verify``
    checks the file's sha256 (cached per process) and the record count against the catalogue,
    warning on a mismatch.

    >>> examples, report = load_dataset("chnsenticorp:test")    # doctest: +SKIP
    >>> len(examples), dict(report.repaired)                    # doctest: +SKIP
    (1200, {'label with surrounding whitespace (stripped)': 1})
    """
    spec, split = _resolve_name(name)
    split_spec = spec.splits[split]  # type: ignore[index]
    path = resolve_data_root(data_root) / split_spec.path
    if not path.is_file():
        raise FileNotFoundError(f"{name}: expected {split_spec.path} under the data root, but {path} does not exist; "
                                f"pass --data-root (data_root= in Python) or set {DATA_ROOT_ENV} to the directory "
                                "holding the corpora")
    if verify:
        verify_file(path, split_spec.sha256)
    reader, options = spec.reader_for(split)  # type: ignore[arg-type]
    examples, report = get_reader(reader)(path, strict=strict, **options)
    if verify and split_spec.count is not None and report.records != split_spec.count:
        logger.warning("%s: read %d records, the catalogue expects %d", name, report.records, split_spec.count)
    return examples, report
