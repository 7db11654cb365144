"""Training-step throughput on this CPU: fp32 vs bf16 autocast vs the auto choice, batching with and
without length sorting or a token budget on real data, and torch.compile.

    python benchmarks/train_speed.py [--layers 12 6] [--steps 8] [--data cmeee:train --texts 2000] [--compile]

Three parts, side by side in one run, written to ``benchmarks/results/OUT_NAME.{json,md}``
(``--out-name``, default ``train_speed``), with the CPU model and flags (AMX or not) in the run info:

* ``auto``: what ``dtype: auto`` picks here (:func:`toolkit.train.precision.choose_dtype`, measured
  afresh, not read from the cache) and how long its measurement took;
* synthetic: AdamW steps of a tagger + CRF head on a fixed batch (``--batch-size`` x ``--length``
  tokens), fp32 and bf16 (and with ``--compile`` the same under ``torch.compile``); the bf16 rows
  give the mean training loss's relative difference from fp32 (same weights, same batch): bf16
  autocast keeps the CRF and loss fp32, so it should stay within noise (a few 1e-3);
* real data (``--data``, default ``cmeee:train`` when the corpora are there; ``--data none`` skips it):
  ``--texts`` texts sampled (seeded) from the split, made into training sequences (``--max-length``)
  as a recipe does, batched three ways: ``shuffled`` (no length sorting), ``sorted`` (shuffle, then
  sort inside pools of 50 batches: the default of ``toolkit train``) and ``budget`` (sorted, at most
  ``--max-tokens`` padded tokens per batch); per dtype: sequences/s, real tokens/s, padded tokens/s
  over ``--steps`` timed batches, and the padding efficiency over the whole epoch.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results


def build_model(path, layers: int, labels: list[str], tok, max_length: int):
    import torch

    from toolkit.model.encoder import Encoder
    from toolkit.model.multitask import MultiTaskModel

    torch.manual_seed(0)
    encoder = Encoder.from_pretrained(path, num_layers=layers)
    return MultiTaskModel.build(encoder, {"ner": {"kind": "tagger", "labels": labels, "scheme": "BIO"}}, tokenizer=tok, max_length=max_length).train()


def timed_steps(model, batches: list[tuple[dict, Any]], dtype: str, compile_model: bool = False) -> dict[str, Any]:
    """Warm-up on ``batches[0]``, then time one AdamW step per batch; rates over the timed steps."""
    import torch

    from toolkit.train.precision import autocast

    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    forward: Callable = model
    if compile_model:
        forward = torch.compile(model)
    losses: list[float] = []

    def step(batch, targets) -> None:
        with autocast(dtype):
            out = forward(batch, ["ner"])["ner"]
        loss = model.heads["ner"].loss(out.float(), batch, targets)  # the loop's loss: fp32
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())

    start = time.perf_counter()
    step(*batches[0])  # warm-up (and the compilation)
    warm = time.perf_counter() - start
    losses.clear()
    seqs = real = padded = 0
    start = time.perf_counter()
    for batch, targets in batches[1:]:
        step(batch, targets)
        seqs += batch["input_ids"].shape[0]
        real += int(batch["attention_mask"].sum())
        padded += batch["input_ids"].numel()
    secs = time.perf_counter() - start
    n = len(batches) - 1
    return {"seconds_per_step": round(secs / n, 3), "sequences_per_s": round(seqs / secs, 1), "real_tokens_per_s": round(real / secs),
            "padded_tokens_per_s": round(padded / secs), "padding_efficiency_timed": round(real / padded, 3),
            "warmup_s": round(warm, 2), "mean_loss": round(sum(losses) / len(losses), 5)}


def synthetic_batch(tok, batch_size: int, length: int) -> tuple[dict, Any]:
    """A fixed (seeded) batch of ``batch_size`` x ``length`` random character ids and tag targets."""
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 8000, (batch_size, length), generator=g)
    ids[:, 0], ids[:, -1] = tok.cls_id, tok.sep_id
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    return batch, torch.randint(0, 3, (batch_size, length - 2), generator=g)


def synthetic(args, path, tok) -> list[dict[str, Any]]:
    batch, targets = synthetic_batch(tok, args.batch_size, args.length)
    rows = []
    for layers in args.layers:
        for compiled in (False, True) if args.compile else (False,):
            for dtype in args.dtypes:
                row: dict[str, Any] = {"part": "synthetic", "layers": layers, "dtype": dtype, "compile": compiled}
                model = build_model(path, layers, ["X"], tok, max(args.length, 128))
                try:
                    row |= timed_steps(model, [(batch, targets)] * (args.steps + 1), dtype, compile_model=compiled)
                except Exception as err:  # torch.compile fails on some machines (no compiler, unsupported ops): report it
                    if not compiled:
                        raise
                    row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
                rows.append(row)
                print(row, file=sys.stderr, flush=True)
    fp32 = {(r["layers"], r["compile"]): r["mean_loss"] for r in rows if r["dtype"] == "fp32" and "mean_loss" in r}
    for r in rows:
        ref = fp32.get((r["layers"], r["compile"]))
        if r["dtype"] == "bf16" and ref and "mean_loss" in r:
            r["loss_rel_diff_vs_fp32"] = round(abs(r["mean_loss"] - ref) / abs(ref), 5)
    return rows


def real_data(args, path, tok) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import numpy as np

    from toolkit import kinds
    from toolkit.data.refs import load_examples
    from toolkit.model.manifest import TaskSpec
    from toolkit.text.normalize import Normalizer
    from toolkit.train.features import FeatureReport, build_features, collate
    from toolkit.train.batching import length_batches

    try:
        examples = load_examples(args.data, args.data_root)
    except (OSError, ValueError, KeyError) as err:
        return [], {"data": args.data, "skipped": f"not available: {err}"}
    rng = np.random.default_rng(0)
    picked = sorted(rng.choice(len(examples), size=min(args.texts, len(examples)), replace=False))
    examples = [examples[i] for i in picked]
    kind = kinds.get("tagger")
    labels = kind.infer_labels(examples)
    spec = TaskSpec.from_dict("ner", {"kind": "tagger", "labels": labels, "scheme": "BIO"})
    kind.spec_defaults(spec)
    options = {"flatten": "longest"} if "flatten" in kind.feature_options else {}
    feats = build_features(kind, examples, spec, tok, Normalizer(), args.max_length, FeatureReport(), **options)
    lengths = np.array([len(f.ids) for f in feats])
    info = {"data": args.data, "texts": len(examples), "sequences": len(feats), "mean_tokens": round(float(lengths.mean()), 1),
            "p90_tokens": int(np.percentile(lengths, 90)), "max_tokens_seen": int(lengths.max()), "max_length": args.max_length}
    variants = {"shuffled": dict(bucket=0), "sorted": dict(bucket=50), "budget": dict(bucket=50, max_tokens=args.max_tokens)}
    rows = []
    for name, opts in variants.items():
        epoch = length_batches(feats, args.batch_size, np.random.default_rng(1), **opts)
        real = int(lengths.sum())
        padded = sum(len(b) * int(lengths[b].max()) for b in epoch)
        batches = [collate([feats[i] for i in b], tok.pad_id, kind) for b in epoch[: args.steps + 1]]
        for layers in args.layers:
            for dtype in args.dtypes:
                row: dict[str, Any] = {"part": "data", "batching": name, "layers": layers, "dtype": dtype, "batches_per_epoch": len(epoch),
                                       "padding_efficiency_epoch": round(real / padded, 3)}
                row |= timed_steps(build_model(path, layers, labels, tok, args.max_length), batches, dtype)
                rows.append(row)
                print(row, file=sys.stderr, flush=True)
    return rows, info


def markdown(args, auto: dict[str, Any], rows: list[dict[str, Any]], data: dict[str, Any] | None) -> str:
    mark = lambda d: f"{d} (auto)" if d == auto["choice"] else d  # noqa: E731
    md = ["# Training step throughput (AdamW, tagger + CRF head)", "",
          f"`dtype: auto` chose **{auto['choice']}** here ({auto['reason']}; the measurement took {auto['seconds']} s).", "",
          f"## Synthetic batch: {args.batch_size} x {args.length} tokens, {args.steps} timed steps after one warm-up step", "",
          "| layers | dtype | compile | s/step | sequences/s | tokens/s | warm-up s | loss vs fp32 |", "|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in (r for r in rows if r["part"] == "synthetic"):
        if "error" in r:
            md.append(f"| {r['layers']} | {mark(r['dtype'])} | {'yes' if r['compile'] else 'no'} | failed: {r['error']} | | | | |")
            continue
        diff = f"{r['loss_rel_diff_vs_fp32']:.1e}" if "loss_rel_diff_vs_fp32" in r else "-"
        md.append(f"| {r['layers']} | {mark(r['dtype'])} | {'yes' if r['compile'] else 'no'} | {r['seconds_per_step']} | {r['sequences_per_s']} | "
                  f"{r['real_tokens_per_s']:,} | {r['warmup_s']} | {diff} |")
    if data is not None:
        md += ["", f"## Real data: {data['data']}"]
        if "skipped" in data:
            md += ["", f"Skipped: {data['skipped']}"]
        else:
            md += ["", f"{data['texts']} texts sampled (seed 0) -> {data['sequences']} sequences of at most {data['max_length']} tokens "
                   f"(mean {data['mean_tokens']}, p90 {data['p90_tokens']}); batch size {args.batch_size}, token budget {args.max_tokens}; "
                   f"{args.steps} timed batches after one warm-up batch. Padding efficiency = real / padded tokens over the whole epoch.", "",
                   "| batching | layers | dtype | batches/epoch | padding eff. | s/step | sequences/s | real tokens/s | padded tokens/s |",
                   "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
            md += [f"| {r['batching']} | {r['layers']} | {mark(r['dtype'])} | {r['batches_per_epoch']} | {r['padding_efficiency_epoch']} | {r['seconds_per_step']} | "
                   f"{r['sequences_per_s']} | {r['real_tokens_per_s']:,} | {r['padded_tokens_per_s']:,} |" for r in rows if r["part"] == "data"]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[12, 6])
    ap.add_argument("--steps", type=int, default=8, help="timed steps per row (after one warm-up step)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--length", type=int, default=64, help="tokens per sequence of the synthetic batch")
    ap.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    ap.add_argument("--data", default="cmeee:train", help="catalogue split for the real-data part ('none': skip it)")
    ap.add_argument("--data-root", help="corpus root (default: $TOOLKIT_DATA_ROOT or ../shared/corpora)")
    ap.add_argument("--texts", type=int, default=2000, help="texts sampled from --data")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=2048, help="token budget of the 'budget' batching")
    ap.add_argument("--compile", action="store_true", help="also time the synthetic rows under torch.compile (failures are reported)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--out-name", default="train_speed", help="results/OUT_NAME.{json,md}")
    args = ap.parse_args(argv)
    import torch

    from toolkit.registry import base_path
    from toolkit.text.tokenization import TextTokenizer
    from toolkit.train.precision import choose_dtype

    if args.threads:
        torch.set_num_threads(args.threads)
    path = base_path("zh-e5-small-base")
    tok = TextTokenizer.from_pretrained(path)
    hidden = build_model(path, 1, ["X"], tok, 128).encoder.hidden_size
    start = time.perf_counter()
    choice, reason = choose_dtype("auto", "cpu", hidden_size=hidden, cache=False)
    auto = {"choice": choice, "reason": reason, "seconds": round(time.perf_counter() - start, 2), "hidden_size": hidden}
    print(auto, file=sys.stderr, flush=True)
    rows = synthetic(args, path, tok)
    data = None
    if args.data.lower() != "none":
        data_rows, data = real_data(args, path, tok)
        rows += data_rows
    md = markdown(args, auto, rows, data)
    write_results(args.out_name, {"run": run_info(sys.argv), "auto": auto, "data": data, "rows": rows}, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
