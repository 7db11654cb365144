"""Which MatMuls to keep in fp32 in the int8 graph: accuracy and speed of each choice (issue 6).

    python benchmarks/int8_layers.py [--model zh-multitask] [--limit N] [--batch-sizes 1,8,16,32,64]

Quantises the shipped model's fp32 ONNX graph several ways with
:func:`toolkit.runtime.export.quantize_int8` (per-channel int8 weights, dynamic uint8 activations) and
scores every registered split of the model on each graph, beside the fp32 graph (which predicts
exactly what PyTorch does, see accuracy.md). Policies (regular expressions on node names):

* ``all``: every weight MatMul in int8, the heads' projections too;
* ``heads-fp32``: the heads' projections in fp32;
* ``heads+ffn-out-fp32``: also each layer's FFN output projection (it reads the GELU output, whose
  outliers per-batch uint8 activations quantise worst);
* ``heads+out-proj-fp32``: also each layer's attention output projection: the default,
  :data:`toolkit.runtime.export.INT8_KEEP_FP32`;
* ``heads+last-layer-fp32``: also every MatMul of the last encoder layer.

Each policy is scored at the pipeline's default batch size. The activation scales are computed per
batch (one per tensor), so int8 predictions depend on which texts share a batch: the default policy
is scored again at each of ``--batch-sizes``.

Speed: characters per second of the whole CMeEE dev pass (``--threads``), end to end; one run on a
shared machine, so differences under ~10% are noise (benchmarks/speed.py measures speed properly).
Writes ``benchmarks/results/int8_layers.{json,md}``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results
from splits import eval_splits

logger = logging.getLogger("benchmarks.int8_layers")
ROOT = Path(__file__).resolve().parent.parent
HEADS = r"^/model/(?!encoder/)"
POLICIES: dict[str, tuple[str, ...]] = {
    "all": (),
    "heads-fp32": (HEADS,),
    "heads+ffn-out-fp32": (HEADS, r"/layer\.\d+/output/dense/MatMul$"),
    "heads+out-proj-fp32": (HEADS, r"/output/dense/MatMul$"),
    "heads+last-layer-fp32": (HEADS, r"/layer\.{last}/"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="zh-multitask", help="a registered name whose folder has the eval splits of the shipped names")
    ap.add_argument("--limit", type=int, help="only the first N examples of each split")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", default="1,8,16,32,64", help="batch sizes the default policy is scored at")
    ap.add_argument("--out", default="runs/int8-layers", help="where the quantised graphs go")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import json

    from toolkit.runtime.evaluation import evaluate_pipeline, load_split
    from toolkit.runtime.export import INT8_KEEP_FP32, ensure_export, quantize_int8
    from toolkit.runtime.onnx_runtime import onnx_pipeline
    from toolkit.runtime.pipeline import BATCH_SIZE
    from toolkit.registry import resolve

    folder, _ = resolve(args.model)
    fp32 = ensure_export(folder)
    layers = json.loads((folder / "encoder" / "config.json").read_text())["num_hidden_layers"]
    splits = [ev for ev in eval_splits(folder) if not ev.get("exclude")]
    data = {ev["dataset"]: load_split(ev["dataset"], limit=args.limit)[0] for ev in splits}
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    graphs = {"fp32": (fp32, [])}
    for policy, patterns in POLICIES.items():
        path = out / f"{policy}.onnx"
        record = quantize_int8(fp32, path, keep_fp32=[p.replace("{last}", str(layers - 1)) for p in patterns])
        graphs[policy] = (path, record["quantization"]["kept_fp32"])
    def score(policy: str, graph: Path, kept: list[str], batch_size: int) -> dict:
        row = {"policy": policy, "batch_size": batch_size, "kept_fp32": len(kept), "bytes": graph.stat().st_size, "scores": {}}
        for ev in splits:
            pipe = onnx_pipeline(folder, ev["task"], threads=args.threads, graph=graph, batch_size=batch_size)
            result = evaluate_pipeline(pipe, ev["task"], data[ev["dataset"]])
            row["scores"][ev["dataset"]] = round(100 * result["main"], 2)
            if ev["dataset"] == "cmeee:dev":
                row["cmeee_chars_per_s"] = round(sum(len(x.text) for x in data["cmeee:dev"]) / max(result["seconds"], 1e-9))
            logger.info("%s at batch %d on %s: %.2f", policy, batch_size, ev["dataset"], 100 * result["main"])
        return row

    rows = [score(policy, graph, kept, BATCH_SIZE) for policy, (graph, kept) in graphs.items()]
    default = next(p for p, patterns in POLICIES.items() if list(patterns) == list(INT8_KEEP_FP32))
    batches = [score(default, *graphs[default], int(b)) for b in args.batch_sizes.split(",") if int(b) != BATCH_SIZE]
    batches = sorted(batches + [r for r in rows if r["policy"] == default], key=lambda r: r["batch_size"])
    base = rows[0]["scores"]
    datasets = list(base)

    def table(first: str, rows: list[dict], label) -> list[str]:
        md = [f"| {first} | MatMuls kept fp32 | MB | " + " | ".join(datasets) + " | worst loss | CMeEE dev chars/s |",
              "|---|---:|---:|" + "---:|" * len(datasets) + "---:|---:|"]
        for r in rows:
            cells = [f"{r['scores'][d]:.2f}" + ("" if r["policy"] == "fp32" else f" ({r['scores'][d] - base[d]:+.2f})") for d in datasets]
            worst = max(base[d] - r["scores"][d] for d in datasets)
            r["worst_loss"] = round(worst, 2)
            md.append(f"| {label(r)} | {r['kept_fp32']} | {r['bytes'] / 2**20:.0f} | " + " | ".join(cells) + f" | {worst:.2f} | {r.get('cmeee_chars_per_s', 0):,} |")
        return md

    md = ["# int8: which MatMuls to keep in fp32", "",
          (f"Model `{args.model}`; every split{f' (first {args.limit} examples)' if args.limit else ''} scored on the fp32 graph and on each int8 graph "
           f"(per-channel int8 weights, dynamic uint8 activations) at the pipeline's default batch size ({BATCH_SIZE}); "
           "differences are points against fp32. Speeds come from one pass each on a shared machine: differences under ~10% are noise."), "",
          *table("graph", rows, lambda r: r["policy"]), "",
          f"## The default policy (`{default}`) at other batch sizes", "",
          "Activation scales are computed per batch, over every window in it, so int8 predictions depend on which texts share a batch; "
          "fewer windows per batch means scales that fit each text better. fp32 predictions do not depend on the batch.", "",
          *table("batch size", batches, lambda r: str(r["batch_size"]))]
    write_results("int8_layers", {"run": run_info(sys.argv, threads=args.threads), "model": args.model, "limit": args.limit, "default_batch_size": BATCH_SIZE, "rows": rows, "batch_sizes": batches}, "\n".join(md))
    logger.info("\n%s", "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
