"""`toolkit tune` on a real small problem: Resume NER, 2-layer encoder, a fixed short budget per trial.

    OMP_NUM_THREADS=1 python benchmarks/tune_demo.py [--trials 10] [--minutes 20] [--threads 1]

Searches recipes/tune/resume-ner-space.yaml on recipes/tune/resume-ner.yaml (trial 0 = the recipe's
own values, i.e. the toolkit defaults), selecting on resume:dev. Then scores the baseline trial's
model and the best trial's model on resume:test, which the search never saw: the search picks the
trial with the best dev score, so its dev score is optimistic and only the test score compares
fairly. Writes benchmarks/results/tune_demo.{json,md,png}; rerunning resumes the study in OUT/tune.db.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, run_info, write_results

ROOT = Path(__file__).resolve().parent.parent
RECIPE, SPACE = ROOT / "recipes/tune/resume-ner.yaml", ROOT / "recipes/tune/resume-ner-space.yaml"
HELD_OUT = "resume:test"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/tune-demo")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from toolkit.runtime.evaluation import evaluate
    from toolkit.train.tune import tune

    def show(row: dict) -> None:
        print(f"trial {row['number']}: {row['state']} {row['value']} ({row['steps']} steps, {row['duration_s']} s) {row['params']}", flush=True)

    result = tune(RECIPE, SPACE, trials=args.trials, minutes=args.minutes, out=ROOT / args.out, threads=args.threads,
                  keep_models="all", on_trial=show)
    best, base = result["best"], result["baseline"]
    if best is None or base is None:
        raise SystemExit("no completed baseline and best trial: give more --minutes (or rerun to resume)")
    test = {}
    for key, row in (("baseline", base), ("best", best)):
        scores = evaluate(row["model"], HELD_OUT, progress=False, threads=args.threads)
        test[key] = {"micro_f1": round(scores["main"], 4), "n": scores.get("n")}
    rows = json.loads((ROOT / args.out / "trials.json").read_text(encoding="utf-8"))["rows"]
    data = {"run": run_info(sys.argv, threads=args.threads), "recipe": str(RECIPE.relative_to(ROOT)), "space": str(SPACE.relative_to(ROOT)),
            "selected_on": "resume:dev (463 sentences)", "held_out": f"{HELD_OUT} (never used by the search)",
            "states": result["states"], "baseline": {"trial": base["number"], "dev": base["value"], "test": test["baseline"], "values": base["values"]},
            "best": {"trial": best["number"], "dev": best["value"], "test": test["best"], "values": best["values"]},
            "trials": [{k: r[k] for k in ("number", "state", "value", "duration_s", "steps", "stopped_by", "truncated", "params")} for r in rows]}
    if result["plot"]:
        shutil.copyfile(result["plot"], RESULTS / "tune_demo.png")
    write_results("tune_demo", data, markdown(data))
    for row in rows:  # the trials' models served the test scores; the study and logs stay in OUT
        if row["model"]:
            shutil.rmtree(row["model"], ignore_errors=True)
    print(markdown(data))
    return 0


def markdown(data: dict) -> str:
    base, best = data["baseline"], data["best"]
    names = list(best["values"])
    lines = ["# `toolkit tune` demo: Resume NER, 2-layer encoder, 200 steps per trial", "",
             f"Recipe `{data['recipe']}`, space `{data['space']}`; model and search selected on {data['selected_on']}; "
             f"held out: {data['held_out']}. Trial 0 runs the recipe's own values (the toolkit defaults). Trial states: {data['states']}.", "",
             "| | trial | dev micro-F1 (selected on) | test micro-F1 (held out) | " + " | ".join(names) + " |",
             "|---|---:|---:|---:|" + "---|" * len(names)]
    for label, row in (("defaults", base), ("best found", best)):
        lines.append(f"| {label} | {row['trial']} | {row['dev']:.4f} | {row['test']['micro_f1']:.4f} | " + " | ".join(_fmt(row["values"].get(n)) for n in names) + " |")
    lines += ["", "The best trial was chosen for its dev score, so its dev gain is optimistic; the test column is the fair comparison.", "",
              "All trials (pruned trials show their last reported dev score):", "",
              "| trial | state | dev | steps | seconds | " + " | ".join(names) + " |", "|---:|---|---:|---:|---:|" + "---|" * len(names)]
    for r in data["trials"]:
        value = "-" if r["value"] is None else f"{r['value']:.4f}"
        lines.append(f"| {r['number']} | {r['state']}{' (truncated)' if r['truncated'] else ''} | {value} | {r['steps']} | {r['duration_s']} | "
                     + " | ".join(_fmt(r["params"].get(n)) for n in names) + " |")
    lines += ["", "![trials](tune_demo.png)"]
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "(default)"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())
