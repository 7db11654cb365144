"""Raw matrix-multiply throughput on this machine: the ceiling every inference speed here runs under.

    python benchmarks/gemm.py [--threads 2] [--tokens 2048]

Issue 6 assumed ~185 GFLOP/s fp32, ~800 bf16 and ~1,750 GOP/s int8 on 2 cores. This measures what
the runtimes we use reach on the encoder's own shapes (hidden 384, FFN 1536) with ``--tokens`` rows
(a batch of 32 windows of 64 tokens), side by side in one run:

* ``torch fp32`` / ``torch bf16``: ``torch.nn.functional.linear`` (bf16: both operands bf16);
* ``ort fp32``: ONNX Runtime ``MatMul`` with a constant weight;
* ``ort int8``: ONNX Runtime ``DynamicQuantizeLinear`` + ``MatMulInteger`` as
  ``onnxruntime.quantization.quantize_dynamic`` writes it (per-channel int8 weights, uint8
  activations), which ORT fuses into ``DynamicQuantizeMatMul``: what the int8 graph runs.

Each figure is the median of ``--repeats`` timed calls after warm-up, in G(FL)OP/s (2 x M x K x N per
call). Writes ``benchmarks/results/gemm.{json,md}``.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results

logger = logging.getLogger("benchmarks.gemm")
SHAPES = {"QKV / attention output (384 -> 384)": (384, 384), "FFN in (384 -> 1536)": (384, 1536), "FFN out (1536 -> 384)": (1536, 384)}
ISSUE = {"fp32": 185.0, "bf16": 800.0, "int8": 1750.0}  # what issue 6 states for this machine, G(FL)OP/s


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after three warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ort_matmul(k: int, n: int, x: np.ndarray, threads: int, int8: bool, tmp: Path) -> Callable[[], object]:
    """An ONNX Runtime session of ``Y = X @ W`` (``W`` a constant), quantised like our int8 graph when ``int8``."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(0, 0.05, (k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)  # what ORT 1.x reads
    path = tmp / f"mm_{k}_{n}.onnx"
    onnx.save(model, str(path))
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = tmp / f"mm_{k}_{n}.int8.onnx"
        quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8, per_channel=True)
        path = quantized
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"x": x})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=2048, help="rows of the activation matrix (tokens in a batch)")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape, (k, n) in SHAPES.items():
            x = np.random.default_rng(1).normal(0, 1, (args.tokens, k)).astype(np.float32)
            xt = torch.from_numpy(x)
            wt = torch.randn(n, k) * 0.05
            xb, wb = xt.bfloat16(), wt.bfloat16()
            calls = {
                "torch fp32": lambda: torch.nn.functional.linear(xt, wt),
                "torch bf16": lambda: torch.nn.functional.linear(xb, wb),
                "ort fp32": ort_matmul(k, n, x, args.threads, False, Path(tmp)),
                "ort int8": ort_matmul(k, n, x, args.threads, True, Path(tmp)),
            }
            ops = 2.0 * args.tokens * k * n
            with torch.inference_mode():
                row = {"shape": shape, "m": args.tokens, "k": k, "n": n}
                for name, fn in calls.items():
                    row[name] = round(ops / timed(fn, args.repeats) / 1e9, 1)
            logger.info("%s", row)
            rows.append(row)
    kinds = ["torch fp32", "torch bf16", "ort fp32", "ort int8"]
    best_fp32 = [max(r["torch fp32"], r["ort fp32"]) for r in rows]
    md = [
        "# Matrix-multiply throughput on this machine",
        "",
        f"G(FL)OP/s, {args.tokens} rows x the encoder's shapes, {args.threads} threads, median of {args.repeats} calls; all in one run.",
        "",
        "| shape | " + " | ".join(kinds) + " | int8 / best fp32 | bf16 / best fp32 |",
        "|---|" + "---:|" * (len(kinds) + 2),
    ]
    for r, fp32 in zip(rows, best_fp32):
        md.append(f"| {r['shape']} | " + " | ".join(f"{r[k]:,.0f}" for k in kinds) + f" | {r['ort int8'] / fp32:.2f}x | {r['torch bf16'] / fp32:.2f}x |")
    md += [
        "",
        f"Issue 6 assumed {ISSUE['fp32']:.0f} fp32, {ISSUE['bf16']:.0f} bf16 and {ISSUE['int8']:,.0f} int8 G(FL)OP/s here, "
        f"that is int8 {ISSUE['int8'] / ISSUE['fp32']:.1f}x and bf16 {ISSUE['bf16'] / ISSUE['fp32']:.1f}x fp32.",
    ]
    write_results("gemm", {"run": run_info(sys.argv, threads=args.threads), "issue_assumed": ISSUE, "rows": rows}, "\n".join(md))
    logger.info("\n%s", "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
