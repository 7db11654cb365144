"""Accuracy of every shipped model on its dev/test split, beside the published anchors.

    python benchmarks/accuracy.py [--limit N] [--data-root DIR]
    python benchmarks/accuracy.py --folder runs/zh-multitask/model --name zh_multitask_pilot \
        --eval ner_medical=cmeee:dev --eval 'sentiment=chnsenticorp:test!chnsenticorp:train'   # an unregistered folder

Writes ``benchmarks/results/accuracy.json`` and ``accuracy.md`` with the command, commit, date and
hardware. The splits come from each registered model's ``eval`` list in ``toolkit/registry.py``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results  # noqa: E402

logger = logging.getLogger("benchmarks.accuracy")
HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, help="only the first N examples of each split (a quick check)")
    ap.add_argument("--data-root")
    ap.add_argument("--models", nargs="*", help="only these registered names")
    ap.add_argument("--folder", help="score this model folder instead of the registered models")
    ap.add_argument("--eval", action="append", default=[], metavar="TASK=DATASET[!EXCLUDE]", help="with --folder: a task and the split to score it on")
    ap.add_argument("--name", default="accuracy", help="results file name")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from toolkit.evaluation import evaluate
    from toolkit.registry import MODELS

    anchors = yaml.safe_load((HERE / "anchors.yaml").read_text(encoding="utf-8"))
    if args.folder:
        plan = []
        for item in args.eval:
            task, _, ref = item.partition("=")
            dataset, _, exclude = ref.partition("!")
            plan.append((args.folder, {"task": task, "dataset": dataset, "exclude": exclude or None}))
    else:
        plan = [(name, spec) for name in (args.models or sorted(MODELS)) for spec in MODELS[name].get("eval", [])]
    rows = []
    for name, spec in plan:
        result = evaluate(name, spec["dataset"], task=spec.get("task"), data_root=args.data_root, limit=args.limit, progress=False, exclude=spec.get("exclude"))
        anchor = anchors.get(spec["dataset"], {}) if not spec.get("exclude") else {}
        rows.append({"model": name, "task": result["task"], "dataset": spec["dataset"] + (f" minus {spec['exclude']}" if spec.get("exclude") else ""), "metric": result["metric"], "value": round(100 * result["main"], 2), "n": result["n"], "details": result, "anchors": anchor.get("anchors", [])})
        logger.info("%s on %s: %s %.2f", name, spec["dataset"], result["metric"], 100 * result["main"])
    if not rows:
        logger.warning("no registered model has an eval list; nothing measured")
    lines = ["| model | task | split | metric | ours | published anchors |", "|---|---|---|---|---:|---|"]
    for r in rows:
        cited = "; ".join(f"{a['system']} {a['value']}" for a in r["anchors"]) or "-"
        lines.append(f"| {r['model']} | {r['task']} | {r['dataset']} | {r['metric']} | {r['value']:.2f} | {cited} |")
    title = f"# Accuracy of {args.folder}" if args.folder else "# Accuracy of the shipped models"
    write_results(args.name, {"run": run_info(sys.argv), "rows": rows}, title + "\n\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
