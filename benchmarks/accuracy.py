"""Accuracy of every shipped model on its dev/test split, beside the published anchors, on any runtime.

    python benchmarks/accuracy.py [--limit N] [--data-root DIR]
    python benchmarks/accuracy.py --runtime onnx --quantize int8 --name accuracy_onnx_int8
    python benchmarks/accuracy.py --runtimes torch,onnx,onnx-int8 --name accuracy_runtimes [--check]
    python benchmarks/accuracy.py --folder runs/zh-multitask/model --name zh_multitask_pilot \
        --eval ner_medical=cmeee:dev --eval 'sentiment=chnsenticorp:test!chnsenticorp:train'   # an unregistered folder
    python benchmarks/accuracy.py --merge results/accuracy_ner_general.json results/accuracy_sentiment.json ...

``--merge`` measures nothing: it assembles the table from earlier runs' JSON files (each scored on
the same runtimes), one row per (model, split), a later file's row replacing an earlier one, keeps
only registered names, and lists for every row the run it came from (command, commit, date, CPU).
That is how models trained at different times share one table without re-scoring all of them.

Writes ``benchmarks/results/NAME.json`` and ``NAME.md`` (default ``accuracy``) with the command,
commit, date and hardware. The splits of each registered model name come from
``benchmarks/splits.py``.

With several ``--runtimes`` each split is scored once per runtime on the same examples
(:func:`toolkit.runtime.evaluation.compare_runtimes`): the table has a column per runtime, each runtime's
difference from the first (points), the share of examples whose prediction (entity set / label) is
identical to the first runtime's, and for int8 runtimes whether they lose at most
``--int8-tolerance`` points (default 0.3). ``--check`` exits 1 when fp32 ONNX disagrees with
PyTorch on any example or an int8 runtime loses more than the tolerance.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ensure_exports, run_info, write_results
from splits import SPLITS

logger = logging.getLogger("benchmarks.accuracy")
HERE = Path(__file__).resolve().parent


def plan_of(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """``[(model name or folder, {"task", "dataset", "exclude"})]`` to score."""
    from toolkit.registry import MODELS

    if args.folder:
        plan = []
        for item in args.eval:
            task, _, ref = item.partition("=")
            dataset, _, exclude = ref.partition("!")
            plan.append((args.folder, {"task": task, "dataset": dataset, "exclude": exclude or None}))
        return plan
    unknown = [m for m in args.models or [] if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model {unknown[0]!r}; registered: {', '.join(sorted(MODELS))}")
    return [(name, spec) for name in (args.models or sorted(MODELS)) for spec in SPLITS.get(name, [])]


def row_of(name: str, spec: dict[str, Any], out: dict[str, Any], anchors: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """One table row from :func:`compare_runtimes`' output (percent values, deltas vs the first runtime)."""
    ref = out["reference"]
    values = {r: round(100 * res["main"], 2) for r, res in out["runtimes"].items()}
    exact = {r: 100 * res["main"] for r, res in out["runtimes"].items()}
    anchor = anchors.get(spec["dataset"], {}) if not spec.get("exclude") else {}
    first = out["runtimes"][ref]
    return {
        "model": name,
        "task": out["task"],
        "dataset": spec["dataset"] + (f" minus {spec['exclude']}" if spec.get("exclude") else ""),
        "metric": first["metric"],
        "n": out["n"],
        "runtime": ref,
        "value": values[ref],
        "values": values,
        "delta": {r: round(exact[r] - exact[ref], 2) for r in values if r != ref},
        "agreement": {r: a for r, a in out["agreement"].items() if r != ref},
        "disagreements": {r: d for r, d in out["disagreements"].items() if r != ref},
        "int8_within": {r: exact[ref] - exact[r] <= tolerance + 1e-9 for r in values if r != ref and r.endswith("-int8")},
        "seconds": {r: res["seconds"] for r, res in out["runtimes"].items()},
        "details": out["runtimes"],
        "anchors": anchor.get("anchors", []),
    }


def table(rows: list[dict[str, Any]], specs: list[str], tolerance: float) -> list[str]:
    ref, others = specs[0], specs[1:]
    head = ["model", "task", "split", "metric", "n"] + [f"ours ({s})" for s in specs]
    for s in others:
        head += [f"{s} - {ref}", f"same as {ref}: {s}"]
    if any(s.endswith("-int8") for s in others):
        head.append(f"int8 loss <= {tolerance}")
    head.append("published anchors")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if h.startswith(("ours", "n")) or " - " in h else "---" for h in head) + "|"]
    for r in rows:
        cells = [r["model"], r["task"], r["dataset"], r["metric"], str(r["n"])] + [f"{r['values'][s]:.2f}" for s in specs]
        for s in others:
            cells += [f"{r['delta'][s]:+.2f}", f"{100 * r['agreement'][s]:.2f}% ({r['disagreements'][s]} differ)"]
        if any(s.endswith("-int8") for s in others):
            cells.append(", ".join("yes" if ok else "NO" for ok in r["int8_within"].values()))
        cells.append("; ".join(f"{a['system']} {a['value']}" for a in r["anchors"]) or "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def verdicts(rows: list[dict[str, Any]], specs: list[str], tolerance: float) -> tuple[list[str], bool]:
    """Summary lines for the claims (fp32 identical to the first runtime, int8 within tolerance) and whether all hold."""
    lines, ok = [], True
    ref = specs[0]
    for s in specs[1:]:
        if s.endswith("-int8"):
            bad = [r for r in rows if not r["int8_within"][s]]
            worst = max(rows, key=lambda r: -r["delta"][s]) if rows else None
            loss = f"; largest loss {-worst['delta'][s]:.2f} points ({worst['model']}, {worst['dataset']})" if worst else ""
            lines.append(f"- {s}: within {tolerance} points of {ref} on {len(rows) - len(bad)}/{len(rows)} splits{loss}.")
        else:
            bad = [r for r in rows if r["disagreements"][s]]
            total = sum(r["disagreements"][s] for r in rows)
            lines.append(f"- {s}: predictions identical to {ref} on {len(rows) - len(bad)}/{len(rows)} splits ({total} examples differ in all).")
        ok = ok and not bad
    return lines, ok


def merge(files: list[str], name: str, tolerance: float) -> int:
    """Write ``name``.md/json from the rows of earlier results ``files`` (see the module docstring)."""
    import json

    from toolkit.registry import MODELS

    rows: dict[tuple[str, str], dict[str, Any]] = {}
    runs, specs = [], None
    for i, path in enumerate(files):
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if specs is None:
            specs = data["runtimes"]
        elif data["runtimes"] != specs:
            raise SystemExit(f"{path} was scored on {data['runtimes']}, the others on {specs}: merge runs of the same runtimes")
        runs.append({"file": Path(path).name, **data["run"]})
        for row in data["rows"]:
            if row["model"] in MODELS:
                rows[(row["model"], row["dataset"])] = {**row, "source": i + 1}
    ordered = sorted(rows.values(), key=lambda r: (r["model"], r["dataset"]))
    lines = table(ordered, specs, tolerance)
    lines[0] = lines[0][:-1] + "| run |"
    lines[1] = lines[1] + "---|"
    for k, r in enumerate(ordered):
        lines[k + 2] += f" {r['source']} |"
    summary, ok = verdicts(ordered, specs, tolerance)
    sources = [f"{i}. `{r['file']}`: `{r.get('command', '')}`, commit {str(r.get('commit', ''))[:12]}, {r.get('date', '')}, "
               f"{r.get('hardware', '')}" for i, r in enumerate(runs, 1)]
    note = (f"Each split is scored on every runtime with the same examples; `same as {specs[0]}`: examples whose predicted "
            f"entity set or label is identical to {specs[0]}'s. Rows come from the runs listed at the end (column `run`).")
    title = "# Accuracy of the shipped models" + (f" on {', '.join(specs)}" if specs != ["torch"] else "")
    markdown = "\n\n".join([title, note, "\n".join(lines), "\n".join(summary), "Runs merged:\n" + "\n".join(sources)])
    data = {"run": run_info(sys.argv), "runtimes": specs, "int8_tolerance": tolerance, "claims_hold": ok, "merged_from": runs, "rows": ordered}
    write_results(name, data, markdown)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, help="only the first N examples of each split (a quick check)")
    ap.add_argument("--data-root")
    ap.add_argument("--models", nargs="*", help="only these registered names")
    ap.add_argument("--folder", help="score this model folder instead of the registered models")
    ap.add_argument("--eval", action="append", default=[], metavar="TASK=DATASET[!EXCLUDE]", help="with --folder: a task and the split to score it on")
    ap.add_argument("--runtime", choices=["torch", "onnx"], default="torch", help="one runtime (default torch)")
    ap.add_argument("--quantize", choices=["int8"], help="with --runtime onnx: the int8 graph")
    ap.add_argument("--runtimes", help="several runtimes, comma-separated, the first is the reference: torch,onnx,onnx-int8")
    ap.add_argument("--int8-tolerance", type=float, default=0.3, help="points an int8 runtime may lose against the first runtime (default 0.3)")
    ap.add_argument("--check", action="store_true", help="exit 1 if fp32 ONNX differs from the reference on any example or int8 loses more than the tolerance")
    ap.add_argument("--batch-size", type=int, help="windows per encoder pass (default: the pipeline's, what load() users get)")
    ap.add_argument("--name", default="accuracy", help="results file name")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="assemble the table from these earlier results files (no measuring)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.merge:
        return merge(args.merge, args.name, args.int8_tolerance)

    from toolkit.runtime.evaluation import RUNTIMES, compare_runtimes, runtime_spec

    if args.runtimes:
        if args.runtime != "torch" or args.quantize:
            ap.error("give either --runtimes or --runtime/--quantize")
        specs = list(dict.fromkeys(s.strip() for s in args.runtimes.split(",") if s.strip()))
        unknown = [s for s in specs if s not in RUNTIMES]
        if unknown or not specs:
            ap.error(f"unknown runtime {unknown[0] if unknown else args.runtimes!r}; available: {', '.join(RUNTIMES)}")
    else:
        try:
            specs = [runtime_spec(args.runtime, args.quantize)]
        except ValueError as err:
            ap.error(str(err))

    anchors = yaml.safe_load((HERE / "anchors.yaml").read_text(encoding="utf-8"))
    rows = []
    for name, spec in plan_of(args):
        ensure_exports(name, specs)
        out = compare_runtimes(name, spec["dataset"], task=spec.get("task"), runtimes=specs, data_root=args.data_root, limit=args.limit, batch_size=args.batch_size, progress=False, exclude=spec.get("exclude"))
        rows.append(row_of(name, spec, out, anchors, args.int8_tolerance))
        logger.info("%s on %s: %s", name, rows[-1]["dataset"], ", ".join(f"{s} {v:.2f}" for s, v in rows[-1]["values"].items()))
    if not rows:
        logger.warning("no registered model has splits in benchmarks/splits.py; nothing measured")
    lines = table(rows, specs, args.int8_tolerance)
    summary, ok = verdicts(rows, specs, args.int8_tolerance)
    what = f"# Accuracy of {args.folder}" if args.folder else "# Accuracy of the shipped models"
    title = what + (f" on {', '.join(specs)}" if specs != ["torch"] else "")
    note = [f"Limited to the first {args.limit} examples of each split: a quick check, not the benchmark."] if args.limit else []
    if len(specs) > 1:
        note.append(f"Each split is scored on every runtime with the same examples; `same as {specs[0]}`: examples whose predicted entity set or label is identical to {specs[0]}'s.")
    markdown = "\n\n".join([title, *note, "\n".join(lines)] + (["\n".join(summary)] if summary else []))
    data = {"run": run_info(sys.argv), "runtimes": specs, "limit": args.limit, "int8_tolerance": args.int8_tolerance, "claims_hold": ok, "rows": rows}
    write_results(args.name, data, markdown)
    if args.check and not ok:
        logger.error("a runtime claim does not hold: %s", " ".join(summary))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
