"""int8 with per-row activation scales against the old per-batch scales and fp32 (issue 11, item 18).

    python benchmarks/int8_determinism.py [--limit N] [--dependence-texts 500] [--repeats 3] [--threads 2]

For each shipped folder (``zh-multitask``, which serves ner-medical / ner-general / sentiment /
similarity-medical, and ``ner-medical-small``) four graphs of the same fp32 export are compared,
all in this one run:

* ``fp32``: the folder's fp32 ONNX graph (predicts what PyTorch does, see accuracy.md);
* ``int8-per-batch``: the int8 graph of toolkit <= issue 11, ONNX Runtime's ``quantize_dynamic``
  (one uint8 activation scale per tensor, i.e. per batch), the heads and each layer's
  attention-output and FFN-output projections kept in fp32
  (:data:`toolkit.runtime.quantization.INT8_KEEP_FP32_OUTPUTS`);
* ``int8-per-row-outputs-fp32``: :func:`toolkit.runtime.quantization.quantize_int8` with one symmetric scale
  per row (per token of each window), the same MatMuls kept in fp32;
* ``int8-per-row``: the new default: per-row scales, only the heads kept in fp32
  (:data:`toolkit.runtime.quantization.INT8_KEEP_FP32`).

1. Accuracy on every registered split of each folder, at the pipeline's default batch size.
2. Batch dependence: on the first ``--dependence-texts`` inputs of each split, each input alone
   (batch of one, no padding) against the same inputs in one call (default batch size: length-sorted
   batches, padded); counts inputs whose result differs at all (scores compared exactly) and inputs
   whose entities / label differ.
3. Speed: characters per second end to end (text in, entities out) on the CMeEE dev and MSRA test
   texts (the first ``--speed-texts``) for ner-medical and ner-medical-small. The graphs are timed in turn, round after round
   (``--repeats`` rounds, median kept), so a busy neighbour on a shared machine slows all of them alike.

Writes ``benchmarks/results/int8_determinism.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, run_info, write_results
from splits import eval_splits

logger = logging.getLogger("benchmarks.int8_determinism")
ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ["zh-multitask", "ner-medical-small"]
SPEED = {"ner-medical": ["cmeee:dev", "msra:test"], "ner-medical-small": ["cmeee:dev", "msra:test"]}
GRAPHS = ["fp32", "int8-per-batch", "int8-per-row-outputs-fp32", "int8-per-row"]
DEFAULT = "int8-per-row"  # what load(..., quantize="int8") and `toolkit export --quantize int8` make
BAR_POINTS = 0.3
BAR_SLOWER = 0.10


def cpu_flags() -> list[str]:
    """The instruction-set flags that decide which int8 / fp32 kernels ONNX Runtime uses here."""
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("flags"):
            return [f for f in wanted if f in line.split()]
    return []


def build_graphs(folder: Path, out: Path) -> dict[str, Path]:
    """The fp32 export of ``folder`` and its int8 quantisations (written under ``out``)."""
    from toolkit.runtime.export import ensure_export
    from toolkit.runtime.quantization import INT8_KEEP_FP32, INT8_KEEP_FP32_OUTPUTS, quantize_int8

    fp32 = ensure_export(folder)
    out.mkdir(parents=True, exist_ok=True)
    graphs = {"fp32": fp32}
    for graph, activations, keep in (("int8-per-batch", "per-batch", INT8_KEEP_FP32_OUTPUTS), ("int8-per-row-outputs-fp32", "per-row", INT8_KEEP_FP32_OUTPUTS),
                                     ("int8-per-row", "per-row", INT8_KEEP_FP32)):
        graphs[graph] = out / f"{folder.name}.{graph}.onnx"
        quantize_int8(fp32, graphs[graph], keep_fp32=keep, activations=activations)
    return graphs


def inputs_of(kind: str, examples: list) -> list:
    return [(ex.text_a, ex.text_b) for ex in examples] if kind == "matcher" else [ex.text for ex in examples]


def comparable(kind: str, result: Any) -> Any:
    """Entities as (start, end, label), a label: what a user sees, without the scores."""
    return sorted((e.start, e.end, e.label) for e in result) if kind == "tagger" else result["label"]


def score_gap(kind: str, a: Any, b: Any) -> float:
    """Largest difference between the scores of two results with the same entities / label."""
    if kind == "tagger":
        return max((abs(x.score - y.score) for x, y in zip(sorted(a, key=lambda e: (e.start, e.end)), sorted(b, key=lambda e: (e.start, e.end)))), default=0.0)
    return max(abs(a["scores"][k] - b["scores"][k]) for k in a["scores"])


def dependence(pipe, task: str, examples: list) -> dict[str, Any]:
    """How many inputs get another result alone than inside a batch of their neighbours."""
    kind = pipe.kinds[task]
    inputs = inputs_of(kind, examples)
    together = pipe(inputs)
    alone = [pipe([x])[0] for x in inputs]
    changed = sum(a != b for a, b in zip(alone, together))
    same = [(a, b) for a, b in zip(alone, together) if comparable(kind, a) == comparable(kind, b)]
    visible = len(inputs) - len(same)
    return {"n": len(inputs), "changed_any": changed, "changed_predictions": visible,
            "fraction_changed_any": round(changed / max(1, len(inputs)), 4), "fraction_changed_predictions": round(visible / max(1, len(inputs)), 4),
            "max_score_gap": max((score_gap(kind, a, b) for a, b in same), default=0.0)}


def speed(pipes: dict[str, Any], texts: list[str], repeats: int) -> dict[str, dict[str, Any]]:
    """chars/s of each pipeline over ``texts``; graphs alternate within each round."""
    chars = sum(len(t) for t in texts)
    for pipe in pipes.values():
        pipe(texts[:64])  # warm-up
    passes: dict[str, list[float]] = {g: [] for g in pipes}
    for _ in range(repeats):
        for graph, pipe in pipes.items():
            start = time.perf_counter()
            pipe(texts)
            passes[graph].append(time.perf_counter() - start)
    return {g: {"chars": chars, "seconds": [round(s, 2) for s in p], "chars_per_s": round(chars / statistics.median(p)),
                "best_chars_per_s": round(chars / min(p))} for g, p in passes.items()}


def render(data: dict[str, Any]) -> str:
    """The Markdown report of a run's data (``--render-only`` redoes it from the JSON)."""
    md = ["# int8: per-row activation scales (deterministic per text) vs per-batch scales vs fp32", "",
          "Same fp32 export quantised three ways, all with int8 per-channel weights: `int8-per-batch` is the int8 graph before issue 11 "
          "(ONNX Runtime's `quantize_dynamic`: one uint8 scale per activation tensor, i.e. per batch; the heads and each layer's "
          "attention-output and FFN-output projections kept in fp32); `int8-per-row-outputs-fp32` has one symmetric scale per row "
          "(token) and the same MatMuls in fp32; `int8-per-row`, the new default, has per-row scales and only the heads in fp32. "
          f"Scores in points, differences against fp32; default batch size {data['batch_size']}."]
    accuracy, dependent, speeds = data["accuracy"], data["dependence"], data["speed"]
    if accuracy:
        md += ["", "## Accuracy", "", "| model folder | split | metric | " + " | ".join(GRAPHS) + " |", "|---|---|---|" + "---:|" * len(GRAPHS)]
        for key in dict.fromkeys((r["folder"], r["dataset"]) for r in accuracy):
            rows = {r["graph"]: r for r in accuracy if (r["folder"], r["dataset"]) == key}
            base = rows["fp32"]["score"]
            cells = [f"{rows[g]['score']:.2f}" + ("" if g == "fp32" else f" ({rows[g]['score'] - base:+.2f})") for g in GRAPHS]
            md.append(f"| {key[0]} | {key[1]} | {rows['fp32']['metric']} | " + " | ".join(cells) + " |")
    if dependent:
        md += ["", "## Alone vs in a batch", "",
               f"The first {data['dependence_texts']} inputs of each split, each alone (a batch of one) against the same inputs in one call "
               "(length-sorted, padded batches). `any`: inputs whose result differs at all (scores compared exactly); `visible`: inputs "
               "whose entities or label differ; `gap`: the largest score difference among inputs whose entities / label agree.", "",
               "| model folder | split | n | " + " | ".join(f"{g} any / visible / gap" for g in GRAPHS) + " |", "|---|---|---:|" + "---:|" * len(GRAPHS)]
        for key in dict.fromkeys((r["folder"], r["dataset"]) for r in dependent):
            rows = {r["graph"]: r for r in dependent if (r["folder"], r["dataset"]) == key}
            cells = [f"{rows[g]['changed_any']} / {rows[g]['changed_predictions']} / {rows[g]['max_score_gap']:.1e}" for g in GRAPHS]
            md.append(f"| {key[0]} | {key[1]} | {rows['fp32']['n']} | " + " | ".join(cells) + " |")
        md += ["", "The mean-pooled heads (sentiment's classifier, the matcher) sum the token vectors with ONNX Runtime's `ReduceSum`, "
               "whose result over a padded sequence can differ from the unpadded one in the last bit, in fp32 as well; once in a while that "
               "moves a score across a rounding step of the six-decimal scores: such inputs count in `any` with a gap of 1e-6, never in "
               "`visible`. The taggers have no such sum: their entities and scores are bit-identical alone and in a batch."]
    if speeds:
        md += ["", "## Speed", "",
               f"Characters per second end to end over the first {data['speed_texts']} texts, {data['threads']} ONNX Runtime threads, median of {data['repeats']} passes; the graphs take turns "
               "within each round. The machine is shared with other work, so single numbers are noisy: compare within a row.", "",
               "| model | texts | " + " | ".join(GRAPHS) + " | per-row-outputs-fp32 / per-batch | per-row / per-batch |", "|---|---|" + "---:|" * (len(GRAPHS) + 2)]
        for key in dict.fromkeys((r["model"], r["dataset"]) for r in speeds):
            rows = {r["graph"]: r for r in speeds if (r["model"], r["dataset"]) == key}
            ratios = [rows[g]["chars_per_s"] / rows["int8-per-batch"]["chars_per_s"] for g in ("int8-per-row-outputs-fp32", "int8-per-row")]
            md.append(f"| {key[0]} | {key[1]} | " + " | ".join(f"{rows[g]['chars_per_s']:,}" for g in GRAPHS) + " | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    if accuracy and dependent and speeds:
        fp32 = {(r["folder"], r["dataset"]): r["score"] for r in accuracy if r["graph"] == "fp32"}
        worst = max(fp32[r["folder"], r["dataset"]] - r["score"] for r in accuracy if r["graph"] == DEFAULT)
        visible = sum(r["changed_predictions"] for r in dependent if r["graph"] == DEFAULT)
        tagger_any = sum(r["changed_any"] for r in dependent if r["graph"] == DEFAULT and r["task"].startswith("ner"))
        ratios = [r["chars_per_s"] / next(o["chars_per_s"] for o in speeds if o["graph"] == "int8-per-batch" and (o["model"], o["dataset"]) == (r["model"], r["dataset"]))
                  for r in speeds if r["graph"] == DEFAULT]
        md += ["", "## The bars (issue 11, item 18)", "",
               f"- deterministic per text: {visible} of {sum(r['n'] for r in dependent if r['graph'] == DEFAULT)} inputs change entities or label "
               f"alone vs in a batch; tagger results (entities and scores) that change at all: {tagger_any}",
               f"- int8 - fp32 within {BAR_POINTS} points on each split: worst loss {worst:.2f}",
               f"- speed not more than {BAR_SLOWER:.0%} below the old int8: {min(ratios):.2f}x to {max(ratios):.2f}x its chars/s"]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, help="only the first N examples of each split (accuracy and speed)")
    ap.add_argument("--dependence-texts", type=int, default=500, help="inputs per split compared alone vs in a batch")
    ap.add_argument("--repeats", type=int, default=3, help="speed rounds (each times every graph once)")
    ap.add_argument("--speed-texts", type=int, default=2000, help="texts of each corpus timed (the first N)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: accuracy,dependence,speed")
    ap.add_argument("--out", default="runs/int8-determinism", help="where the int8 graphs go")
    ap.add_argument("--render-only", action="store_true", help="rewrite the Markdown from benchmarks/results/int8_determinism.json")
    args = ap.parse_args(argv)
    if args.render_only:
        data = json.loads((RESULTS / "int8_determinism.json").read_text(encoding="utf-8"))
        write_results("int8_determinism", data, render(data))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import onnxruntime

    from toolkit.runtime.evaluation import evaluate_pipeline, load_split
    from toolkit.runtime.onnx_runtime import onnx_pipeline
    from toolkit.runtime.pipeline import BATCH_SIZE
    from toolkit.registry import resolve

    onnxruntime.set_default_logger_severity(3)
    skip = set(filter(None, args.skip.split(",")))
    data: dict[str, list] = {}
    graphs: dict[str, dict[str, Path]] = {}
    accuracy: list[dict[str, Any]] = []
    dependent: list[dict[str, Any]] = []
    for name in FOLDERS:
        folder, _ = resolve(name)
        graphs[name] = build_graphs(folder, ROOT / args.out)
        for ev in (ev for ev in eval_splits(folder) if not ev.get("exclude")):
            dataset, task = ev["dataset"], ev["task"]
            if dataset not in data:
                data[dataset] = load_split(dataset, limit=args.limit)[0]
            for graph, path in graphs[name].items():
                pipe = onnx_pipeline(folder, task, threads=args.threads, graph=path)
                row = {"folder": name, "task": task, "dataset": dataset, "graph": graph}
                if "accuracy" not in skip:
                    result = evaluate_pipeline(pipe, task, data[dataset])
                    accuracy.append({**row, "score": round(100 * result["main"], 2), "metric": result["metric"], "n": result["n"], "seconds": result["seconds"]})
                    logger.info("%s %s on %s: %.2f", name, graph, dataset, 100 * result["main"])
                if "dependence" not in skip:
                    dependent.append({**row, **dependence(pipe, task, data[dataset][: args.dependence_texts])})
                    logger.info("%s %s on %s: %s", name, graph, dataset, dependent[-1])
    speeds: list[dict[str, Any]] = []
    if "speed" not in skip:
        for name, datasets in SPEED.items():
            folder, tasks = resolve(name)
            owner = next(f for f in FOLDERS if resolve(f)[0] == folder)
            pipes = {g: onnx_pipeline(folder, tasks, threads=args.threads, graph=p) for g, p in graphs[owner].items()}
            for dataset in datasets:
                data.setdefault(dataset, load_split(dataset, limit=args.limit)[0])
                texts = [ex.text for ex in data[dataset][: args.speed_texts]]
                for graph, result in speed(pipes, texts, args.repeats).items():
                    speeds.append({"model": name, "dataset": dataset, "graph": graph, **result})
                    logger.info("%s %s on %s: %s chars/s", name, graph, dataset, f"{result['chars_per_s']:,}")

    data_out = {"run": {**run_info(sys.argv, threads=args.threads), "cpu_flags": " ".join(cpu_flags()), "onnxruntime": onnxruntime.__version__}, "limit": args.limit, "dependence_texts": args.dependence_texts, "threads": args.threads,
                "repeats": args.repeats, "speed_texts": args.speed_texts, "batch_size": BATCH_SIZE, "accuracy": accuracy, "dependence": dependent, "speed": speeds}
    write_results("int8_determinism", data_out, render(data_out))
    logger.info("\n%s", render(data_out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
