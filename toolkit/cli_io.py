"""Input, output and option checks of the ``toolkit`` command (:mod:`toolkit.cli`).

* texts come from arguments, ``-i FILE`` or stdin, a byte order mark dropped;
* ``-o FILE`` is written to a temporary file next to FILE and renamed over it only when the command
  succeeds (:func:`output`), so a failed or interrupted run leaves FILE as it was;
* results become JSON through :func:`toolkit.results.to_json_data`, and JSON never holds NaN or
  Infinity (:func:`to_json`);
* numeric options are checked by ``argparse`` (:func:`positive_int`, :func:`positive_float`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TextIO

from .errors import InputError, ModelFolderError
from .files import atomic_path
from .results import to_json_data

# The former name of :func:`toolkit.results.to_json_data` (the one converter of results to JSON data).
jsonable = to_json_data


def positive_int(text: str) -> int:
    """``argparse`` type of options that must be a whole number of at least 1 (a usage error, exit 2, otherwise).

    >>> positive_int("8")
    8
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """``argparse`` type of options that must be a finite number above 0 (a usage error, exit 2, otherwise).

    >>> positive_float("2e-5")
    2e-05
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


RUNTIME_CHOICES = ("torch", "onnx", "auto")
RUNTIME_HELP = ("torch: PyTorch; onnx: ONNX Runtime (runs the folder's export: `toolkit export MODEL` makes it); auto: the fastest "
                "accurate one for this CPU among PyTorch fp32/bf16 and the exports the folder has, measured for a few seconds "
                "on first use and cached ($TOOLKIT_RUNTIME=torch|torch-bf16|onnx|onnx-int8 forces it)")


def add_runtime_options(p: argparse.ArgumentParser, default: str = "torch", verb: str = "run") -> None:
    """``--runtime {torch,onnx,auto}`` and ``--quantize int8``: the same on every command that loads a model.

    >>> p = argparse.ArgumentParser()
    >>> add_runtime_options(p)
    >>> p.parse_args(["--runtime", "auto"]).runtime
    'auto'
    """
    p.add_argument("--runtime", choices=RUNTIME_CHOICES, default=default, help=f"{RUNTIME_HELP} (default {default})")
    p.add_argument("--quantize", choices=["int8"], help=f"with --runtime onnx: {verb} the int8 graph")


def check_runtime_options(args: argparse.Namespace) -> None:
    """Refuse ``--quantize`` without ``--runtime onnx`` (an :class:`~toolkit.errors.InputError` naming the fix)."""
    if args.quantize and args.runtime != "onnx":
        raise InputError("--quantize int8 runs the ONNX Runtime graph: add --runtime onnx"
                         + (" (--runtime auto considers the int8 graph itself when the folder has it)" if args.runtime == "auto" else ""))


def to_json(obj: Any, where: str, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`toolkit.results.to_json_data` (``obj``) that refuses NaN and Infinity
    (not JSON) with a message naming ``where``."""
    try:
        return json.dumps(to_json_data(obj), ensure_ascii=False, allow_nan=False, **kwargs)
    except ValueError as err:
        raise ModelFolderError(f"{where}: the output holds NaN or Infinity, which JSON cannot hold ({err}); the model's "
                               "weights are probably damaged: copy the model folder again or re-train it") from err


def _lines(stream: TextIO) -> Iterator[str]:
    """Lines without their line ends; a byte order mark before the first is dropped."""
    for i, line in enumerate(stream):
        yield (line.lstrip("\ufeff") if i == 0 else line).rstrip("\r\n")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def read_inputs(args: argparse.Namespace) -> tuple[list[str], str]:
    """``(texts, where)`` for ``toolkit run``; checks the input and output options before any model loads."""
    if args.input and args.text:
        raise InputError(f"give texts either as arguments or with -i {args.input}, not both (drop {args.text[0]!r} ...)")
    if args.output:
        out = Path(args.output)
        if out.is_dir():
            raise InputError(f"-o {out} is a folder: give a file name, e.g. -o {out / 'results.jsonl'}")
        if not out.parent.is_dir():
            raise InputError(f"-o {out}: the folder {out.parent} does not exist; create it first")
        if args.input and _same_file(args.input, args.output):
            raise InputError(f"-o {args.output} is the input file: the results would overwrite the texts; write them to another file")
    if args.input:
        with open(args.input, encoding="utf-8-sig") as f:
            return list(_lines(f)), args.input
    if args.text in ([], ["-"]):
        return list(_lines(sys.stdin)), "<stdin>"
    return list(args.text), "argument"


@contextmanager
def output(path: str | None) -> Iterator[TextIO]:
    """stdout, or a temporary file next to ``path`` that replaces ``path`` only when the block
    succeeds (removed on any error or Ctrl-C, so an existing ``path`` stays as it was)."""
    if path is None:
        yield sys.stdout
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yield f


def task_selection(model: str, requested: str | None) -> str | list[str] | None:
    """``--tasks`` (comma-separated) as task names of the model's folder (registered names and spaces
    allowed): one task as its name (its results bare), several as a list (results ``{task: result}``)."""
    if requested is None:
        return None
    from .model.manifest import Manifest
    from .registry import resolve, task_names

    path, _ = resolve(model)
    names = task_names(path, requested, list(Manifest.read(path).tasks))
    return names[0] if len(names) == 1 else names


def key_value(text: str) -> tuple[str, str]:
    """``--option KEY=VALUE`` as ``(key, value)``.

    >>> key_value("text_column=review")
    ('text_column', 'review')
    """
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InputError(f"--option expects KEY=VALUE, got {text!r}")
    return key.strip(), value


__all__ = ["jsonable", "output", "positive_float", "positive_int", "read_inputs", "to_json"]
