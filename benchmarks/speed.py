"""Inference speed of a NER model, side by side in one run: our runtimes against the HF baselines.

    python benchmarks/speed.py                   # ner-medical on msra:test and cmeee:dev, every configuration
    python benchmarks/speed.py --model runs/zh-multitask-pilot-backup/model --limit 200 --repeats 1 \
        --configs onnx-int8,hf-pipeline --name speed-quick          # a quick look at an unregistered folder

Configurations, each run in its own subprocess (so imports, load time and peak RSS are its own):

* ``torch-fp32``   ``toolkit.load(model)``: PyTorch eager, texts sorted by length, dynamic padding.
* ``torch-bf16``   the same pipeline called inside ``torch.autocast("cpu", dtype=torch.bfloat16)``.
* ``onnx-fp32``    ``toolkit.load(model, runtime="onnx")``.
* ``onnx-int8``    ``toolkit.load(model, runtime="onnx", quantize="int8")``.
* ``hf-pipeline``  the same weights as a ``*ForTokenClassification`` model (encoder + the tagger's
  emission layer) through ``transformers.pipeline("token-classification")`` with default settings,
  given the whole list of texts (so its default ``batch_size=1``: one forward per text).
* ``padded-256``   typical user code on the same model: batches of 32 in corpus order,
  ``padding="max_length", max_length=256``, argmax, tokens mapped back to spans naively.

Throughput is end to end (text in, entities out) over each dataset's whole text set, timed
``--repeats`` times after a warm-up (a slow baseline stops repeating once its passes took
``--max-seconds``: one pass of padded-256 over CMeEE takes minutes); chars/s and sentences/s use
the median pass (the best is kept too). Latency is one call per short text (< 50 characters).
Every configuration gets the same texts and ``--threads`` threads. The ONNX export is made (and
timed) before anything else is timed. Peak RSS is ``VmHWM`` of the configuration's own process.

Writes ``benchmarks/results/speed.{json,md,png}`` with the command, commit, date and hardware.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHORT, peak_rss_mb, rss_mb, resolve_target, run_info, write_results
from speed_configs import BUILDERS, CONFIGS, HF_BASED, OURS, PADDED_LENGTH, Configured

logger = logging.getLogger("benchmarks.speed")

BASELINE = "hf-pipeline"  # the "x HF" column divides by it
REFERENCE = "torch-fp32"  # entity agreement is measured against it
BAR_CONFIG = "onnx-int8"  # the configuration the bars are checked on
BAR_RATIO = 10.0
BAR_CHARS = 12_000.0  # issue 6's bar for ner-medical; ner-medical-small's is 30,000 (--bar-chars)
LOGIT_TOLERANCE = 1e-4
MARKER = "SPEED-RESULT "  # the one stdout line a child writes for the parent


# ------------------------------------------------------------------ child: one configuration
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100])."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def measure(cfg: Configured, texts: list[str], short: list[str], repeats: int, warmup: int, max_seconds: float) -> dict[str, Any]:
    """Warm-up, then up to ``repeats`` timed passes over ``texts`` (no new pass once they took
    ``max_seconds`` in all, if that is > 0), then one timed call per ``short`` text."""
    cfg.many(texts[:warmup])
    for text in short[:10]:
        cfg.one(text)
    times, outputs = [], []
    while len(times) < repeats and not (max_seconds > 0 and sum(times) >= max_seconds):
        start = time.perf_counter()
        outputs = cfg.many(texts)
        times.append(time.perf_counter() - start)
    latencies = []
    for text in short:
        start = time.perf_counter()
        cfg.one(text)
        latencies.append(1000 * (time.perf_counter() - start))
    spans = cfg.spans(outputs)
    chars, median = sum(map(len, texts)), statistics.median(times)
    return {
        "texts": len(texts),
        "chars": chars,
        "seconds": [round(t, 4) for t in times],
        "chars_per_s": chars / median,
        "chars_per_s_best": chars / min(times),
        "sentences_per_s": len(texts) / median,
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "calls": len(latencies)} if latencies else None,
        "entities": sum(map(len, spans)),
        "spans": spans,
    }


def child_main(config: str, spec_path: str) -> int:
    """Load one configuration, measure it on every dataset, print one JSON line for the parent."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    data = json.loads(Path(spec["texts"]).read_text(encoding="utf-8"))
    start = time.perf_counter()
    cfg = BUILDERS[config](spec, config)
    result: dict[str, Any] = {"config": config, "load_s": time.perf_counter() - start, "rss_after_load_mb": rss_mb(), "datasets": {}}
    logger.info("%s loaded in %.2f s (RSS %.0f MB)", config, result["load_s"], result["rss_after_load_mb"])
    for name, texts in data.items():
        result["datasets"][name] = m = measure(cfg, texts["texts"], texts["short"], spec["repeats"], spec["warmup"], spec["max_seconds"])
        logger.info("%s on %s: %.0f chars/s, %d entities", config, name, m["chars_per_s"], m["entities"])
    result["info"] = {k: sorted(v) if isinstance(v, set) else v for k, v in cfg.info.items()}
    result["peak_rss_mb"] = peak_rss_mb()
    print(MARKER + json.dumps(result, ensure_ascii=False), flush=True)
    return 0


# ------------------------------------------------------------------ parent: preparation
def load_texts(datasets: list[str], limit: int | None, latency: int, data_root: str | None) -> dict[str, dict[str, list[str]]]:
    """Non-blank texts of each dataset (the first ``limit``), and up to ``latency`` short ones."""
    from toolkit.data.catalogue import load_dataset

    out = {}
    for name in datasets:
        texts = [ex.text for ex in load_dataset(name, data_root=data_root)[0] if ex.text.strip()]
        out[name] = {"texts": texts[:limit] if limit else texts, "short": [t for t in texts if len(t) < SHORT][:latency]}
        logger.info("%s: %d texts, %d characters, %d short texts for latency", name, len(out[name]["texts"]), sum(map(len, out[name]["texts"])), len(out[name]["short"]))
    return out


def build_hf_folder(folder: Path, task: str, out: Path) -> list[str]:
    """Save the encoder + the tagger's emission Linear as a HF token-classification folder; its tags."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from toolkit.model.manifest import Manifest
    from toolkit.text.tags import tag_set

    manifest = Manifest.read(folder)
    spec = manifest.tasks[task]
    tags = tag_set(spec.labels, spec.scheme or "BIO")
    encoder = folder / manifest.encoder
    config = AutoConfig.from_pretrained(encoder, id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)})
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "classifier newly initialised": it is overwritten just below
    try:
        model = AutoModelForTokenClassification.from_pretrained(encoder, config=config, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
    head = load_file(str(folder / spec.weights))
    with torch.no_grad():
        model.classifier.weight.copy_(head["proj.weight"].float())
        model.classifier.bias.copy_(head["proj.bias"].float())
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(encoder).save_pretrained(out)
    return tags


def check_same_weights(folder: Path, task: str, hf_dir: Path, texts: list[str]) -> float:
    """Max |HF logits - our tagger emissions| on ``texts`` (same token ids); raises above tolerance."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from toolkit.model.multitask import MultiTaskModel

    ours = MultiTaskModel.load(folder, tasks=[task])
    theirs = AutoModelForTokenClassification.from_pretrained(hf_dir).eval()
    batch = dict(AutoTokenizer.from_pretrained(hf_dir)(texts, padding=True, truncation=True, max_length=ours.max_length, return_tensors="pt"))
    with torch.no_grad():
        diff = (ours(batch, [task])[task] - theirs(**batch).logits).abs()[batch["attention_mask"].bool()].max()
    if float(diff) > LOGIT_TOLERANCE:
        raise RuntimeError(f"the HF model's logits differ from our emissions by {float(diff):.3g} (> {LOGIT_TOLERANCE}): not the same weights")
    logger.info("HF token-classification model = our encoder + emission layer: max |logit diff| %.2g on %d texts", float(diff), len(texts))
    return float(diff)


def prepare_onnx(folder: Path, int8: bool) -> dict[str, Any]:
    """Time a fresh export into a temporary directory, then make sure the folder's own export is current."""
    from toolkit.runtime import export as onnx_export

    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        onnx_export.export_onnx(folder, out=tmp)
        info["fp32_export_s"] = round(time.perf_counter() - start, 2)
        if int8:
            start = time.perf_counter()
            onnx_export.export_onnx(folder, out=tmp, quantize="int8")
            info["int8_quantize_s"] = round(time.perf_counter() - start, 2)
    graph = onnx_export.export_onnx(folder, quantize="int8" if int8 else None)  # reused when up to date
    info["graphs"] = str(graph.parent)
    return info


def run_child(config: str, spec_path: Path, threads: int) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter; its JSON result, or ``{"error": ...}``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "RAYON_NUM_THREADS": str(threads)}
    logger.info("running %s", config)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", config, "--spec", str(spec_path)], stdout=subprocess.PIPE, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    logger.error("%s failed (exit code %d); see its log above", config, proc.returncode)
    return {"config": config, "error": f"exit code {proc.returncode}"}


# ------------------------------------------------------------------ parent: summary
def agreement(spans: list[list], reference: list[list]) -> float:
    """Micro F1 (%) of the entity sets ``(start, end, label)`` against ``reference``, text by text."""
    same = total = 0
    for a, b in zip(spans, reference):
        sa, sb = {tuple(x) for x in a}, {tuple(x) for x in b}
        same += len(sa & sb)
        total += len(sa) + len(sb)
    return 100.0 * 2 * same / total if total else 100.0


def summarise(results: dict[str, dict[str, Any]], datasets: list[str]) -> list[dict[str, Any]]:
    """One row per (dataset, configuration), with the ratio to the baseline and the agreement."""
    rows = []
    for name in datasets:
        base = results.get(BASELINE, {}).get("datasets", {}).get(name)
        ref = results.get(REFERENCE, {}).get("datasets", {}).get(name)
        for config, res in results.items():
            m = res.get("datasets", {}).get(name)
            if m is None:
                rows.append({"dataset": name, "config": config, "error": res.get("error", "not measured")})
                continue
            lat = m["latency_ms"] or {}
            rows.append({
                "dataset": name,
                "config": config,
                "chars_per_s": round(m["chars_per_s"]),
                "chars_per_s_best": round(m["chars_per_s_best"]),
                "sentences_per_s": round(m["sentences_per_s"], 1),
                "passes": len(m["seconds"]),
                "x_hf_pipeline": round(m["chars_per_s"] / base["chars_per_s"], 2) if base else None,
                "p50_ms": round(lat["p50"], 2) if lat else None,
                "p95_ms": round(lat["p95"], 2) if lat else None,
                "peak_rss_mb": round(res["peak_rss_mb"]),
                "load_s": round(res["load_s"], 2),
                "entities": m["entities"],
                "agreement_f1": round(agreement(m["spans"], ref["spans"]), 2) if ref else None,
            })
    return rows


def check_bars(rows: list[dict[str, Any]], datasets: list[str], bar_chars: float = BAR_CHARS) -> list[dict[str, Any]]:
    """The issue's bars on :data:`BAR_CONFIG`, per dataset (``met`` is ``None`` when not measured)."""
    by = {(r["dataset"], r["config"]): r for r in rows if "error" not in r}
    bars = []
    for name in datasets:
        target = by.get((name, BAR_CONFIG))
        also = [r["config"] for r in rows if r["dataset"] == name and r["config"] in OURS and (r.get("x_hf_pipeline") or 0) >= BAR_RATIO]
        ratio = target.get("x_hf_pipeline") if target else None
        bars.append({"bar": f"{BAR_CONFIG} >= {BAR_RATIO:g}x {BASELINE}", "dataset": name, "value": ratio, "needed": BAR_RATIO, "met": None if ratio is None else ratio >= BAR_RATIO, "configs_meeting": also})
        speed = target["chars_per_s"] if target else None
        bars.append({"bar": f"{BAR_CONFIG} >= {bar_chars:,.0f} chars/s", "dataset": name, "value": speed, "needed": bar_chars, "met": None if speed is None else speed >= bar_chars})
    return bars


def _cell(value: Any, fmt: str = "{:,}") -> str:
    return "-" if value is None else fmt.format(value)


def dataset_table(name: str, texts: list[str], rows: list[dict[str, Any]]) -> list[str]:
    chars = sum(map(len, texts))
    lines = [f"## {name}: {len(texts):,} texts, {chars:,} characters (mean {chars / max(1, len(texts)):.1f})", ""]
    lines += [f"| config | chars/s | best chars/s | sentences/s | passes | x {BASELINE} | p50 ms | p95 ms | peak RSS MB | load s | entities | agreement with {REFERENCE} (F1 %) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['config']} | failed: {r['error']} |" + " |" * 10)
            continue
        lines.append(
            f"| {r['config']} | {r['chars_per_s']:,} | {r['chars_per_s_best']:,} | {r['sentences_per_s']:,} | {r['passes']} | {_cell(r['x_hf_pipeline'], '{:.2f}')} | "
            f"{_cell(r['p50_ms'], '{:.1f}')} | {_cell(r['p95_ms'], '{:.1f}')} | {r['peak_rss_mb']:,} | {r['load_s']:.2f} | {r['entities']:,} | {_cell(r['agreement_f1'], '{:.2f}')} |"
        )
    return lines + [""]


def markdown(args: argparse.Namespace, folder: Path, task: str, data: dict[str, dict[str, list[str]]], rows: list[dict[str, Any]], bars: list[dict[str, Any]], notes: list[str]) -> str:
    lines = [f"# Inference speed: {args.model} (task {task}), side by side in one run", ""]
    intro = (
        f"Model folder `{folder}`. {args.threads} threads for every configuration; up to {args.repeats} timed passes after a warm-up "
        f"(none started after {args.max_seconds:g} s of passes); "
        "chars/s and sentences/s from the median pass, end to end (text in, entities out); latency over single short texts "
        f"(< {SHORT} characters) called one at a time."
    )
    lines += [intro, ""]
    for name in data:
        lines += dataset_table(name, data[name]["texts"], [r for r in rows if r["dataset"] == name])
    lines += ["## Bars", "", "| bar | dataset | measured | needed | met |", "|---|---|---:|---:|---|"]
    for b in bars:
        met = "not measured" if b["met"] is None else ("yes" if b["met"] else "**no**")
        extra = f" (>= {b['needed']:g}x: {', '.join(b['configs_meeting']) or 'none'})" if "configs_meeting" in b else ""
        lines.append(f"| {b['bar']} | {b['dataset']} | {_cell(b['value'])} | {b['needed']:,g} | {met}{extra} |")
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def notes_for(args: argparse.Namespace, data: dict[str, dict[str, list[str]]], prep: dict[str, Any], results: dict[str, dict[str, Any]]) -> list[str]:
    notes = []
    if args.limit or args.threads != 2:
        notes.append(f"**Quick run** (--limit {args.limit}, --threads {args.threads}): not the issue's bar check, which is the full splits on 2 threads.")
    notes.append(f"Bars are checked on {BAR_CONFIG} with median chars/s; 'x {BASELINE}' divides each configuration's chars/s by {BASELINE}'s on the same texts.")
    if "hf_logit_diff" in prep:
        notes.append(
            f"Same weights: the HF baselines run a `*ForTokenClassification` built from the folder's encoder and the tagger's emission layer; its logits match our "
            f"emissions (max |difference| {prep['hf_logit_diff']:.2g} on a few texts). They decode by **argmax without the CRF** (no transition constraints, no entity scores) and without our "
            "text normalisation, so their entities differ (see the agreement column)."
        )
    for config in HF_BASED:
        if config in results and "info" in results[config]:
            notes.append(f"{config}: {results[config]['info']['call']}.")
    long_hf = ", ".join(f"{n} {sum(len(t) > 510 for t in d['texts'])}" for n, d in data.items())
    long_padded = ", ".join(f"{n} {sum(len(t) > PADDED_LENGTH - 2 for t in d['texts'])}" for n, d in data.items())
    notes.append(
        "Long texts: ours split them into windows (manifest max_length) and keep every entity; hf-pipeline truncates at the tokenizer's 512 tokens "
        f"(texts over 510 characters: {long_hf}), padded-256 at 256 tokens (over 254: {long_padded}); characters are counted in full for every configuration."
    )
    bf16 = results.get("torch-bf16", {}).get("info", {}).get("emission_dtypes")
    if bf16 is not None:
        notes.append(f"torch-bf16: the tagger's emission layer returned {', '.join(bf16)} under autocast (the pipeline casts emissions to float32 before the numpy CRF decoding).")
    if "onnx" in prep:
        o = prep["onnx"]
        timing = f"fp32 export {o['fp32_export_s']} s" + (f", int8 quantisation {o['int8_quantize_s']} s" if "int8_quantize_s" in o else "")
        notes.append(f"ONNX export (one-off, not in load time): {timing}; graphs in `{o['graphs']}`.")
    notes.append("Peak RSS and load time are per configuration process (load = imports + model load, ready to call), shared by its datasets.")
    return notes


def plot(rows: list[dict[str, Any]], datasets: list[str], title: str, path: Path, bar_chars: float = BAR_CHARS) -> bool:
    """Horizontal bars of chars/s per configuration and dataset; log scale when the spread is large."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    ok = [r for r in rows if "error" not in r]
    configs = list(dict.fromkeys(r["config"] for r in ok))
    if not configs:
        return False
    value = {(r["dataset"], r["config"]): r["chars_per_s"] for r in ok}
    height = 0.8 / len(datasets)
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.35 * len(configs) * len(datasets)))
    for k, name in enumerate(datasets):
        ys = [i + k * height for i in range(len(configs))]
        vals = [value.get((name, c), 0) for c in configs]
        ax.barh(ys, vals, height=height, label=name)
        for y, v in zip(ys, vals):
            if v:
                ax.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
    ax.set_yticks([i + height * (len(datasets) - 1) / 2 for i in range(len(configs))], configs)
    ax.invert_yaxis()
    positive = [v for v in value.values() if v > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_xscale("log")
    ax.axvline(bar_chars, linestyle="--", color="grey", label=f"{bar_chars:,.0f} chars/s bar")
    ax.set_xlabel("characters per second, end to end (median pass)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# ------------------------------------------------------------------ parent: main
def quiet_onnxruntime(record: logging.LogRecord) -> bool:
    """Drop the quantiser's per-tensor INFO lines (it logs them on the root logger)."""
    return record.levelno >= logging.WARNING or "onnxruntime" not in record.pathname


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ner-medical", help="registered name or model folder")
    ap.add_argument("--task", help="tagger task to time (default: the name's task, else the first tagger)")
    ap.add_argument("--datasets", default="msra:test,cmeee:dev", help="comma-separated catalogue splits")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {', '.join(CONFIGS)}")
    ap.add_argument("--limit", type=int, help="only the first N texts of each dataset (a quick check)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over each text set")
    ap.add_argument("--max-seconds", type=float, default=180.0, help="no further pass once a configuration's passes over a dataset took this long (at least one pass; 0: always --repeats)")
    ap.add_argument("--warmup", type=int, default=64, help="texts in the untimed warm-up pass")
    ap.add_argument("--latency-texts", type=int, default=200, help=f"single short texts (< {SHORT} chars) timed one at a time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, help="our pipelines' batch size (default: the pipeline's, toolkit.runtime.pipeline.BATCH_SIZE)")
    ap.add_argument("--data-root")
    ap.add_argument("--name", default="speed", help="results file name")
    ap.add_argument("--bar-chars", type=float, default=BAR_CHARS, help="the chars/s bar checked on onnx-int8 (issue 6: 12,000 for ner-medical, 30,000 for ner-medical-small)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    unknown = [c for c in args.configs.split(",") if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown configurations {unknown}; choose from {', '.join(CONFIGS)}")
    if args.repeats < 1 or args.threads < 1:
        ap.error("--repeats and --threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.child or 'speed'}: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet_onnxruntime)
    if args.child:
        return child_main(args.child, args.spec)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' weight-loading bars, here and in the children
    configs = args.configs.split(",")
    datasets = args.datasets.split(",")
    folder, task = resolve_target(args.model, args.task)
    logger.info("timing %s (task %s) from %s: %s", args.model, task, folder, ", ".join(configs))
    data = load_texts(datasets, args.limit, args.latency_texts, args.data_root)
    prep: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="speed-") as tmpname:
        tmp = Path(tmpname)
        spec = {"folder": str(folder), "task": task, "threads": args.threads, "batch_size": args.batch_size, "repeats": args.repeats, "max_seconds": args.max_seconds, "warmup": args.warmup, "texts": str(tmp / "texts.json"), "hf_dir": str(tmp / "hf")}
        (tmp / "texts.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        if any(c in HF_BASED for c in configs):
            prep["hf_tags"] = build_hf_folder(folder, task, tmp / "hf")
            sample = [t for d in data.values() for t in d["texts"][:4]]
            prep["hf_logit_diff"] = check_same_weights(folder, task, tmp / "hf", sample)
        if any(c.startswith("onnx") for c in configs):
            prep["onnx"] = prepare_onnx(folder, "onnx-int8" in configs)
        (tmp / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        results = {c: run_child(c, tmp / "spec.json", args.threads) for c in configs}
    rows = summarise(results, datasets)
    bars = check_bars(rows, datasets, args.bar_chars)
    notes = notes_for(args, data, prep, results)
    for res in results.values():
        for m in res.get("datasets", {}).values():
            m.pop("spans", None)
    run = run_info(sys.argv, threads=args.threads)
    md = markdown(args, folder, task, data, rows, bars, notes)
    payload = {"run": run, "model": args.model, "folder": str(folder), "task": task, "settings": {k: v for k, v in vars(args).items() if k not in ("child", "spec")}, "preparation": prep, "rows": rows, "bars": bars, "notes": notes, "configs": results}
    write_results(args.name, payload, md)
    plot(rows, datasets, f"{args.model} ({task}), {args.threads} threads: text in, entities out", RESULTS / f"{args.name}.png", args.bar_chars)
    logger.info("wrote %s", RESULTS / f"{args.name}.md")
    for b in bars:
        logger.info("bar %s on %s: %s (measured %s)", b["bar"], b["dataset"], {True: "met", False: "NOT met", None: "not measured"}[b["met"]], b["value"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
