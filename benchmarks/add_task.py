"""Adding a task to a shipped multi-task model: do the other heads keep their scores?

    python benchmarks/add_task.py [--start pretrained/zh-multitask] [--limit 1000] [--minutes 8]

Fine-tunes a new ``ner_resume`` head (Resume NER, BMES files, a dataset the shipped model never saw)
onto the shipped joint model twice, as a user would with ``toolkit train ner --from MODEL``:

* ``frozen``: ``--freeze-encoder`` (only the new head trains). The other heads must not move at all:
  the table reports their scores and the fraction of examples whose predictions are identical.
* ``unfrozen``: the default (the shared encoder trains too, at the fine-tuning default learning rate).
  The other heads were not trained on the new data; the table shows how much they lose.

Every task the start model has is scored before and after on the first ``--limit`` examples of its
evaluation split (its registered names' splits in ``benchmarks/splits.py``); the new head on ``resume:test``. Writes
``benchmarks/results/add_task.{json,md}``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results
from splits import eval_splits as registered

logger = logging.getLogger("benchmarks.add_task")
ROOT = Path(__file__).resolve().parent.parent
NEW_TASK = "ner_resume"


def eval_splits(folder: Path) -> dict[str, dict]:
    """Task -> its evaluation split (the first ``benchmarks/splits.py`` entry of a name selecting it)."""
    splits: dict[str, dict] = {}
    for ev in registered(folder):
        splits.setdefault(ev["task"], {"dataset": ev["dataset"]})
    return splits


def predictions(folder: Path, task: str, dataset: str, limit: int) -> tuple[dict, list]:
    """Scores and predictions of one head, so two models can be compared example by example."""
    import toolkit
    from toolkit.runtime.evaluation import evaluate_pipeline, load_split

    examples, _ = load_split(dataset, limit=limit)
    result = evaluate_pipeline(toolkit.load(str(folder), tasks=task, batch_size=64), task, examples, keep_predictions=True)
    return result, result.pop("predictions")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", default="pretrained/zh-multitask", help="the multi-task model folder to extend")
    ap.add_argument("--limit", type=int, default=1000, help="examples per evaluation split")
    ap.add_argument("--minutes", type=float, default=8.0, help="training time cap per variant")
    ap.add_argument("--out", default="runs/add-task")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from toolkit.data.catalogue import resolve_data_root
    from toolkit.runtime.evaluation import agreement
    from toolkit.train.finetune import finetune

    start = (ROOT / args.start).resolve()
    splits = eval_splits(start)
    if not splits:
        raise SystemExit(f"{start} is not a registered model folder with evaluation splits in benchmarks/splits.py")
    resume = resolve_data_root() / "ner" / "resume"
    before = {t: predictions(start, t, s["dataset"], args.limit) for t, s in splits.items()}
    variants = {}
    for variant, frozen in (("frozen", True), ("unfrozen", False)):
        out = ROOT / args.out / variant
        t0 = time.monotonic()
        summary = finetune("ner", resume / "train.char.bmes", resume / "dev.char.bmes", start=str(start), out=out, task=NEW_TASK,
                           freeze_encoder=frozen, max_minutes=args.minutes, progress=False)
        minutes = round((time.monotonic() - t0) / 60, 1)
        after = {t: predictions(out, t, s["dataset"], args.limit) for t, s in splits.items()}
        new = predictions(out, NEW_TASK, "resume:test", args.limit)[0]
        variants[variant] = {
            "minutes": minutes,
            "steps": summary.get("steps"),
            "new_task": {"dataset": "resume:test", "metric": new["metric"], "value": round(100 * new["main"], 2)},
            "tasks": {t: {"value": round(100 * after[t][0]["main"], 2),
                          "identical_predictions": agreement(after[t][1], before[t][1])}
                      for t in splits},
        }
    rows = [{"task": t, "dataset": s["dataset"], "metric": before[t][0]["metric"], "n": before[t][0]["n"], "before": round(100 * before[t][0]["main"], 2),
             **{v: variants[v]["tasks"][t] for v in variants}} for t, s in splits.items()]
    md = [f"# Adding `{NEW_TASK}` (Resume NER) to `{args.start}`", "",
          (f"`toolkit train ner --from {args.start} --task {NEW_TASK}` on Resume's BMES files, capped at {args.minutes:g} minutes per variant; "
           f"the existing heads scored on the first {args.limit} examples of their splits."), "",
          "| task | split | metric | before | frozen encoder | identical predictions | encoder trained | identical predictions |",
          "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        f, u = r["frozen"], r["unfrozen"]
        md.append(f"| {r['task']} | {r['dataset']} | {r['metric']} | {r['before']:.2f} | {f['value']:.2f} | {100 * f['identical_predictions']:.1f}% | "
                  f"{u['value']:.2f} ({u['value'] - r['before']:+.2f}) | {100 * u['identical_predictions']:.1f}% |")
    md += ["", "| variant | new head on resume:test (F1) | training minutes | steps |", "|---|---:|---:|---:|"]
    for v, d in variants.items():
        md.append(f"| {v} | {d['new_task']['value']:.2f} | {d['minutes']} | {d['steps']} |")
    write_results("add_task", {"run": run_info(sys.argv), "start": args.start, "limit": args.limit, "rows": rows, "variants": variants}, "\n".join(md))
    logger.info("\n%s", "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
