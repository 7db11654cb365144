"""Distillation variants side by side: held-out curves of `toolkit train` runs, and each run's model on a split.

    python benchmarks/distill_variants.py --run plain=runs/students/ner-general-small \\
        --run hidden=runs/students/ner-general-small-h ... --eval msra:test --threads 1 \\
        --note plain="session 8 recipe" --name distill_variants_ner_general_small

For each ``LABEL=RUN`` (a `toolkit train` output folder): the held-out score at every evaluation
(``RUN/train_log.jsonl``), the best one and its step (the model the run saved), the steps and
minutes it ran, and with ``--eval SPLIT`` the saved model's score on that split (PyTorch, the
model's first task). Model selection stays on the held-out texts: the ``--eval`` column is reported,
never used to choose. Writes ``benchmarks/results/NAME.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, run_info, write_results


def curve(run: Path) -> list[tuple[int, float]]:
    """``(step, held-out main score x 100)`` at each evaluation of the run's log, the first task's
    score (the mean over tasks where there are several)."""
    points = []
    for line in (run / "train_log.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "eval" in row:
            scores = [s["main"] for s in row["eval"]["scores"].values()]
            points.append((int(row["eval"]["step"]), round(100 * sum(scores) / len(scores), 2)))
    return points


def summarise(label: str, run: Path, note: str, split: str | None, threads: int | None) -> dict[str, Any]:
    points = curve(run)
    if not points:
        raise SystemExit(f"{run}/train_log.jsonl has no evaluation: is {run} a toolkit train output folder?")
    best_step, best = max(points, key=lambda p: (p[1], -p[0]))
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8")) if (run / "summary.json").is_file() else {}
    out = {"label": label, "run": str(run), "note": note, "curve": points, "best": best, "best_step": best_step,
           "steps": summary.get("steps", points[-1][0]), "minutes": summary.get("minutes"), "finished": bool(summary)}
    if split and (run / "model").is_dir():
        from toolkit.runtime.evaluation import evaluate

        result = evaluate(str(run / "model"), split, progress=False, threads=threads)
        out["eval"] = {"split": split, "main": round(100 * result["main"], 2), "metric": result.get("metric")}
    return out


def markdown(rows: list[dict[str, Any]], split: str | None, name: str = "distill_variants") -> str:
    head = "| variant | what differs | steps | minutes | best held-out (step) |" + (f" {split} |" if split else "")
    lines = ["# Distillation variants side by side", "",
             "Held-out scores during training (the model each run saved is its best held-out evaluation);"
             + (f" that model scored on {split} afterwards (reported, not used to choose)." if split else ""), "",
             head, "|---|---|---:|---:|---:|" + ("---:|" if split else "")]
    for r in rows:
        minutes = f"{r['minutes']:.0f}" if r.get("minutes") else "-"
        steps = f"{r['steps']:,}" + ("" if r["finished"] else " (stopped)")
        line = f"| {r['label']} | {r['note']} | {steps} | {minutes} | **{r['best']:.2f}** ({r['best_step']:,}) |"
        if split:
            line += f" {r['eval']['main']:.2f} |" if "eval" in r else " - |"
        lines.append(line)
    steps = sorted({s for r in rows for s, _ in r["curve"]})
    lines += ["", "Held-out score by step:", "", "| step | " + " | ".join(r["label"] for r in rows) + " |",
              "|---:|" + "---:|" * len(rows)]
    for s in steps:
        cells = [dict(r["curve"]).get(s) for r in rows]
        lines.append(f"| {s:,} | " + " | ".join(f"{c:.2f}" if c is not None else "" for c in cells) + " |")
    return "\n".join(lines) + f"\n\n![curves]({name}.png)\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        ax.plot(*zip(*r["curve"]), marker=".", label=r["label"])
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out micro-F1")
    low = min(v for r in rows for _, v in r["curve"][len(r["curve"]) // 3:])
    ax.set_ylim(low - 1, max(r["best"] for r in rows) + 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="append", required=True, metavar="LABEL=RUN", help="a toolkit train output folder")
    ap.add_argument("--note", action="append", default=[], metavar="LABEL=TEXT", help="what differs in that run")
    ap.add_argument("--eval", help="score each run's saved model on this split (e.g. msra:test)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--name", default="distill_variants")
    args = ap.parse_args(argv)
    notes = dict(n.split("=", 1) for n in args.note)
    rows = []
    for item in args.run:
        label, _, run = item.partition("=")
        if not run:
            ap.error(f"--run takes LABEL=RUN, got {item!r}")
        rows.append(summarise(label, Path(run), notes.get(label, ""), args.eval, args.threads))
    text = markdown(rows, args.eval, args.name)
    write_results(args.name, {"runs": rows, "run": run_info(sys.argv, args.threads)}, text)
    plot(rows, RESULTS / f"{args.name}.png")


if __name__ == "__main__":
    main()
