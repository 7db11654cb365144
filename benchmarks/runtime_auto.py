"""Does ``load(name, runtime="auto")`` pick the fastest accurate runtime? Its pick against every candidate timed on real texts.

    python benchmarks/runtime_auto.py                                   # ner-medical, first 500 texts of cmeee:dev, 2 threads
    python benchmarks/runtime_auto.py --models ner-medical,sentiment --limit 500 --threads 2
    python benchmarks/runtime_auto.py --limit 16 --repeats 1 --name runtime_auto_quick   # a quick check that it runs

For each model name:

1. :func:`toolkit.runtime.auto.choose_runtime` with the cache off (a fresh measurement on its
   built-in probe), timed: what auto picks on this CPU and how long choosing takes (loading the
   candidates included);
2. every candidate auto considers (:func:`toolkit.runtime.auto.candidates`: ``torch``, ``torch-bf16``
   on CPUs with native bf16, ``onnx`` / ``onnx-int8`` when exported; missing exports are made first
   unless ``--no-export``) runs the first ``--limit`` inputs of the name's evaluation split
   (``benchmarks/splits.py``), end to end (text in, results out): a warm-up pass, then ``--repeats``
   rounds in which every candidate makes one timed pass in turn (a busy neighbour slows all alike);
   chars/s from the median pass. Agreement with ``torch``'s answers uses auto's own check
   (:func:`toolkit.runtime.auto.agreement`: the kind's score, ``torch`` taken as gold);
3. whether auto's pick was the fastest accurate candidate (agreement >= ``MIN_AGREEMENT``), and
   within the rule auto applies (``torch`` is kept unless another is ``MARGIN`` times faster).

All candidates run in this one process with the same ``--threads`` (for torch:
``torch.set_num_threads``, process-wide). Writes ``benchmarks/results/<name>.{json,md}`` with the
command, commit, date, CPU model and flags.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ensure_exports, run_info, write_results
from splits import SPLITS, eval_splits

from toolkit.runtime.auto import characters

logger = logging.getLogger("benchmarks.runtime_auto")
WARMUP = 32  # inputs of the untimed first pass


def real_inputs(model: str, limit: int, data_root: str | None) -> tuple[str, str, list]:
    """``(task, dataset, inputs)``: the first ``limit`` inputs (texts or pairs) of the name's first evaluation split."""
    from toolkit import kinds
    from toolkit.model.manifest import Manifest
    from toolkit.registry import resolve
    from toolkit.runtime.evaluation import load_split

    folder, _ = resolve(model)
    entries = SPLITS.get(model) or eval_splits(folder)
    if not entries:
        raise SystemExit(f"{model}: no evaluation split in benchmarks/splits.py to take real texts from")
    task, dataset = entries[0]["task"], entries[0]["dataset"]
    examples, _ = load_split(dataset, data_root, limit)
    kind = kinds.get(Manifest.read(folder).tasks[task].kind)
    return task, dataset, kind.pipeline_inputs(examples)


def time_candidates(model: str, task: str, names: list[str], inputs: list, threads: int, batch_size: int | None, repeats: int) -> dict[str, dict[str, Any]]:
    """Chars/s (median and best pass) and agreement with ``torch`` of every candidate on ``inputs``."""
    import toolkit
    from toolkit.runtime.auto import agreement
    from toolkit.runtime.evaluation import RUNTIMES

    pipes = {n: toolkit.load(model, tasks=task, threads=threads, batch_size=batch_size, **RUNTIMES[n]) for n in names}
    answers = {}
    for name, pipe in pipes.items():
        sub = getattr(pipe, "pair" if pipe.kinds[task].input == "pair" else "text", pipe)
        pipes[name] = sub
        sub.run(inputs[:WARMUP])
        answers[name] = {task: [r[task] for r in sub.run(inputs)]}
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name, pipe in pipes.items():
            start = time.perf_counter()
            pipe.run(inputs)
            times[name].append(time.perf_counter() - start)
        logger.info("round %d/%d: %s", r + 1, repeats, ", ".join(f"{n} {characters(inputs) / t[-1]:,.0f} chars/s" for n, t in times.items()))
    chars = characters(inputs)
    reference = names[0]
    kinds = {task: pipes[reference].kinds[task]}
    return {n: {"chars_per_s": round(chars / statistics.median(times[n])), "chars_per_s_best": round(chars / min(times[n])),
                "seconds": [round(t, 4) for t in times[n]], "agreement": round(agreement(kinds, answers[reference], answers[n]), 4)}
            for n in names}


def verdict(pick: str, measured: dict[str, dict[str, Any]], min_agreement: float, margin: float) -> dict[str, Any]:
    """Whether ``pick`` was the fastest accurate candidate, and within auto's rule (``torch`` unless ``margin`` x faster)."""
    accurate = {n: m["chars_per_s"] for n, m in measured.items() if m["agreement"] >= min_agreement}
    fastest = max(accurate, key=accurate.__getitem__)
    ruled = fastest if "torch" not in accurate or accurate[fastest] >= margin * accurate["torch"] else "torch"
    return {"fastest": fastest, "auto_is_fastest": pick == fastest, "auto_follows_rule": pick == ruled, "rule_pick": ruled,
            "auto_vs_fastest": round(measured[pick]["chars_per_s"] / measured[fastest]["chars_per_s"], 3)}


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, cpu: str) -> str:
    names = list(dict.fromkeys(n for r in rows for n in r["measured"]))
    lines = ["# runtime='auto': its pick against every candidate on real texts", "",
             f"CPU: {cpu}. Threads: {args.threads}; the first {args.limit} inputs of each split; chars/s from the median of "
             f"{args.repeats} pass(es) (candidates in turn each round), end to end. Agreement: the kind's score against torch's answers.", "",
             "| model | task | split | inputs | auto's pick | choosing s | " + " | ".join(f"{n} chars/s (agreement)" for n in names)
             + " | fastest accurate | pick = fastest | pick / fastest | pick = rule's |",
             "|---|---|---|---:|---|---:|" + "---:|" * len(names) + "---|---|---:|---|"]
    for r in rows:
        cells = [f"{r['measured'][n]['chars_per_s']:,} ({r['measured'][n]['agreement']:.3f})" if n in r["measured"] else "-" for n in names]
        v = r["verdict"]
        lines.append(f"| {r['model']} | {r['task']} | {r['dataset']} | {r['inputs']:,} | {r['auto']['choice']} | {r['auto']['seconds']:.1f} | "
                     + " | ".join(cells) + f" | {v['fastest']} | {'yes' if v['auto_is_fastest'] else '**no**'} | {v['auto_vs_fastest']:.2f} | "
                     f"{'yes' if v['auto_follows_rule'] else '**no**'} |")
    lines += ["", "## auto's reasons", ""] + [f"- {r['model']}: {r['auto']['reason']}" for r in rows]
    lines += ["", "'pick = rule's': auto keeps torch unless another accurate candidate is MARGIN times faster; this column applies that rule "
              "to the speeds measured here."]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="ner-medical", help="comma-separated registered names (or model folders with a split in splits.py)")
    ap.add_argument("--limit", type=int, default=500, help="inputs of each split to time (the first N)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, help="the pipelines' batch size (default: the pipeline's)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per candidate")
    ap.add_argument("--no-export", action="store_true", help="do not make missing ONNX exports (then auto and this benchmark skip those runtimes)")
    ap.add_argument("--data-root")
    ap.add_argument("--name", default="runtime_auto", help="results file name")
    args = ap.parse_args(argv)
    if args.limit < 1 or args.threads < 1 or args.repeats < 1:
        ap.error("--limit, --threads and --repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # the quantiser's per-tensor INFO lines
        handler.addFilter(lambda record: record.levelno >= logging.WARNING or "onnxruntime" not in record.pathname)
    from toolkit.cpu import cpu_info
    from toolkit.registry import resolve
    from toolkit.runtime.auto import MARGIN, MIN_AGREEMENT, candidates, decide

    cpu = cpu_info().describe()
    rows = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        if not args.no_export:
            ensure_exports(model, ["onnx", "onnx-int8"])
        task, dataset, inputs = real_inputs(model, args.limit, args.data_root)
        start = time.perf_counter()
        choice, _ = decide(model, task, args.threads, args.batch_size, cache=False)
        seconds = time.perf_counter() - start
        names = candidates(resolve(model)[0])
        measured = time_candidates(model, task, names, inputs, args.threads, args.batch_size, args.repeats)
        row = {"model": model, "task": task, "dataset": dataset, "inputs": len(inputs), "chars": characters(inputs),
               "auto": {"choice": choice.name, "reason": choice.reason, "probe_chars_per_s": choice.chars_per_s,
                        "probe_agreement": choice.agreement, "seconds": round(seconds, 2)},
               "measured": measured, "verdict": verdict(choice.name, measured, MIN_AGREEMENT, MARGIN)}
        rows.append(row)
        logger.info("%s: auto picked %s; fastest accurate on %d real inputs: %s", model, choice.name, len(inputs), row["verdict"]["fastest"])
    run = {**run_info(sys.argv, threads=args.threads), "cpu": cpu}
    write_results(args.name, {"run": run, "settings": vars(args), "min_agreement": MIN_AGREEMENT, "margin": MARGIN, "rows": rows},
                  markdown(rows, args, cpu))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
