"""Does RSS grow over many calls? One pipeline, 10,000 single short texts, RSS sampled as it goes.

    python benchmarks/memory.py                                   # ner-medical, ONNX Runtime int8
    python benchmarks/memory.py --runtime torch --name memory-torch   # the PyTorch runtime
    python benchmarks/memory.py --model runs/zh-multitask-pilot-backup/model --calls 300 --every 50 \
        --warmup-calls 100 --name memory-quick                     # a quick check of a folder

A benchmark, not a unit test: the texts are the short (< 50 characters) sentences of ``--dataset``,
cycled, one call each, as a service would call it. RSS (``/proc/self/statm``) is sampled after loading
and every ``--every`` calls; growth is measured from the end of the warm-up (the first
``--warmup-calls`` calls, while allocator arenas and caches fill) to the last call, and the verdict
compares it with ``--max-growth-mb``. Writes ``benchmarks/results/memory.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHORT, peak_rss_mb, rss_mb, resolve_target, run_info, write_results

logger = logging.getLogger("benchmarks.memory")


def short_texts(dataset: str, data_root: str | None) -> list[str]:
    """The dataset's non-blank texts shorter than :data:`common.SHORT` characters."""
    # not toolkit.train.recipe.load_examples: toolkit.train.recipe imports torch, which would inflate the RSS
    from toolkit.data.catalogue import load_dataset

    examples, _ = load_dataset(dataset, data_root=data_root)
    texts = [ex.text for ex in examples if ex.text.strip() and len(ex.text) < SHORT]
    if not texts:
        raise SystemExit(f"{dataset} has no texts shorter than {SHORT} characters")
    return texts


def load_pipeline(folder: Path, task: str, runtime: str, quantize: str | None, threads: int) -> Any:
    """The pipeline under test (PyTorch threads set first, so both runtimes use ``threads``)."""
    if runtime == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
    import toolkit

    return toolkit.load(str(folder), tasks=task, runtime=runtime, quantize=quantize, threads=threads)


def run_calls(pipe: Any, texts: list[str], calls: int, every: int) -> tuple[list[dict[str, float]], float]:
    """``calls`` single-text calls; RSS samples ``[{calls, rss_mb}]`` (0 = before any call) and seconds."""
    gc.collect()
    samples = [{"calls": 0, "rss_mb": round(rss_mb(), 2)}]
    start = time.perf_counter()
    for i in range(1, calls + 1):
        pipe(texts[i % len(texts)])
        if i % every == 0 or i == calls:
            samples.append({"calls": i, "rss_mb": round(rss_mb(), 2)})
            if i % (10 * every) == 0:
                logger.info("%d calls, RSS %.1f MB", i, samples[-1]["rss_mb"])
    return samples, time.perf_counter() - start


def slope_per_1000(samples: list[dict[str, float]]) -> float | None:
    """Least-squares slope of RSS over calls, MB per 1,000 calls (``None`` with fewer than 2 samples)."""
    if len(samples) < 2:
        return None
    xs, ys = [s["calls"] for s in samples], [s["rss_mb"] for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 1000 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else None


def summarise(samples: list[dict[str, float]], warmup: int, max_growth: float) -> dict[str, Any]:
    """Start/end/max RSS, growth after the warm-up, its slope and the verdict."""
    after = [s for s in samples if s["calls"] >= warmup]
    base = after[0]
    end = samples[-1]["rss_mb"]
    growth = end - base["rss_mb"]
    slope = slope_per_1000(after)
    return {
        "start_mb": round(samples[0]["rss_mb"], 1),
        "after_warmup_mb": round(base["rss_mb"], 1),
        "warmup_calls": base["calls"],
        "end_mb": round(end, 1),
        "max_mb": round(max(s["rss_mb"] for s in samples), 1),
        "growth_after_warmup_mb": round(growth, 2),
        "max_above_warmup_mb": round(max(s["rss_mb"] for s in after) - base["rss_mb"], 2),
        "slope_mb_per_1000_calls": None if slope is None else round(slope, 3),
        "max_growth_mb": max_growth,
        "no_growth": growth < max_growth,
    }


def markdown(args: argparse.Namespace, task: str, n_texts: int, summary: dict[str, Any], samples: list[dict[str, float]], seconds: float) -> str:
    runtime = args.runtime + (f" {args.quantize}" if args.quantize else " fp32")
    verdict = "no growth" if summary["no_growth"] else "**RSS grows**"
    lines = [
        f"# Memory over {args.calls:,} calls: {args.model} (task {task}, {runtime})",
        "",
        (
            f"{args.calls:,} calls, one short text each (< {SHORT} characters, {n_texts:,} texts of {args.dataset} cycled), {args.threads} threads; "
            f"{args.calls / seconds:,.0f} calls/s. RSS from `/proc/self/statm`, sampled every {args.every:,} calls."
        ),
        "",
        (
            f"**Verdict: {verdict}**: RSS changed by {summary['growth_after_warmup_mb']:+.2f} MB from call {summary['warmup_calls']:,} "
            f"(end of the warm-up) to call {args.calls:,}; the threshold is {summary['max_growth_mb']:g} MB."
        ),
        "",
        "| measure | value |",
        "|---|---:|",
        f"| RSS after loading (call 0) | {summary['start_mb']:,.1f} MB |",
        f"| RSS after the warm-up (call {summary['warmup_calls']:,}) | {summary['after_warmup_mb']:,.1f} MB |",
        f"| RSS at the end | {summary['end_mb']:,.1f} MB |",
        f"| max sampled RSS | {summary['max_mb']:,.1f} MB |",
        f"| growth after the warm-up | {summary['growth_after_warmup_mb']:+.2f} MB |",
        f"| slope after the warm-up | {summary['slope_mb_per_1000_calls'] if summary['slope_mb_per_1000_calls'] is not None else '-'} MB per 1,000 calls |",
        f"| peak RSS of the process | {summary['peak_rss_mb']:,.1f} MB |",
        "",
        "## Samples",
        "",
        "| calls | RSS MB |",
        "|---:|---:|",
    ]
    lines += [f"| {s['calls']:,} | {s['rss_mb']:,.1f} |" for s in samples]
    return "\n".join(lines)


def plot(samples: list[dict[str, float]], summary: dict[str, Any], title: str, path: Path) -> bool:
    """RSS against calls, with the end of the warm-up and the allowed band above it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([s["calls"] for s in samples], [s["rss_mb"] for s in samples], marker="o", markersize=3)
    ax.axvline(summary["warmup_calls"], linestyle=":", color="grey", label="end of warm-up")
    base = summary["after_warmup_mb"]
    ax.axhspan(base, base + summary["max_growth_mb"], color="green", alpha=0.1, label=f"allowed growth ({summary['max_growth_mb']:g} MB)")
    ax.set_xlabel("calls")
    ax.set_ylabel("RSS (MB)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ner-medical", help="registered name or model folder")
    ap.add_argument("--task", help="tagger task (default: the name's task, else the first tagger)")
    ap.add_argument("--runtime", choices=["onnx", "torch"], default="onnx")
    ap.add_argument("--quantize", choices=["int8", "none"], default="int8", help="ONNX graph ('none': fp32; ignored for torch)")
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=500, help="sample RSS every N calls")
    ap.add_argument("--warmup-calls", type=int, default=1_000, help="growth is measured after these calls")
    ap.add_argument("--max-growth-mb", type=float, default=5.0, help="verdict threshold for growth after the warm-up")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dataset", default="msra:test", help="the short texts come from this split")
    ap.add_argument("--data-root")
    ap.add_argument("--name", default="memory", help="results file name")
    args = ap.parse_args(argv)
    if args.runtime == "torch" or args.quantize == "none":
        args.quantize = None
    if not 0 <= args.warmup_calls < args.calls or args.every < 1:
        ap.error("need 0 <= --warmup-calls < --calls and --every >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    folder, task = resolve_target(args.model, args.task)
    texts = short_texts(args.dataset, args.data_root)
    if args.runtime == "onnx":
        from toolkit.runtime.export import ensure_export

        ensure_export(folder, args.quantize)  # a one-off export happens before the measurement, not in it
    pipe = load_pipeline(folder, task, args.runtime, args.quantize, args.threads)
    logger.info("%s (%s, %s) loaded; %d calls on %d short texts of %s", args.model, task, args.quantize or "fp32", args.calls, len(texts), args.dataset)
    samples, seconds = run_calls(pipe, texts, args.calls, args.every)
    summary = summarise(samples, args.warmup_calls, args.max_growth_mb)
    summary["peak_rss_mb"] = round(peak_rss_mb(), 1)
    summary["calls_per_s"] = round(args.calls / seconds, 1)
    summary["torch_imported"] = "torch" in sys.modules  # False for the ONNX runtime: RSS without torch
    run = run_info(sys.argv, threads=args.threads)  # imports torch: only now, after the measurement
    md = markdown(args, task, len(texts), summary, samples, seconds)
    payload = {"run": run, "model": args.model, "folder": str(folder), "task": task, "settings": vars(args), "summary": summary, "samples": samples}
    write_results(args.name, payload, md)
    plot(samples, summary, f"{args.model} ({args.runtime} {args.quantize or 'fp32'}): RSS over {args.calls:,} calls", RESULTS / f"{args.name}.png")
    logger.info("growth after warm-up %+.2f MB (threshold %g MB): %s", summary["growth_after_warmup_mb"], args.max_growth_mb, "no growth" if summary["no_growth"] else "RSS GROWS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
