"""``toolkit data check`` on real corpora: what it finds and how long it takes (issue 17, part 2).

    OMP_NUM_THREADS=1 python benchmarks/data_check.py

Runs :func:`toolkit.data.check.check_data` on CMeEE (train + dev, NER, against ``ner-medical``'s
vocabulary), ChnSentiCorp (train + dev + test, against ``sentiment``) and CHIP-STS (train + dev,
pairs, against ``similarity-medical``), one process, one thread (``TOKENIZERS_PARALLELISM=false``).
Records per corpus the wall and CPU seconds, the seconds of each check, and every finding's
severity, count and first locations (``file:line``; no corpus text beyond a few mention strings).
Writes ``benchmarks/results/data_check.{json,md}``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results

CORPORA = {
    "cmeee": {"train": "cmeee:train", "dev": "cmeee:dev", "model": "ner-medical"},
    "chnsenticorp": {"train": "chnsenticorp:train", "dev": "chnsenticorp:dev", "test": "chnsenticorp:test", "model": "sentiment"},
    "chip-sts": {"train": "chip-sts:train", "dev": "chip-sts:dev", "model": "similarity-medical"},
}


def _place(source: str, root: Path) -> str:
    """``file:line`` relative to the data root (the report itself keeps the full path)."""
    try:
        return str(Path(source).relative_to(root))
    except ValueError:
        return source


def run_one(name: str, spec: dict, root: Path) -> dict:
    from toolkit.data.check import check_data

    wall, cpu = time.perf_counter(), time.process_time()
    result = check_data(spec["train"], spec.get("dev"), spec.get("test"), model=spec["model"], data_root=root)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    findings = []
    for f in result.findings:
        row = {"check": f.check, "severity": f.severity, "count": f.count, "title": f.title,
               "first": [_place(ex["source"], root) for ex in f.examples[:2]]}
        if f.check == "surface_form_types":  # short mention strings: "感染: dis 108, sym 99, ..."
            row["top"] = [f"{ex['text']}: {ex['detail']}" for ex in f.examples[:3]]
        if f.check in ("unknown_chars", "noise_terms"):
            row["top"] = [f"{ex['text'] if f.check == 'noise_terms' else ex['detail']}" for ex in f.examples[:3]]
        findings.append(row)
    return {"splits": {s: {"ref": spec[s], "examples": v["examples"], "labels": len(v["labels"]), "lengths": v["lengths"]}
                       for s, v in result.splits.items()},
            "model": spec["model"], "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
            "timings": result.timings, "counts": result.counts(), "unk": result.unk, "findings": findings}


def markdown(rows: dict) -> str:
    md = ["# `toolkit data check` on three corpora", "",
          "One process, one thread, on a 2-core machine shared with other jobs (wall time includes waiting for a "
          "core; CPU time is the work). Reading the files and loading the tokenizer are included.", "",
          "| corpus | examples | vocabulary of | wall s | CPU s | errors | warnings | notes |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        sizes = " + ".join(f"{s} {v['examples']:,}" for s, v in r["splits"].items())
        c = r["counts"]
        md.append(f"| {name} | {sizes} | `{r['model']}` | {r['wall_seconds']} | {r['cpu_seconds']} | {c['error']} | {c['warning']} | {c['info']} |")
    md += ["", "Seconds per step (wall): " + "; ".join(
        f"{name}: " + ", ".join(f"{k} {v:g}" for k, v in r["timings"].items()) for name, r in rows.items()), ""]
    for name, r in rows.items():
        md += [f"## {name}", "", "| severity | finding | count | first at |", "|---|---|---:|---|"]
        for f in r["findings"]:
            extra = f" ({'; '.join(f['top'])})" if f.get("top") else ""
            md.append(f"| {f['severity']} | {f['title']}{extra} | {f['count']:,} | {', '.join(f'`{p}`' for p in f['first'])} |")
        md.append("")
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpora", default=",".join(CORPORA), help=f"comma-separated, of {', '.join(CORPORA)}")
    ap.add_argument("--data-root", help="default: $TOOLKIT_DATA_ROOT or ../shared/corpora")
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(1)
    from toolkit.data.catalogue import resolve_data_root

    root = resolve_data_root(args.data_root)
    rows = {name: run_one(name, CORPORA[name], root) for name in args.corpora.split(",")}
    for name, r in rows.items():
        print(f"{name}: {r['wall_seconds']} s wall, {r['cpu_seconds']} s CPU, {r['counts']}", file=sys.stderr)
    write_results("data_check", {"run": run_info(sys.argv, threads=1), "corpora": rows}, markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
