"""``toolkit batch``: the command line of :mod:`toolkit.batch.run` (local) and :mod:`toolkit.batch.ray_data` (``--ray``)."""
from __future__ import annotations

import argparse

from .run import CHUNK_SIZE, FORMATS, run_batch
from ..errors import InputError


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``batch NAME --input FILE... --output DIR [--ray]`` to the ``toolkit`` command.

    Example:
        >>> parser = argparse.ArgumentParser(prog="toolkit")
        >>> register_cli(parser.add_subparsers(dest="command", required=True))
        >>> parser.parse_args(["batch", "ner-medical", "--input", "a.txt", "--output", "out", "--ray"]).workers
        2
    """
    from ..cli_io import add_runtime_options, positive_int

    p = subparsers.add_parser("batch", help="run a model over TXT/JSONL/Parquet files, one JSONL/Parquet output per input (locally or on Ray)")
    p.add_argument("model", help="registered name or model folder")
    p.add_argument("--input", "-i", nargs="+", required=True, metavar="FILE", help="TXT (one text per line), JSONL or Parquet files; globs allowed")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="folder for <stem>.jsonl / <stem>.parquet per input (created when missing)")
    p.add_argument("--format", choices=FORMATS, default="jsonl", help="output format (default jsonl); Parquet keeps result as a JSON string")
    p.add_argument("--text-field", default="text", help="JSONL/Parquet field holding the text (pairs: text_a, text_b)")
    p.add_argument("--tasks", help="run only these heads, comma-separated (as in toolkit run)")
    # auto by default here: a bulk job repays the one-off measurement (about 10 s, then cached per CPU and model);
    # on a 2-core EPYC PyTorch fp32 was the slowest runtime for every shipped model (benchmarks/results/runtime_auto.md)
    add_runtime_options(p, default="auto")
    p.add_argument("--threads", type=positive_int, help="CPU threads (per worker with --ray; default there: cores / workers)")
    p.add_argument("--batch-size", type=positive_int, help="windows per encoder pass (default 32)")
    p.add_argument("--chunk-size", type=positive_int, default=CHUNK_SIZE, help=f"lines read and written at a time (default {CHUNK_SIZE:,})")
    p.add_argument("--ray", action="store_true", help="run on Ray Data: an actor pool, one model copy per worker")
    p.add_argument("--workers", type=positive_int, default=2, help="--ray: actors (model copies), default 2")
    p.add_argument("--address", help="--ray: join this cluster (auto, ray://HOST:10001; default $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_batch)


def _cmd_batch(args: argparse.Namespace) -> int:
    from ..cli_io import check_runtime_options, task_selection

    check_runtime_options(args)
    if not args.ray and (args.address or args.workers != 2):
        raise InputError("--workers and --address go with --ray")
    options = {"tasks": task_selection(args.model, args.tasks), "runtime": args.runtime, "quantize": args.quantize}
    common = {"fmt": args.format, "text_field": args.text_field, "chunk_size": args.chunk_size, "progress": not args.no_progress,
              "batch_size": args.batch_size}
    if args.ray:
        from .ray_data import run_batch_ray

        outputs = run_batch_ray(args.model, args.input, args.output, workers=args.workers, threads=args.threads, address=args.address,
                                **common, **options)
    else:
        outputs = run_batch(args.model, args.input, args.output, threads=args.threads, **common, **options)
    for out in outputs:
        print(out)
    return 0


__all__ = ["register_cli"]
