"""Runtime specs: one string per runtime and its quantisation or dtype (``"onnx-int8"``), and how
often two runs' predictions agree. Shared by :mod:`.evaluation` (``--compare``) and :mod:`.auto`
(``load(runtime="auto")``), which otherwise need nothing of each other.
"""
from __future__ import annotations

from typing import Sequence

# A runtime spec names a runtime with its quantisation or dtype in one string: what compare_runtimes
# takes, what results report under "runtime", what load(runtime="auto") chooses among
# (toolkit.runtime.auto), each with the keyword arguments of toolkit.load that run it.
RUNTIMES: dict[str, dict[str, str]] = {
    "torch": {"runtime": "torch"},
    "torch-bf16": {"runtime": "torch", "dtype": "bf16"},
    "onnx": {"runtime": "onnx"},
    "onnx-int8": {"runtime": "onnx", "quantize": "int8"},
}


def runtime_spec(runtime: str, quantize: str | None = None, dtype: str = "fp32") -> str:
    """The spec string of a runtime and quantisation (or dtype): ``("onnx", "int8") -> "onnx-int8"``.

    >>> runtime_spec("onnx", "int8"), runtime_spec("torch"), runtime_spec("torch", dtype="bf16")
    ('onnx-int8', 'torch', 'torch-bf16')
    """
    spec = runtime + (f"-{quantize}" if quantize is not None else "") + (f"-{dtype}" if dtype != "fp32" else "")
    if spec not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r} with quantize={quantize!r}, dtype={dtype!r}; available: {', '.join(RUNTIMES)} "
                         "(quantize='int8' needs runtime='onnx', dtype='bf16' runtime='torch')")
    return spec


def agreement(a: Sequence, b: Sequence) -> float:
    """Fraction of examples with identical predictions in two :func:`predict` outputs (1.0 when empty).

    >>> agreement([[(0, 2, "PER")], [], "pos"], [[(0, 2, "LOC")], [], "pos"])
    0.6667
    """
    if len(a) != len(b):
        raise ValueError(f"{len(a)} predictions against {len(b)}: compare runs on the same examples")
    return round(sum(x == y for x, y in zip(a, b)) / len(a), 4) if a else 1.0
