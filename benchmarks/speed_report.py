"""benchmarks/speed.py's summary: rows per (model, dataset, configuration), bars, student/teacher
ratios, the Markdown report, its notes and the plot. Plain data in, plain data out."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from common import SHORT
from speed_configs import HF_BASED, OURS, PADDED_LENGTH

logger = logging.getLogger("benchmarks.speed")

BASELINE = "hf-pipeline"  # the "x HF" column divides by it (the same model's)
REFERENCE = "torch-fp32"  # agreement is measured against it (the same model's)
BAR_CONFIG = "onnx-int8"  # the configuration the issue's bars are checked on
BAR_RATIO = 10.0
STUDENT_BAR_CHARS = 30_000.0  # the students' bar (ONNX int8 >= 30,000 chars/s on 2 cores), checked with --pair
BAR_CHARS = 12_000.0  # issue 6's bar for ner-medical, checked on every model when no --pair is given


def agreement(answers: list[Any], reference: list[Any], entities: bool) -> float:
    """Entity heads: micro F1 (%) of the sets ``(start, end, label)`` against ``reference``, input by
    input. Label heads: the share (%) of inputs with the same label."""
    if not entities:
        return 100.0 * sum(a == b for a, b in zip(answers, reference)) / max(1, len(reference))
    same = total = 0
    for a, b in zip(answers, reference):
        sa, sb = {tuple(x) for x in a}, {tuple(x) for x in b}
        same += len(sa & sb)
        total += len(sa) + len(sb)
    return 100.0 * 2 * same / total if total else 100.0


def _measured(results: dict[str, dict[str, Any]], model: str, config: str, dataset: str) -> dict[str, Any] | None:
    return results.get(model, {}).get(config, {}).get("datasets", {}).get(dataset)


def summarise(results: dict[str, dict[str, Any]], models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, dataset, configuration), with the ratio to the model's own HF baseline
    and the agreement with its own PyTorch fp32 answers."""
    rows = []
    for m in models:
        entities = m["output"] == "entities"
        for name in m["datasets"]:
            base = _measured(results, m["label"], BASELINE, name)
            ref = _measured(results, m["label"], REFERENCE, name)
            for config, res in results.get(m["label"], {}).items():
                d = res.get("datasets", {}).get(name)
                if d is None:
                    rows.append({"model": m["label"], "dataset": name, "config": config, "error": res.get("error", "not measured")})
                    continue
                lat = d["latency_ms"] or {}
                rows.append({
                    "model": m["label"], "dataset": name, "config": config,
                    "chars_per_s": round(d["chars_per_s"]),
                    "chars_per_s_best": round(d["chars_per_s_best"]),
                    "inputs_per_s": round(d["inputs_per_s"], 1),
                    "passes": len(d["seconds"]),
                    "x_hf_pipeline": round(d["chars_per_s"] / base["chars_per_s"], 2) if base else None,
                    "p50_ms": round(lat["p50"], 2) if lat else None,
                    "p95_ms": round(lat["p95"], 2) if lat else None,
                    "peak_rss_mb": round(res["peak_rss_mb"]),
                    "load_s": round(res["load_s"], 2),
                    "entities": sum(map(len, d["answers"])) if entities else None,
                    "agreement": round(agreement(d["answers"], ref["answers"], entities), 2) if ref else None,
                })
    return rows


def _value(rows: list[dict[str, Any]], model: str, dataset: str, config: str, key: str = "chars_per_s") -> Any:
    return next((r.get(key) for r in rows if (r["model"], r["dataset"], r["config"]) == (model, dataset, config) and "error" not in r), None)


def pair_report(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]], models: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Per student/teacher pair and dataset: the student's onnx-int8 chars/s against the HF pipeline
    on the teacher's weights, and how often the student's int8 answers are the teacher's fp32 ones."""
    out = []
    by_label = {m["label"]: m for m in models}
    for student, teacher in pairs:
        for name in by_label[student]["datasets"]:
            mine = _value(rows, student, name, BAR_CONFIG)
            hf = _value(rows, teacher, name, BASELINE)
            a, b = _measured(results, student, BAR_CONFIG, name), _measured(results, teacher, REFERENCE, name)
            same = agreement(a["answers"], b["answers"], by_label[student]["output"] == "entities") if a and b else None
            out.append({
                "student": student, "teacher": teacher, "dataset": name,
                "student_int8_chars_per_s": mine,
                "teacher_int8_chars_per_s": _value(rows, teacher, name, BAR_CONFIG),
                "teacher_fp32_chars_per_s": _value(rows, teacher, name, REFERENCE),
                "teacher_hf_pipeline_chars_per_s": hf,
                "x_hf_pipeline_on_teacher": round(mine / hf, 2) if mine and hf else None,
                "agreement_with_teacher_fp32": round(same, 2) if same is not None else None,
            })
    return out


def check_bars(rows: list[dict[str, Any]], models: list[dict[str, Any]], pairs: list[dict[str, Any]], bar_chars: float = BAR_CHARS) -> list[dict[str, Any]]:
    """The issue's bars on :data:`BAR_CONFIG` (``met`` is ``None`` when not measured): per pair, the
    student against the HF pipeline on its teacher and against ``bar_chars``; without pairs, every
    model against its own HF pipeline and ``bar_chars``."""
    bars = []

    def add(bar: str, model: str, dataset: str, value: Any, needed: float, **extra: Any) -> None:
        bars.append({"bar": bar, "model": model, "dataset": dataset, "value": value, "needed": needed, "met": None if value is None else value >= needed, **extra})

    if pairs:
        for p in pairs:
            add(f"{BAR_CONFIG} >= {BAR_RATIO:g}x {BASELINE} on {p['teacher']}", p["student"], p["dataset"], p["x_hf_pipeline_on_teacher"], BAR_RATIO)
            add(f"{BAR_CONFIG} >= {bar_chars:,.0f} chars/s", p["student"], p["dataset"], p["student_int8_chars_per_s"], bar_chars)
        return bars
    for m in models:
        for name in m["datasets"]:
            also = [r["config"] for r in rows if (r["model"], r["dataset"]) == (m["label"], name) and r["config"] in OURS and (r.get("x_hf_pipeline") or 0) >= BAR_RATIO]
            add(f"{BAR_CONFIG} >= {BAR_RATIO:g}x {BASELINE}", m["label"], name, _value(rows, m["label"], name, BAR_CONFIG, "x_hf_pipeline"), BAR_RATIO, configs_meeting=also)
            add(f"{BAR_CONFIG} >= {bar_chars:,.0f} chars/s", m["label"], name, _value(rows, m["label"], name, BAR_CONFIG), bar_chars)
    return bars


def _cell(value: Any, fmt: str = "{:,}") -> str:
    return "-" if value is None else fmt.format(value)


def dataset_table(name: str, data: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    chars, n = data["chars"], len(data["inputs"])
    what = "pairs" if data["input"] == "pair" else "texts"
    lines = [f"## {name}: {n:,} {what}, {chars:,} characters (mean {chars / max(1, n):.1f})", ""]
    lines += [f"| model | config | chars/s | best chars/s | {what}/s | passes | x {BASELINE} | p50 ms | p95 ms | peak RSS MB | load s | entities | agreement with {REFERENCE} (%) |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['config']} | failed: {r['error']} |" + " |" * 10)
            continue
        lines.append(
            f"| {r['model']} | {r['config']} | {r['chars_per_s']:,} | {r['chars_per_s_best']:,} | {r['inputs_per_s']:,} | {r['passes']} | {_cell(r['x_hf_pipeline'], '{:.2f}')} | "
            f"{_cell(r['p50_ms'], '{:.1f}')} | {_cell(r['p95_ms'], '{:.1f}')} | {r['peak_rss_mb']:,} | {r['load_s']:.2f} | {_cell(r['entities'])} | {_cell(r['agreement'], '{:.2f}')} |"
        )
    return lines + [""]


def markdown(title: str, intro: str, models: list[dict[str, Any]], data: dict[str, dict[str, Any]], rows: list[dict[str, Any]], pairs: list[dict[str, Any]], bars: list[dict[str, Any]], notes: list[str]) -> str:
    lines = [f"# {title}", "", intro, "", "| model | folder | task | head | datasets | HF counterpart |", "|---|---|---|---|---|---|"]
    for m in models:
        lines.append(f"| {m['label']} | `{m['folder']}` | {m['task']} | {m['kind']} | {', '.join(m['datasets']) or 'none'} | {m['hf_summary']} |")
    lines.append("")
    for name in data:
        subset = [r for r in rows if r["dataset"] == name]
        if subset:
            lines += dataset_table(name, data[name], subset)
    if pairs:
        lines += ["## Students against their teachers", "",
                  f"| student | teacher | dataset | student {BAR_CONFIG} chars/s | teacher {BAR_CONFIG} | teacher {REFERENCE} | {BASELINE} on teacher | student {BAR_CONFIG} / {BASELINE} on teacher | agreement with teacher {REFERENCE} (%) |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for p in pairs:
            lines.append(f"| {p['student']} | {p['teacher']} | {p['dataset']} | {_cell(p['student_int8_chars_per_s'])} | {_cell(p['teacher_int8_chars_per_s'])} | "
                         f"{_cell(p['teacher_fp32_chars_per_s'])} | {_cell(p['teacher_hf_pipeline_chars_per_s'])} | {_cell(p['x_hf_pipeline_on_teacher'], '{:.2f}x')} | {_cell(p['agreement_with_teacher_fp32'], '{:.2f}')} |")
        lines.append("")
    lines += ["## Bars", "", "| bar | model | dataset | measured | needed | met |", "|---|---|---|---:|---:|---|"]
    for b in bars:
        met = "not measured" if b["met"] is None else ("yes" if b["met"] else "**no**")
        extra = f" (>= {b['needed']:g}x: {', '.join(b['configs_meeting']) or 'none'})" if "configs_meeting" in b else ""
        lines.append(f"| {b['bar']} | {b['model']} | {b['dataset']} | {_cell(b['value'])} | {b['needed']:,g} | {met}{extra} |")
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def notes_for(settings: dict[str, Any], models: list[dict[str, Any]], data: dict[str, dict[str, Any]], prep: dict[str, Any], results: dict[str, dict[str, Any]], paired: bool) -> list[str]:
    notes = []
    if settings["limit"] or settings["threads"] != 2:
        notes.append(f"**Quick run** (--limit {settings['limit']}, --threads {settings['threads']}): not the issue's bar check, which is the full splits on 2 threads.")
    notes.append(f"Bars are checked on {BAR_CONFIG} with median chars/s; 'x {BASELINE}' divides each configuration's chars/s by the same model's {BASELINE} on the same inputs"
                 + (f"; a student's bar ratio divides by {BASELINE} on its **teacher's** weights." if paired else "."))
    notes.append("Characters: a text's length; a pair's len(a) + len(b). Every model sees the same inputs of a dataset; a pair head is timed on pair datasets only, a text head on text datasets only.")
    for m in models:
        hf, check = prep["models"][m["label"]].get("hf"), prep["models"][m["label"]].get("hf_check")
        if hf is None:
            continue
        same = f"max |{check['compared']} difference| {check['max_abs_diff']:.2g} on {check['texts']} texts" if check else "not checked"
        if hf["exact"]:
            notes.append(f"{m['label']}: the HF baselines run a `{hf['class']}` built from the folder's encoder and {hf['head']}; same weights ({same}). "
                         "They decode by **argmax without the CRF** (no transition constraints, no entity scores) and without our text normalisation, so their entities differ (see the agreement column).")
        else:
            notes.append(f"{m['label']}: **no exact HF conversion** of a {m['kind']} head: the HF baselines run a `{hf['class']}` on the folder's encoder weights ({same}) with {hf['head']}. "
                         "Same encoder compute, **outputs meaningless** (their agreement column says nothing about quality).")
        for config in HF_BASED:
            info = results.get(m["label"], {}).get(config, {}).get("info")
            if info:
                notes.append(f"{m['label']}, {config}: {info['call']}.")
        dtypes = results.get(m["label"], {}).get("torch-bf16", {}).get("info", {}).get("head_dtypes")
        if dtypes is not None:
            notes.append(f"{m['label']}, torch-bf16: the {m['kind']} head returned {', '.join(dtypes) or 'nothing'} under autocast (the pipeline decodes in float32).")
        for name, why in m["skipped"]:
            notes.append(f"{m['label']} not timed on {name}: {why}.")
    texts = {n: d for n, d in data.items() if d["input"] == "text" and any(n in m["datasets"] for m in models)}
    if texts:
        def over(k: int) -> str:
            return ", ".join(f"{n} {sum(len(t) > k for t in d['inputs'])}" for n, d in texts.items())

        hf_tasks = {prep["models"][m["label"]].get("hf", {}).get("hf_task") for m in models if m["input"] == "text"}
        ours = {m["output"] for m in models if m["input"] == "text"}
        mine = [("entities", "our entity heads split them into windows (manifest max_length) and keep every entity"), ("label", "our classifiers read the first window (manifest max_length)")]
        said = ["Long texts: " + ", ".join(what for output, what in mine if output in ours)]
        if "token-classification" in hf_tasks:
            said.append(f"HF token-classification truncates at the tokenizer's 512 tokens (texts over 510 characters: {over(510)})")
        if "text-classification" in hf_tasks:
            said.append("HF text-classification is called with truncation at our max_length (the same first window)")
        if any(m["input"] == "text" and "padded-256" in results.get(m["label"], {}) for m in models):
            said.append(f"padded-256 truncates at {PADDED_LENGTH} tokens (texts over {PADDED_LENGTH - 2} characters: {over(PADDED_LENGTH - 2)})")
        notes.append("; ".join(said) + "; characters are counted in full for every configuration.")
    for folder, o in prep.get("onnx", {}).items():
        timing = f"fp32 export {o['fp32_export_s']} s" + (f", int8 quantisation {o['int8_quantize_s']} s" if "int8_quantize_s" in o else "")
        notes.append(f"ONNX export of `{folder}` (one-off, not in load time): {timing}; graphs in `{o['graphs']}`.")
    notes.append(f"Latency: one call per short input (< {SHORT} characters, a pair's two sides together). Peak RSS and load time are per (model, configuration) process "
                 "(load = imports + model load, ready to call), shared by its datasets.")
    return notes


def plot(rows: list[dict[str, Any]], datasets: list[str], title: str, path: Path, bar_chars: float = BAR_CHARS) -> bool:
    """Horizontal bars of chars/s per (model, configuration) and dataset; log scale when the spread is large."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    ok = [r for r in rows if "error" not in r]
    groups = list(dict.fromkeys((r["model"], r["config"]) for r in ok))
    datasets = [d for d in datasets if any(r["dataset"] == d for r in ok)]
    if not groups:
        return False
    value = {(r["dataset"], r["model"], r["config"]): r["chars_per_s"] for r in ok}
    height = 0.8 / len(datasets)
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.3 * len(groups) * len(datasets)))
    for k, name in enumerate(datasets):
        ys = [i + k * height for i in range(len(groups))]
        vals = [value.get((name, *g), 0) for g in groups]
        ax.barh(ys, vals, height=height, label=name)
        for y, v in zip(ys, vals):
            if v:
                ax.text(v, y, f" {v:,.0f}", va="center", fontsize=7)
    ax.set_yticks([i + height * (len(datasets) - 1) / 2 for i in range(len(groups))], [f"{m} · {c}" for m, c in groups], fontsize=8)
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
