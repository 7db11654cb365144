"""Inference speed of teachers and students, side by side in one run: our runtimes against the HF pipelines.

    python benchmarks/speed.py                   # ner-medical on msra:test and cmeee:dev, every configuration
    python benchmarks/speed.py --models ner-medical ner-medical-small sentiment sentiment-small \
        --pair ner-medical-small=ner-medical --pair sentiment-small=sentiment \
        --datasets msra:test,cmeee:dev,chnsenticorp:test --name speed_students
    python benchmarks/speed.py --model runs/zh-multitask-pilot-backup/model:sentiment --limit 200 --repeats 1 \
        --configs onnx-int8,hf-pipeline --name speed-quick          # a quick look at an unregistered folder

Models are registered names or model folders, optionally ``NAME:TASK`` (default: the name's task,
else the folder's first). Any head kind: entity heads (tagger, span) and classifiers are timed on
the texts of the text datasets, matchers on the pairs ``(a, b)`` of the pair datasets (characters
= len(a) + len(b)); by default a text head only on the datasets of its own data (NER texts for
entity heads, classification texts for classifiers) when ``--datasets`` has any, else on every
text dataset (``--all-text-datasets``: always every one).

Configurations, each run in its own subprocess per model (so imports, load time and peak RSS are its own):

* ``torch-fp32``   ``toolkit.load(model)``: PyTorch eager, inputs sorted by length, dynamic padding.
* ``torch-bf16``   the same pipeline called inside ``torch.autocast("cpu", dtype=torch.bfloat16)``.
* ``onnx-fp32``    ``toolkit.load(model, runtime="onnx")``.
* ``onnx-int8``    ``toolkit.load(model, runtime="onnx", quantize="int8")``.
* ``hf-pipeline``  the same encoder weights through ``transformers.pipeline`` with default settings,
  given the whole list of inputs (so its default ``batch_size=1``: one forward per input):
  ``"token-classification"`` for entity heads, ``"text-classification"`` for classifiers and matchers
  (pairs as ``{"text": a, "text_pair": b}``). Exact for a tagger (its emission layer is the HF
  classifier); other heads have no exact HF form and get a freshly initialised HF head (same encoder
  compute, meaningless outputs), said in the notes. See ``speed_hf.py``.
* ``padded-256``   typical user code on the same HF model: batches of 32 in corpus order,
  ``padding="max_length", max_length=256``, argmax (tokens mapped back to spans naively).

Throughput is end to end (input in, answer out) over each dataset's whole input set, timed
``--repeats`` times after a warm-up (a slow baseline stops repeating once its passes took
``--max-seconds``); chars/s and inputs/s use the median pass (the best is kept too). Latency is one
call per short input (< 50 characters). Every configuration gets the same inputs and ``--threads``
threads. ONNX exports are made (and timed) before anything else is timed. Peak RSS is ``VmHWM``
of the configuration's own process.

``--pair STUDENT=TEACHER`` (repeatable) reports the student's onnx-int8 chars/s over the HF pipeline
on the teacher's weights (bar: 10x) and against ``--bar-chars`` (default 30,000), plus how often its
int8 answers match the teacher's fp32 ones. Without pairs every model is checked against its own
HF pipeline and ``--bar-chars`` (default 12,000, issue 6's bar for ner-medical).

Writes ``benchmarks/results/NAME.{json,md,png}`` (default ``speed``) with the command, commit, date and hardware.
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
from common import RESULTS, SHORT, peak_rss_mb, rss_mb, run_info, write_results
from speed_configs import BUILDERS, CONFIGS, HF_BASED, Configured
from speed_hf import build_hf_folder, check_same_weights
from speed_report import BAR_CHARS, STUDENT_BAR_CHARS, check_bars, markdown, notes_for, pair_report, plot, summarise

logger = logging.getLogger("benchmarks.speed")

MARKER = "SPEED-RESULT "  # the one stdout line a child writes for the parent


# ------------------------------------------------------------------ child: one configuration of one model
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100])."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def size(item: Any) -> int:
    """Characters of an input: a text's length, a pair's ``len(a) + len(b)``."""
    return len(item) if isinstance(item, str) else len(item[0]) + len(item[1])


def measure(cfg: Configured, inputs: list[Any], short: list[Any], repeats: int, warmup: int, max_seconds: float) -> dict[str, Any]:
    """Warm-up, then up to ``repeats`` timed passes over ``inputs`` (no new pass once they took
    ``max_seconds`` in all, if that is > 0), then one timed call per ``short`` input."""
    cfg.many(inputs[:warmup])
    for item in short[:10]:
        cfg.one(item)
    times, outputs = [], []
    while len(times) < repeats and not (max_seconds > 0 and sum(times) >= max_seconds):
        start = time.perf_counter()
        outputs = cfg.many(inputs)
        times.append(time.perf_counter() - start)
    latencies = []
    for item in short:
        start = time.perf_counter()
        cfg.one(item)
        latencies.append(1000 * (time.perf_counter() - start))
    chars, median = sum(map(size, inputs)), statistics.median(times)
    return {
        "inputs": len(inputs),
        "chars": chars,
        "seconds": [round(t, 4) for t in times],
        "chars_per_s": chars / median,
        "chars_per_s_best": chars / min(times),
        "inputs_per_s": len(inputs) / median,
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "calls": len(latencies)} if latencies else None,
        "answers": cfg.answers(outputs),
    }


def child_main(config: str, spec_path: str) -> int:
    """Load one configuration of one model, measure it on its datasets, print one JSON line for the parent."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    data = json.loads(Path(spec["inputs"]).read_text(encoding="utf-8"))
    start = time.perf_counter()
    cfg = BUILDERS[config](spec, config)
    result: dict[str, Any] = {"config": config, "load_s": time.perf_counter() - start, "rss_after_load_mb": rss_mb(), "datasets": {}}
    logger.info("%s loaded in %.2f s (RSS %.0f MB)", config, result["load_s"], result["rss_after_load_mb"])
    for name in spec["datasets"]:
        pair = data[name]["input"] == "pair"
        inputs, short = ([tuple(x) for x in data[name][k]] if pair else data[name][k] for k in ("inputs", "short"))
        result["datasets"][name] = m = measure(cfg, inputs, short, spec["repeats"], spec["warmup"], spec["max_seconds"])
        logger.info("%s on %s: %.0f chars/s", config, name, m["chars_per_s"])
    result["info"] = {k: sorted(v) if isinstance(v, set) else v for k, v in cfg.info.items()}
    result["peak_rss_mb"] = peak_rss_mb()
    print(MARKER + json.dumps(result, ensure_ascii=False), flush=True)
    return 0


# ------------------------------------------------------------------ parent: preparation
def resolve_model(entry: str) -> dict[str, Any]:
    """``NAME``, ``FOLDER`` or either with ``:TASK``: its folder, task, head kind and inputs."""
    from toolkit import kinds
    from toolkit.model.manifest import Manifest
    from toolkit.registry import resolve

    name, task = entry, None
    head, sep, tail = entry.rpartition(":")
    if sep and head and "/" not in tail:
        name, task = head, tail
    folder, selected = resolve(name)
    manifest = Manifest.read(folder)
    task = task or next((t for t in selected or [] if t in manifest.tasks), None) or next(iter(manifest.tasks))
    if task not in manifest.tasks:
        raise SystemExit(f"{entry}: the folder {folder} has no task {task!r}; its tasks: {', '.join(manifest.tasks)}")
    kind = kinds.get(manifest.tasks[task].kind)
    return {"label": entry, "name": name, "folder": folder, "task": task, "kind": kind.name, "input": kind.input, "data": kind.data,
            "output": "entities" if kind.data == "ner" else "label", "max_length": manifest.max_length}


def load_inputs(datasets: list[str], limit: int | None, latency: int, data_root: str | None) -> dict[str, dict[str, Any]]:
    """Per dataset: its data kind, ``input`` (``text`` or ``pair``), the non-blank inputs (the first
    ``limit``) and up to ``latency`` short ones (< ``SHORT`` characters, a pair's sides together)."""
    from toolkit.data.catalogue import dataset_info, load_dataset

    out = {}
    for name in datasets:
        kind = dataset_info(name).task
        examples = load_dataset(name, data_root=data_root)[0]
        if kind == "pair":
            inputs: list[Any] = [(ex.text_a, ex.text_b) for ex in examples if ex.text_a.strip() and ex.text_b.strip()]
        else:
            inputs = [ex.text for ex in examples if ex.text.strip()]
        inputs = inputs[:limit] if limit else inputs
        short = [x for x in inputs if size(x) < SHORT][:latency]
        out[name] = {"data": kind, "input": "pair" if kind == "pair" else "text", "inputs": inputs, "short": short, "chars": sum(map(size, inputs))}
        logger.info("%s: %d %s, %d characters, %d short ones for latency", name, len(inputs), out[name]["input"] + "s", out[name]["chars"], len(short))
    return out


def assign_datasets(models: list[dict[str, Any]], data: dict[str, dict[str, Any]], every_text: bool) -> None:
    """Each model's ``datasets`` (the same input; its own data first) and ``skipped`` ``(dataset, why)``."""
    for m in models:
        same = [n for n in data if data[n]["input"] == m["input"]]
        own = [n for n in same if data[n]["data"] == m["data"]]
        m["datasets"] = same if every_text or not own else own
        m["skipped"] = [
            (n, f"a {m['kind']} head takes {m['input']}s, {n} holds {data[n]['input']}s") if n not in same
            else (n, f"{n} is {data[n]['data']} data, the {m['kind']} head's is {m['data']} (--all-text-datasets times it anyway)")
            for n in data if n not in m["datasets"]
        ]


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
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", config, "--spec", str(spec_path)], stdout=subprocess.PIPE, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    logger.error("%s failed (exit code %d); see its log above", config, proc.returncode)
    return {"config": config, "error": f"exit code {proc.returncode}"}


def prepare_hf(m: dict[str, Any], data: dict[str, dict[str, Any]], out: Path) -> dict[str, Any]:
    """Build the model's HF folder and check it holds our weights (a few texts of its datasets)."""
    hf = build_hf_folder(m["folder"], m["task"], out)
    sample = [x if isinstance(x, str) else x[0] for n in m["datasets"] for x in data[n]["inputs"][:4]]
    m["hf_summary"] = f"{hf['hf_task']}, `{hf['class']}`, " + ("exact (our head's weights)" if hf["exact"] else "**fresh head: not exact**")
    return {"hf": hf, "hf_check": check_same_weights(m["folder"], m["task"], out, hf, sample) if sample else None}


# ------------------------------------------------------------------ parent: main
def quiet_onnxruntime(record: logging.LogRecord) -> bool:
    """Drop the quantiser's per-tensor INFO lines (it logs them on the root logger)."""
    return record.levelno >= logging.WARNING or "onnxruntime" not in record.pathname


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", metavar="MODEL", help="registered names or model folders, each optionally NAME:TASK; all timed in this run")
    ap.add_argument("--model", help="one model (as an item of --models; default ner-medical when neither is given)")
    ap.add_argument("--task", help="with --model: the task to time (default: the name's task, else the folder's first)")
    ap.add_argument("--pair", action="append", default=[], metavar="STUDENT=TEACHER", help="report the student's onnx-int8 against the HF pipeline on the teacher (repeatable)")
    ap.add_argument("--datasets", default="msra:test,cmeee:dev", help="comma-separated catalogue splits")
    ap.add_argument("--all-text-datasets", action="store_true", help="time every text head on every text dataset (default: on those of its own data, when there are any)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {', '.join(CONFIGS)}")
    ap.add_argument("--limit", type=int, help="only the first N inputs of each dataset (a quick check)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over each input set")
    ap.add_argument("--max-seconds", type=float, default=180.0, help="no further pass once a configuration's passes over a dataset took this long (at least one pass; 0: always --repeats)")
    ap.add_argument("--warmup", type=int, default=64, help="inputs in the untimed warm-up pass")
    ap.add_argument("--latency-texts", type=int, default=200, help=f"single short inputs (< {SHORT} chars) timed one at a time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, help="our pipelines' batch size (default: the pipeline's, toolkit.runtime.pipeline.BATCH_SIZE)")
    ap.add_argument("--data-root")
    ap.add_argument("--name", default="speed", help="results file name")
    ap.add_argument("--bar-chars", type=float, help=f"the chars/s bar checked on onnx-int8 (default: {STUDENT_BAR_CHARS:,.0f} for the students of --pair; without pairs {BAR_CHARS:,.0f}, issue 6's for ner-medical, on every model)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    unknown = [c for c in args.configs.split(",") if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown configurations {unknown}; choose from {', '.join(CONFIGS)}")
    if args.repeats < 1 or args.threads < 1:
        ap.error("--repeats and --threads must be at least 1")
    if args.models and (args.model or args.task):
        ap.error("--models or --model (with --task), not both: write NAME:TASK in --models")
    if not args.models:
        model = args.model or "ner-medical"
        args.models = [f"{model}:{args.task}" if args.task else model]
    if len(set(args.models)) != len(args.models):
        ap.error("a model is given twice in --models")
    if args.bar_chars is None:
        args.bar_chars = STUDENT_BAR_CHARS if args.pair else BAR_CHARS
    return args


def parse_pairs(pairs: list[str], models: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``STUDENT=TEACHER`` items as (label, label); a side matches a model's label or its name."""
    def find(side: str) -> str:
        hits = [m["label"] for m in models if side in (m["label"], m["name"])]
        if len(hits) != 1:
            raise SystemExit(f"--pair: {side!r} is {'none' if not hits else 'more than one'} of the models timed ({', '.join(m['label'] for m in models)})")
        return hits[0]

    out = []
    for item in pairs:
        student, sep, teacher = item.partition("=")
        if not sep:
            raise SystemExit(f"--pair takes STUDENT=TEACHER, got {item!r}")
        out.append((find(student), find(teacher)))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.child or 'speed'}: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet_onnxruntime)
    if args.child:
        return child_main(args.child, args.spec)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' weight-loading bars, here and in the children
    configs = args.configs.split(",")
    models = [resolve_model(entry) for entry in args.models]
    pairs = parse_pairs(args.pair, models)
    data = load_inputs(args.datasets.split(","), args.limit, args.latency_texts, args.data_root)
    assign_datasets(models, data, args.all_text_datasets)
    for m in models:
        m["hf_summary"] = "not timed"
        logger.info("%s: %s head %s of %s, on %s", m["label"], m["kind"], m["task"], m["folder"], ", ".join(m["datasets"]) or "no dataset")
    prep: dict[str, Any] = {"models": {m["label"]: {} for m in models}, "onnx": {}}
    results: dict[str, dict[str, Any]] = {}
    settings = {"threads": args.threads, "batch_size": args.batch_size, "repeats": args.repeats, "max_seconds": args.max_seconds, "warmup": args.warmup}
    with tempfile.TemporaryDirectory(prefix="speed-") as tmpname:
        tmp = Path(tmpname)
        (tmp / "inputs.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        timed = [m for m in models if m["datasets"]]
        for i, m in enumerate(timed):  # every preparation before any timing
            if any(c in HF_BASED for c in configs):
                prep["models"][m["label"]] = prepare_hf(m, data, tmp / f"hf-{i}")
            folder = str(m["folder"])
            if any(c.startswith("onnx") for c in configs) and folder not in prep["onnx"]:
                prep["onnx"][folder] = prepare_onnx(m["folder"], "onnx-int8" in configs)
        for i, m in enumerate(timed):
            spec = {**settings, "folder": str(m["folder"]), "task": m["task"], "input": m["input"], "output": m["output"], "max_length": m["max_length"],
                    "datasets": m["datasets"], "inputs": str(tmp / "inputs.json"), "hf_dir": str(tmp / f"hf-{i}"), "hf_task": prep["models"][m["label"]].get("hf", {}).get("hf_task")}
            (tmp / f"spec-{i}.json").write_text(json.dumps(spec), encoding="utf-8")
            results[m["label"]] = {}
            for c in configs:
                logger.info("running %s / %s", m["label"], c)
                results[m["label"]][c] = run_child(c, tmp / f"spec-{i}.json", args.threads)
    rows = summarise(results, models)
    pair_rows = pair_report(rows, results, models, pairs)
    bars = check_bars(rows, models, pair_rows, args.bar_chars)
    notes = notes_for(vars(args), models, data, prep, results, bool(pairs))
    for per_model in results.values():
        for res in per_model.values():
            for m in res.get("datasets", {}).values():
                m.pop("answers", None)
    labels = ", ".join(m["label"] for m in models)
    intro = (f"{args.threads} threads for every configuration; up to {args.repeats} timed passes after a warm-up (none started after {args.max_seconds:g} s of passes); "
             "chars/s and inputs/s from the median pass, end to end (text or pair in, entities or label out); latency over single short inputs "
             f"(< {SHORT} characters) called one at a time.")
    md = markdown(f"Inference speed: {labels}, side by side in one run", intro, models, data, rows, pair_rows, bars, notes)
    public = [{k: str(v) if isinstance(v, Path) else v for k, v in m.items()} for m in models]
    payload = {"run": run_info(sys.argv, threads=args.threads), "models": public, "pairs": pair_rows, "settings": {k: v for k, v in vars(args).items() if k not in ("child", "spec")},
               "preparation": prep, "rows": rows, "bars": bars, "notes": notes, "configs": results}
    write_results(args.name, payload, md)
    plot(rows, list(data), f"{labels}, {args.threads} threads: input in, answer out", RESULTS / f"{args.name}.png", args.bar_chars)
    logger.info("wrote %s", RESULTS / f"{args.name}.md")
    for b in bars:
        logger.info("bar %s, %s on %s: %s (measured %s)", b["bar"], b["model"], b["dataset"], {True: "met", False: "NOT met", None: "not measured"}[b["met"]], b["value"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
