"""Data references, the one way recipes, evaluation and benchmarks name their examples.

A reference is a catalogue id (``"cmeee:train"``, resolved under the data root, see
:mod:`toolkit.data.catalogue`), a file ``{"path": ..., "format": <reader name>, <reader options>}``
(see :mod:`toolkit.data.readers`), or a list of those. Torch-free: evaluation on the ONNX runtime
loads its data through here.
"""
from __future__ import annotations

from typing import Any


def load_examples(ref: Any, data_root: str | None = None, limit: int | None = None) -> list:
    """Examples for a data reference: a catalogue id (``"cmeee:train"``), ``{path, format, ...}``, or a list of those."""
    if ref is None:
        return []
    if isinstance(ref, list):
        return [ex for r in ref for ex in load_examples(r, data_root)][:limit]
    if isinstance(ref, dict):
        from .readers import read

        opts = dict(ref)
        if "path" not in opts or "format" not in opts:
            raise ValueError(f"a data reference needs 'path' and 'format' (a reader name such as columns, json-spans, table-cls), got {ref!r}")
        path, fmt = opts.pop("path"), opts.pop("format")
        examples, report = read(path, fmt, **opts)
    else:
        from .catalogue import load_dataset

        examples, report = load_dataset(str(ref), data_root=data_root)
    return examples[:limit] if limit else examples
