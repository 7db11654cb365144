"""Where a training step's time goes, fp32 vs bf16 autocast, on this CPU (issue 14: bf16 matrix work
runs several times fp32 on CPUs with native bf16, yet a whole step gains far less; find where).

    python benchmarks/train_profile.py [--layers 12] [--batch-size 32] [--length 64] [--steps 4] [--threads 2]

The tagger + CRF model of ``train_speed.py`` (the char-level base, ``--layers`` layers) takes AdamW
steps on a fixed synthetic batch under ``torch.profiler``, each step split into phases
(``record_function``: forward, loss, backward, optimizer) and every operator's self CPU time put into
one category: matrix products (linear/matmul/attention kernels), casts and copies (what autocast adds),
layer norm, GELU, softmax, dropout, embedding, optimizer arithmetic, and the rest. Each dtype is run
with AdamW's default (``foreach``) and with ``fused=True`` (one kernel per parameter group), the one
change here that removes optimizer work rather than moving it. The table gives ms per step per
category and the bf16 / fp32 speed-up of each, so it shows which parts gain from bf16 and which eat
the gain. Writes ``benchmarks/results/train_profile.{json,md}`` with the CPU model and flags.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results
from train_speed import build_model, synthetic_batch

PHASES = ("forward", "loss", "backward", "optimizer")
# category -> substrings of aten operator names (first match wins, in this order)
CATEGORIES: dict[str, tuple[str, ...]] = {
    "matrix products": ("addmm", "aten::mm", "bmm", "matmul", "linear", "scaled_dot_product", "flash_attention", "mkldnn"),
    "casts and copies": ("_to_copy", "aten::copy_", "aten::to", "clone", "contiguous"),
    "layer norm": ("layer_norm",),
    "GELU": ("gelu",),
    "softmax": ("softmax",),
    "dropout": ("dropout", "bernoulli"),
    "embedding": ("embedding", "index_select", "index_add", "index_put"),
    "optimizer arithmetic": ("_foreach_", "_fused_adam", "addcdiv", "addcmul", "lerp", "sqrt"),
}


def category(name: str) -> str:
    for cat, keys in CATEGORIES.items():
        if any(k in name for k in keys):
            return cat
    return "other"


def profile(model, batch, targets, dtype: str, fused: bool, steps: int, warmup: int) -> dict[str, Any]:
    """Wall time per step and per phase, and self CPU ms per step of each operator category."""
    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile, record_function

    from toolkit.train.precision import autocast

    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused) if fused else torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        with record_function("forward"), autocast(dtype):
            out = model(batch, ["ner"])["ner"]
        with record_function("loss"):
            loss = model.heads["ner"].loss(out.float(), batch, targets)  # fp32, as the training loop does
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            opt.step()
            opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):  # timed without the profiler's overhead
        step()
    wall = (time.perf_counter() - start) / steps
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total / 1000 / steps for e in events if e.key in PHASES}
    cats: dict[str, float] = {}
    for e in events:
        if e.key in PHASES or not e.key.startswith("aten::"):
            continue
        cats[category(e.key)] = cats.get(category(e.key), 0.0) + e.self_cpu_time_total / 1000 / steps
    top = sorted(((e.key, e.self_cpu_time_total / 1000 / steps) for e in events if e.key.startswith("aten::")), key=lambda x: -x[1])[:12]
    return {"dtype": dtype, "fused_adamw": fused, "ms_per_step": round(1000 * wall, 1),
            "phases_ms": {k: round(phases.get(k, 0.0), 1) for k in PHASES},
            "categories_ms": {k: round(v, 1) for k, v in sorted(cats.items(), key=lambda x: -x[1])},
            "top_ops_ms": [(k, round(v, 1)) for k, v in top]}


def markdown(args, rows: list[dict[str, Any]]) -> str:
    by = {(r["dtype"], r["fused_adamw"]): r for r in rows}
    f32, b16 = by[("fp32", False)], by[("bf16", False)]
    cats = list(dict.fromkeys(list(f32["categories_ms"]) + list(b16["categories_ms"])))
    ratio = lambda a, b: f"{a / b:.2f}x" if b else "-"  # noqa: E731
    md = [f"# Where a training step's time goes: fp32 vs bf16 autocast ({args.layers} layers)", "",
          f"Tagger + CRF on the char-level base cut to {args.layers} layers, AdamW, a fixed synthetic batch of "
          f"{args.batch_size} x {args.length} tokens, {args.threads} thread(s); {args.warmup} warm-up steps, then {args.steps} timed steps "
          f"without the profiler and {args.steps} under it (operator self CPU time, ms per step).", "",
          "## Whole step", "", "| dtype | AdamW | ms / step (no profiler) | forward | loss | backward | optimizer |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        p = r["phases_ms"]
        md.append(f"| {r['dtype']} | {'fused' if r['fused_adamw'] else 'foreach (default)'} | {r['ms_per_step']} | "
                  + " | ".join(str(p[k]) for k in PHASES) + " |")
    md += ["", f"bf16 / fp32 speed-up of the whole step (default AdamW): **{ratio(f32['ms_per_step'], b16['ms_per_step'])}**.", "",
           "## By operator category (default AdamW)", "", "| category | fp32 ms | bf16 ms | bf16 speed-up | share of the bf16 step |", "|---|---:|---:|---:|---:|"]
    total_b = sum(b16["categories_ms"].values()) or 1.0
    for c in cats:
        a, b = f32["categories_ms"].get(c, 0.0), b16["categories_ms"].get(c, 0.0)
        md.append(f"| {c} | {a} | {b} | {ratio(a, b)} | {100 * b / total_b:.0f}% |")
    md += ["", "Top operators (bf16, default AdamW): " + ", ".join(f"`{k}` {v} ms" for k, v in b16["top_ops_ms"][:8]) + "."]
    fused = {d: by.get((d, True)) for d in ("fp32", "bf16")}
    if all(fused.values()):
        md += ["", "Fused AdamW vs the default: " + "; ".join(
            f"{d} {by[(d, False)]['ms_per_step']} -> {fused[d]['ms_per_step']} ms per step (optimizer phase "
            f"{by[(d, False)]['phases_ms']['optimizer']} -> {fused[d]['phases_ms']['optimizer']} ms)" for d in ("fp32", "bf16")) + "."]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-name", default="train_profile")
    args = ap.parse_args(argv)
    import torch

    from toolkit.registry import base_path
    from toolkit.text.tokenization import TextTokenizer

    torch.set_num_threads(args.threads)
    path = base_path("zh-e5-small-base")
    tok = TextTokenizer.from_pretrained(path)
    batch, targets = synthetic_batch(tok, args.batch_size, args.length)
    rows = []
    for dtype in ("fp32", "bf16"):
        for fused in (False, True):
            model = build_model(path, args.layers, ["X"], tok, max(args.length, 128))
            rows.append(profile(model, batch, targets, dtype, fused, args.steps, args.warmup))
            print(rows[-1], file=sys.stderr, flush=True)
    md = markdown(args, rows)
    write_results(args.out_name, {"run": run_info(sys.argv, threads=args.threads), "rows": rows}, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
