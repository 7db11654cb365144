"""Supervised evidence for the base encoder: the same short CMeEE NER budget from the char-level e5
base and from random weights (issue 3).

    python benchmarks/base_encoder_ner.py            # trains both recipes side by side (1 thread each), ~25 min
    python benchmarks/base_encoder_ner.py --collect  # only gather runs/base-check/*/summary.json

Writes ``benchmarks/results/base_encoder_ner.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {init: ROOT / "recipes" / "base-check" / f"cmeee-ner-{init}.yaml" for init in ("pretrained", "random")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collect", action="store_true", help="do not train; read the finished runs")
    args = ap.parse_args(argv)
    from toolkit.train.recipe import Recipe

    recipes = {init: Recipe.from_yaml(path) for init, path in RECIPES.items()}
    if not args.collect:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        procs = [subprocess.Popen([sys.executable, "-m", "toolkit.cli", "train", str(path), "--no-progress"], cwd=ROOT, env=env) for path in RECIPES.values()]
        if any(p.wait() for p in procs):
            raise SystemExit("a training run failed; see its output above")
    from toolkit.runtime.evaluation import evaluate

    rows = {}
    for init, recipe in recipes.items():
        summary = json.loads((ROOT / recipe.out / "summary.json").read_text(encoding="utf-8"))
        scores = summary["history"][-1]["scores"]["ner_medical"]
        full_path = ROOT / recipe.out / "full-dev.json"
        if not full_path.is_file():  # the whole dev set, scored on the saved model
            full = evaluate(str(ROOT / summary["model"]), "cmeee:dev", progress=False)
            full_path.write_text(json.dumps(full, ensure_ascii=False, indent=2), encoding="utf-8")
        full = json.loads(full_path.read_text(encoding="utf-8"))
        rows[init] = {"steps": summary["steps"], "minutes": summary["minutes"], "dev_first_1000": scores["micro"], "dev_all": full["micro"], "dev_all_n": full["n"], "per_type_all": full["per_type"]}
    r = recipes["pretrained"]
    md = [
        "# Base encoder, supervised check: CMeEE NER from the char-level e5 base vs random init",
        "",
        f"Same recipe and budget for both: {r.train.max_steps} steps of {r.train.batch_size} sequences (max length {r.max_length}), "
        f"lr {r.train.lr} (layer decay {r.train.layer_decay}), head lr {r.train.head_lr}, BIO + CRF, nested spans flattened (longest kept); "
        f"scored against the original nested gold with strict span match, during training on the first {r.tasks['ner_medical'].dev_limit} CMeEE dev texts, then the saved model on all 5,000. "
        "The two runs trained side by side, one CPU thread each (the run info's thread count is the collecting process's).",
        "",
        "| init | steps | minutes | F1, first 1,000 dev texts | P, all 5,000 | R, all 5,000 | **F1, all 5,000 dev texts** |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for init, row in rows.items():
        m, a = row["dev_first_1000"], row["dev_all"]
        md.append(f"| {init} | {row['steps']} | {row['minutes']} | {100 * m['f1']:.2f} | {100 * a['precision']:.2f} | {100 * a['recall']:.2f} | **{100 * a['f1']:.2f}** |")
    md += ["", "Recipes: `recipes/base-check/cmeee-ner-pretrained.yaml`, `recipes/base-check/cmeee-ner-random.yaml`."]
    write_results("base_encoder_ner", {"run": run_info(sys.argv), "rows": rows}, "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
