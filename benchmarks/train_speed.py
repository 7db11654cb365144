"""Training-step throughput on this CPU: fp32 vs bf16 autocast, full vs truncated encoder.

    python benchmarks/train_speed.py [--layers 12 6] [--steps 8]

Measured side by side in one run (same batches), written to ``benchmarks/results/train_speed.{json,md}``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[12, 6])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--length", type=int, default=64, help="tokens per sequence")
    args = ap.parse_args(argv)
    import torch

    from toolkit.model.encoder import Encoder
    from toolkit.model.multitask import MultiTaskModel
    from toolkit.registry import base_path
    from toolkit.text.tokenization import TextTokenizer

    path = base_path("zh-e5-small-base")
    tok = TextTokenizer.from_pretrained(path)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 8000, (args.batch_size, args.length), generator=g)
    ids[:, 0], ids[:, -1] = tok.cls_id, tok.sep_id
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    targets = torch.randint(0, 3, (args.batch_size, args.length), generator=g)
    rows = []
    for layers in args.layers:
        for bf16 in (False, True):
            torch.manual_seed(0)
            encoder = Encoder.from_pretrained(path, num_layers=layers)
            model = MultiTaskModel.build(encoder, {"ner": {"kind": "tagger", "labels": ["X"], "scheme": "BIO"}}, tokenizer=tok).train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

            def step() -> None:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    out = model(batch)["ner"]
                loss = model.heads["ner"].loss(out.float(), batch, targets)
                loss.backward()
                opt.step()
                opt.zero_grad()

            step()  # warm-up
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            secs = (time.perf_counter() - start) / args.steps
            rows.append({"layers": layers, "bf16": bf16, "seconds_per_step": round(secs, 3), "sequences_per_s": round(args.batch_size / secs, 1)})
    md = ["# Training step throughput (AdamW, tagger + CRF head)", "", f"Batch {args.batch_size} x {args.length} tokens, {args.steps} timed steps after one warm-up step.", "", "| layers | autocast | s/step | sequences/s |", "|---:|---|---:|---:|"]
    md += [f"| {r['layers']} | {'bf16' if r['bf16'] else 'fp32'} | {r['seconds_per_step']} | {r['sequences_per_s']} |" for r in rows]
    write_results("train_speed", {"run": run_info(sys.argv), "rows": rows}, "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
