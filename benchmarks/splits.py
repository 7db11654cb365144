"""Which splits the benchmarks score each registered model name on (a benchmark setting, not the library's).

``SPLITS`` maps a name of :data:`toolkit.registry.MODELS` to its evaluation entries
``{"task", "dataset"[, "exclude"]}``: the task of the model folder, a catalogue split, and optionally
a split whose texts are left out (a leakage-free score). benchmarks/accuracy.py scores every entry;
add_task.py, int8_determinism.py and int8_layers.py score the entries of one folder
(:func:`eval_splits`).

    >>> eval_splits(resolve("ner-medical-small")[0])     # doctest: +SKIP
    [{'task': 'ner_medical', 'dataset': 'cmeee:dev'}]
"""
from __future__ import annotations

import os
from typing import Any

SPLITS: dict[str, list[dict[str, Any]]] = {
    "ner-medical": [{"task": "ner_medical", "dataset": "cmeee:dev"}],
    "ner-general": [{"task": "ner_general", "dataset": "msra:test"}],
    "sentiment": [{"task": "sentiment", "dataset": "chnsenticorp:test"},
                  {"task": "sentiment", "dataset": "chnsenticorp:test", "exclude": "chnsenticorp:train"}],
    "similarity-medical": [{"task": "similarity_medical", "dataset": "chip-sts:dev"}],
    "ner-medical-small": [{"task": "ner_medical", "dataset": "cmeee:dev"}],
    "ner-general-small": [{"task": "ner_general", "dataset": "msra:test"}],
    "sentiment-small": [{"task": "sentiment", "dataset": "chnsenticorp:test"},
                        {"task": "sentiment", "dataset": "chnsenticorp:test", "exclude": "chnsenticorp:train"}],
    "similarity-medical-small": [{"task": "similarity_medical", "dataset": "chip-sts:dev"}],
    # the joint model's own heads (the single-task names above moved to their own folders in issue 15)
    "zh-multitask": [{"task": "ner_medical", "dataset": "cmeee:dev"}, {"task": "ner_general", "dataset": "msra:test"},
                     {"task": "sentiment", "dataset": "chnsenticorp:test"},
                     {"task": "sentiment", "dataset": "chnsenticorp:test", "exclude": "chnsenticorp:train"},
                     {"task": "similarity_medical", "dataset": "chip-sts:dev"}],
}


def eval_splits(folder: str | os.PathLike, splits: dict[str, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """The entries of every registered name whose folder is ``folder``, each once, in registry order
    (``splits``: the table to read, default :data:`SPLITS`)."""
    from toolkit.registry import names_of

    table = SPLITS if splits is None else splits
    found: list[dict[str, Any]] = []
    for name in names_of(folder):
        found += [ev for ev in table.get(name, []) if ev not in found]
    return found
