"""Supervised evidence for the base encoder: the same short CMeEE NER budget from the char-level e5
base and from random weights (issue 3).

    python benchmarks/base_encoder_ner.py            # trains both recipes side by side (1 thread each), ~25 min
    python benchmarks/base_encoder_ner.py --collect  # only gather runs/base-check/*/summary.json
    python benchmarks/base_encoder_ner.py --inits pretrained adapted --name base_encoder_ner_adapted
                                                     # the base before and after continued pretraining (issue 14)

Writes ``benchmarks/results/base_encoder_ner.{json,md}`` (or ``--name``).
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


def recipe_path(init: str) -> Path:
    return ROOT / "recipes" / "base-check" / f"cmeee-ner-{init}.yaml"


def mlm_progress(encoder: Path) -> dict | None:
    """Step and tokens of the continued-pretraining run whose export ``encoder`` is (its ``log.jsonl``)."""
    log = encoder.parent / "log.jsonl"
    if not log.is_file():
        return None
    rows = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines() if x.strip()]
    meta = encoder / "pretrain.json"
    step = json.loads(meta.read_text(encoding="utf-8")).get("step") if meta.is_file() else None
    done = [r for r in rows if step is None or r.get("step", 0) <= step]
    return {"step": done[-1]["step"], "tokens": done[-1]["tokens"], "mlm_loss": done[-1]["loss"], "mlm_acc": done[-1].get("mlm_acc")} if done else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collect", action="store_true", help="do not train; read the finished runs")
    ap.add_argument("--inits", nargs="+", default=["pretrained", "random"], help="recipes/base-check/cmeee-ner-INIT.yaml to compare")
    ap.add_argument("--name", default="base_encoder_ner", help="results file name")
    args = ap.parse_args(argv)
    RECIPES = {init: recipe_path(init) for init in args.inits}
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
        "# Base encoder, supervised check: CMeEE NER from " + " vs ".join({"pretrained": "the char-level e5 base", "random": "random init",
                                                                          "adapted": "the base after continued pretraining"}.get(i, i) for i in RECIPES),
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
    md += ["", "Recipes: " + ", ".join(f"`recipes/base-check/cmeee-ner-{i}.yaml`" for i in RECIPES) + "."]
    extra = {}
    for init, recipe in recipes.items():
        progress = mlm_progress(ROOT / recipe.encoder) if recipe.encoder not in ("zh-e5-small-base",) else None
        if progress:
            extra[init] = progress
            md += ["", f"`{init}`: the encoder after {progress['step']} steps of continued MLM pretraining ({progress['tokens']:,} tokens; "
                   f"MLM loss {progress['mlm_loss']}, masked-token accuracy {progress['mlm_acc']})."]
    write_results(args.name, {"run": run_info(sys.argv), "rows": rows, "pretraining": extra}, "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
