"""``toolkit report RUN_DIR``: one self-contained HTML page that shows how a training run went.

It reads only the run folder's ``train_log.jsonl`` (and ``summary.json`` when present) written by
:mod:`toolkit.train.loop` with :mod:`toolkit.train.diagnostics`, and draws (matplotlib, PNGs embedded as
base64): loss per task, the learning-rate schedule per parameter group, a heatmap of the gradient
norm per layer and step (log colour scale), batch label entropy, dev-metric curves, the confidence
gap and ECE over evaluations, confidence histograms (first, middle, last evaluation; correct and
wrong stacked) and per-class P/R/F1 at the best evaluation. Above the figures, :func:`findings`
states in words what a person should look at.

Example:
    >>> out = write_report("runs/my-model.run")  # doctest: +SKIP
    >>> out["html"], out["findings"][:1]  # doctest: +SKIP
    ('runs/my-model.run/report.html', ['layer emb: gradient norm stays below 1% of the median layer's: not learning ...'])
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import json
import logging
import statistics
from pathlib import Path
from typing import Any

from ..errors import DataError, InputError

logger = logging.getLogger(__name__)

SPIKE = 5.0  # a step's gradient norm above SPIKE x the running median of the previous steps is a spike
QUIET = 0.01  # a layer whose median gradient norm is below QUIET x the median over layers is "not learning"
IMBALANCE = 0.2  # |precision - recall| above this is worth a look
ECE_HIGH = 0.1


def read_run(run_dir: str | Path) -> tuple[list[dict], list[dict], dict]:
    """``(step rows, evaluation records, summary)`` of a run folder; a line torn by a kill is skipped."""
    run = Path(run_dir)
    log = run / "train_log.jsonl"
    if not log.is_file():
        raise InputError(f"no train_log.jsonl in {run}: give a run folder (recipes: the recipe's out; `toolkit train ner|cls|pair`: OUT.run)")
    steps, evals = [], []
    for n, line in enumerate(log.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("%s:%d: skipped a torn line", log, n)
            continue
        (evals.append(row["eval"]) if "eval" in row else steps.append(row))
    if not steps:
        raise DataError(f"{log}:1: the log holds no training step yet; report a run after its first steps")
    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    return steps, evals, summary


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def findings(steps: list[dict], evals: list[dict]) -> list[str]:
    """Plain-language observations: layers not learning, gradient spikes, per-class P/R imbalance,
    calibration (ECE), a shrinking confidence gap, and a crowded middle of the confidence histogram.

    >>> rows = [{"step": i, "grad_norm": 1.0, "loss": {"ner": 1.0}, "grad_layers": {"emb": 1e-4, "L1": 1.0, "L2": 2.0}} for i in range(1, 9)]
    >>> findings(rows, [])[0]
    'layer emb: median gradient norm 0.0001 is below 1% of the median layer (1): not learning; a candidate for freezing (or check it is used)'
    """
    out = []
    layers: dict[str, list[float]] = {}
    for row in steps:
        for name, value in row.get("grad_layers", {}).items():
            layers.setdefault(name, []).append(value)
    medians = {name: _median(v) for name, v in layers.items()}
    overall = _median(list(medians.values()))
    for name, m in medians.items():
        if overall and m < QUIET * overall:
            out.append(f"layer {name}: median gradient norm {m:.2g} is below {QUIET:.0%} of the median layer ({overall:.2g}): not learning; "
                       "a candidate for freezing (or check it is used)")
    history: list[float] = []
    for row in steps:
        norm, recent = row["grad_norm"], history[-50:]
        if len(recent) >= 10 and norm > SPIKE * _median(recent):
            entropy = row.get("label_entropy")
            detail = f", batch label entropy {entropy}" if entropy else ""
            out.append(f"step {row['step']}: gradient spike {norm:.3g} = {norm / _median(recent):.1f}x the running median, "
                       f"batch of task {', '.join(row['loss'])}{detail}: look for conflicting or wrong labels in that batch")
        history.append(norm)
    if evals:
        best = max(evals, key=lambda e: e["mean"])
        for task, d in best.get("diagnostics", {}).items():
            for label, s in d["per_class"].items():
                gap = s["precision"] - s["recall"]
                if s["support"] and not s["f1"]:
                    out.append(f"{task} class {label} at the best evaluation (step {best['step']}): never right (F1 0, support {s['support']}): "
                               "too few examples, or labels the model cannot tell from another class")
                elif s["support"] and abs(gap) > IMBALANCE:
                    kind = "over-predicted (precision < recall)" if gap < 0 else "under-predicted (recall < precision)"
                    out.append(f"{task} class {label} at the best evaluation (step {best['step']}): P {s['precision']:.2f} / R {s['recall']:.2f}, "
                               f"{kind}, support {s['support']}")
        last = evals[-1]
        for task, d in last.get("diagnostics", {}).items():
            cal = d["calibration"]
            if cal["ece"] is not None and cal["ece"] > ECE_HIGH:
                out.append(f"{task}: expected calibration error {cal['ece']:.3f} at step {last['step']} (> {ECE_HIGH}): confidences do not match accuracy")
            if cal["n"]:
                middle = sum(cal["hist"][3:7]) / cal["n"]
                if middle > 0.2:
                    out.append(f"{task}: {middle:.0%} of dev confidences lie in [0.3, 0.7) at step {last['step']}: the histogram should be bimodal with a narrow middle")
        gaps = [e.get("confidence_gap") for e in evals if e.get("confidence_gap") is not None]
        if len(gaps) >= 3 and gaps[-1] < gaps[-2] < gaps[-3]:
            out.append(f"the confidence gap (correct minus wrong) shrank over the last 3 evaluations ({gaps[-3]:.3f} -> {gaps[-1]:.3f}): "
                       "the model grows as sure of its errors as of its hits; `--early-stopping trend` stops on this")
    return out


def _figures(steps: list[dict], evals: list[dict]) -> list[tuple[str, str]]:
    """``(title, base64 PNG)`` of each figure; figures without data are left out."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm
    except ImportError as err:
        raise ImportError('toolkit report needs matplotlib: pip install -e ".[report]"') from err
    import numpy as np

    figs = []

    def add(title: str, fig) -> None:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        figs.append((title, base64.b64encode(buf.getvalue()).decode("ascii")))

    x = [r["step"] for r in steps]
    tasks = sorted({t for r in steps for t in r["loss"]})
    fig, ax = plt.subplots(figsize=(10, 3.2))
    for task in tasks:
        pts = [(r["step"], r["loss"][task]) for r in steps if task in r["loss"]]
        ax.plot(*zip(*pts), lw=0.6, alpha=0.35)
        k = max(1, len(pts) // 30)
        smooth = np.convolve([p[1] for p in pts], np.ones(k) / k, mode="valid")
        ax.plot([p[0] for p in pts][k - 1:], smooth, lw=1.8, label=task if k == 1 else f"{task} (running mean of {k})", color=ax.lines[-1].get_color())
    ax.set(xlabel="step", ylabel="loss", title="training loss per task", yscale="log")
    ax.legend(fontsize=8)
    add("Loss per task", fig)

    diag = [r for r in steps if "grad_layers" in r]
    fig, ax = plt.subplots(figsize=(10, 3.2))
    if diag and diag[0].get("lr_groups"):
        for group in diag[0]["lr_groups"]:
            ax.plot([r["step"] for r in diag], [r["lr_groups"].get(group, np.nan) for r in diag], label=group)
        ax.legend(fontsize=7, ncol=2)
    else:
        ax.plot(x, [r["lr"] for r in steps])
    ax.set(xlabel="step", ylabel="learning rate", title="learning-rate schedule per parameter group", yscale="log")
    add("Learning rate", fig)

    if diag:
        names = list(dict.fromkeys(n for r in diag for n in r["grad_layers"]))
        grid = np.array([[r["grad_layers"].get(n, np.nan) for r in diag] for n in names], dtype=float)
        grid[grid <= 0] = np.nan
        fig, ax = plt.subplots(figsize=(10, 0.9 + 0.32 * len(names)))
        finite = grid[np.isfinite(grid)]
        mesh = ax.pcolormesh([r["step"] for r in diag] + [diag[-1]["step"] + 1], np.arange(len(names) + 1), grid, shading="flat", cmap="viridis",
                             norm=LogNorm(vmin=finite.min(), vmax=finite.max()) if finite.size else None)
        ax.set_yticks(np.arange(len(names)) + 0.5, names, fontsize=8)
        ax.set(xlabel="step", title="gradient L2 norm per layer (log colour; before clipping; blank: no gradient that step)")
        fig.colorbar(mesh, ax=ax, pad=0.01)
        add("Gradient norm per layer", fig)
        entropy_tasks = sorted({t for r in diag for t in r.get("label_entropy", {})})
        if entropy_tasks:
            fig, ax = plt.subplots(figsize=(10, 2.6))
            for task in entropy_tasks:
                pts = [(r["step"], r["label_entropy"][task]) for r in diag if task in r.get("label_entropy", {})]
                ax.plot(*zip(*pts), "o", ms=4, alpha=0.6, label=task)
            ax.set(xlabel="step", ylabel="bits", title="label entropy of the logged batches")
            ax.legend(fontsize=8)
            add("Batch label entropy", fig)

    if evals:
        ex = [e["step"] for e in evals]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
        for task in evals[-1]["scores"]:
            axes[0].plot(ex, [e["scores"].get(task, {}).get("main", np.nan) for e in evals], marker="o", ms=3, label=task)
        axes[0].plot(ex, [e["mean"] for e in evals], "k--", lw=1, label="mean")
        axes[0].set(xlabel="step", ylabel="dev score", title="dev metric")
        axes[0].legend(fontsize=8)
        for task in evals[-1].get("diagnostics", {}):
            cal = [e.get("diagnostics", {}).get(task, {}).get("calibration", {}) for e in evals]
            line, = axes[1].plot(ex, [c.get("gap") if c.get("gap") is not None else np.nan for c in cal], marker="o", ms=3, label=f"{task} gap")
            axes[1].plot(ex, [c.get("ece") if c.get("ece") is not None else np.nan for c in cal], ls=":", marker="s", ms=3, color=line.get_color(), label=f"{task} ECE")
        axes[1].set(xlabel="step", title="confidence gap (correct - wrong) and ECE")
        axes[1].legend(fontsize=7)
        add("Dev metric, confidence gap and calibration", fig)

        picks = [evals[i] for i in sorted({0, len(evals) // 2, len(evals) - 1})]
        diag_tasks = list(evals[-1].get("diagnostics", {}))
        if diag_tasks:
            fig, axes = plt.subplots(len(diag_tasks), len(picks), figsize=(3.3 * len(picks), 2.4 * len(diag_tasks)), squeeze=False)
            for i, task in enumerate(diag_tasks):
                for j, e in enumerate(picks):
                    cal = e.get("diagnostics", {}).get(task, {}).get("calibration")
                    ax = axes[i][j]
                    if cal:
                        centres = (np.arange(len(cal["hist"])) + 0.5) / len(cal["hist"])
                        ax.bar(centres, cal["hist_correct"], width=0.09, color="tab:green", label="correct")
                        ax.bar(centres, cal["hist_wrong"], width=0.09, bottom=cal["hist_correct"], color="tab:red", label="wrong")
                    ax.set_title(f"{task}, step {e['step']}", fontsize=9)
                    ax.set_xlim(0, 1)
                    ax.tick_params(labelsize=7)
            axes[0][0].legend(fontsize=7)
            add("Dev confidence histograms (first, middle, last evaluation)", fig)

        best = max(evals, key=lambda e: e["mean"])
        per_class = {t: d["per_class"] for t, d in best.get("diagnostics", {}).items() if d["per_class"]}
        if per_class:
            fig, axes = plt.subplots(len(per_class), 1, figsize=(8, 2.6 * len(per_class)), squeeze=False)
            for ax, (task, classes) in zip(axes[:, 0], per_class.items()):
                labels = list(classes)
                pos = np.arange(len(labels))
                for k, metric in enumerate(("precision", "recall", "f1")):
                    ax.bar(pos + (k - 1) * 0.27, [classes[c][metric] for c in labels], width=0.27, label=metric)
                ax.set_xticks(pos, [f"{c}\n({classes[c]['support']})" for c in labels], fontsize=7)
                ax.set(ylim=(0, 1.05), title=f"{task}: per-class P/R/F1 at the best evaluation (step {best['step']}); (support)")
                ax.legend(fontsize=7, ncol=3)
            add("Per-class precision, recall, F1", fig)
    return figs


def write_report(run_dir: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Write the HTML report of a run folder to ``out`` (default ``RUN_DIR/report.html``); returns
    ``{"html", "findings", "figures"}`` (``figures``: the figure titles in page order)."""
    steps, evals, summary = read_run(run_dir)
    notes = findings(steps, evals)
    figs = _figures(steps, evals)
    out = Path(out) if out else Path(run_dir) / "report.html"
    e = html.escape
    head = [f"steps logged: {len(steps)}", f"evaluations: {len(evals)}"]
    if summary:
        head += [f"stopped by: {summary.get('stopped_by')}", f"best mean dev: {summary.get('best_mean_dev')}", f"minutes: {summary.get('minutes')}"]
    if evals:
        best = max(evals, key=lambda x: x["mean"])
        scores = ", ".join(f"{t} {s['main']:.4f}" for t, s in best["scores"].items())
        head.append(f"best evaluation: step {best['step']} ({scores})")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>training report: {e(str(summary.get('name', Path(run_dir).name)))}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}"
        "img{max-width:100%;border:1px solid #ddd}li{margin:.3em 0}h2{border-bottom:1px solid #ccc;margin-top:1.5em}</style></head><body>",
        f"<h1>Training report: {e(str(summary.get('name', Path(run_dir).name)))}</h1>",
        f"<p>{e(str(Path(run_dir).resolve()))}</p><ul>" + "".join(f"<li>{e(h)}</li>" for h in head) + "</ul>",
        "<h2 id='findings'>Findings</h2>",
        ("<ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>") if notes else "<p>Nothing stands out: no quiet layer, no gradient spike, "
        "no class with a precision/recall imbalance, calibration within bounds.</p>",
    ]
    if not any("grad_layers" in r for r in steps):
        parts.append("<p>This log has no per-layer diagnostics (diag_every: 0, or a run from before they existed).</p>")
    for title, png in figs:
        slug = title.lower().split(",")[0].replace(" ", "-")
        parts.append(f"<h2 id='{e(slug)}'>{e(title)}</h2><img alt='{e(title)}' src='data:image/png;base64,{png}'>")
    parts.append("</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    logger.info("wrote %s (%d figures, %d findings)", out, len(figs), len(notes))
    return {"html": str(out), "findings": notes, "figures": [t for t, _ in figs]}


def _cmd_report(args: argparse.Namespace) -> int:
    result = write_report(args.run_dir, args.out)
    for note in result["findings"]:
        print(f"- {note}")
    print(f"report: {result['html']}")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report RUN_DIR [--out FILE.html]`` to the ``toolkit`` command's ``subparsers``.

    Example:
        >>> parser = argparse.ArgumentParser(prog="toolkit")
        >>> register_cli(parser.add_subparsers(dest="command", required=True))
        >>> parser.parse_args(["report", "runs/x", "--out", "r.html"]).out
        'r.html'
    """
    p = subparsers.add_parser("report", help="an HTML report of a training run: gradient norms per layer, loss, LR, dev metrics, confidence, findings")
    p.add_argument("run_dir", help="the run folder (a recipe's out; `toolkit train ner|cls|pair`: OUT.run)")
    p.add_argument("--out", help="the HTML file to write (default RUN_DIR/report.html)")
    p.set_defaults(func=_cmd_report)
