"""Supervised evidence for a base encoder: the same short fine-tuning budget from different encoders
(issue 3: the char-level e5 base vs random weights; issue 14: the base vs the base after continued
pretraining), on CMeEE NER, MSRA NER or CHIP-STS sentence pairs.

    python benchmarks/base_encoder_ner.py            # CMeEE: trains both recipes side by side (1 thread each), ~25 min
    python benchmarks/base_encoder_ner.py --collect  # only gather the finished runs
    python benchmarks/base_encoder_ner.py --inits pretrained adapted --name base_encoder_ner_adapted
                                                     # the base before and after continued pretraining (issue 14)
    python benchmarks/base_encoder_ner.py --task msra --inits pretrained distilled \\
        --encoder distilled=runs/pretrain-dist/encoder --name base_encoder_msra
                                                     # any encoder folder, same recipe otherwise
    ... --seed 43 --name base_encoder_msra_seed43      # the same comparison with another seed

Each task has one template recipe, ``recipes/base-check/{prefix}-pretrained.yaml``. An init with a
recipe of its own (``recipes/base-check/{prefix}-{init}.yaml``) uses it; ``--encoder INIT=FOLDER``
instead derives ``runs/base-check/{prefix}-{init}.yaml`` from the template with only the encoder,
name and output folder changed, so every init trains on the same data, steps, seed and settings.
After training, each saved model is scored on the whole evaluation split (``full-eval.json`` in
its run folder, reused by ``--collect``).

Writes ``benchmarks/results/NAME.{json,md}`` (default ``base_encoder_ner`` for CMeEE, else
``base_encoder_TASK``).
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

# task -> recipe prefix, head name in the recipe, split scored at the end, its title, metric
TASKS = {
    "cmeee": {"prefix": "cmeee-ner", "head": "ner_medical", "split": "cmeee:dev", "title": "CMeEE NER",
              "scored": "all 5,000 CMeEE dev texts, strict span match against the original nested gold"},
    "msra": {"prefix": "msra-ner", "head": "ner_general", "split": "msra:test", "title": "MSRA NER",
             "scored": "all 4,631 MSRA test sentences, strict span match"},
    "chip-sts": {"prefix": "chip-sts-pair", "head": "similarity_medical", "split": "chip-sts:dev", "title": "CHIP-STS sentence pairs",
                 "scored": "all 4,000 CHIP-STS dev pairs, macro-F1"},
}
TITLES = {"pretrained": "the char-level e5 base", "random": "random init", "adapted": "the base after continued MLM pretraining"}


def recipe_path(init: str, task: str = "cmeee") -> Path:
    return ROOT / "recipes" / "base-check" / f"{TASKS[task]['prefix']}-{init}.yaml"


def derived_recipe(task: str, init: str, encoder: str | None = None, seed: int | None = None, source: Path | None = None) -> Path:
    """``runs/base-check/{prefix}-{init}[-seedN].yaml``: the recipe ``source`` (default the task's
    template) with another encoder and/or seed, nothing else changed."""
    import yaml

    prefix = TASKS[task]["prefix"]
    source = source or recipe_path("pretrained", task)
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    name = f"{prefix}-{init}" + (f"-seed{seed}" if seed is not None else "")
    data.update(name=name, out=f"runs/base-check/{name}")
    if encoder is not None:
        data["encoder"] = str(encoder)
    if seed is not None:
        data.setdefault("train", {})["seed"] = seed
    path = ROOT / "runs" / "base-check" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    changed = " and ".join(x for x, v in (("the encoder", encoder), ("the seed", seed)) if v is not None)
    path.write_text(f"# derived from {source.relative_to(ROOT)} by benchmarks/base_encoder_ner.py: only {changed} {'differ' if ' and ' in changed else 'differs'}\n"
                    + yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def mlm_progress(encoder: Path) -> dict | None:
    """Step, tokens and losses of the continued-pretraining run whose export ``encoder`` is (its ``log.jsonl``)."""
    log = encoder.parent / "log.jsonl"
    if not log.is_file():
        return None
    rows = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines() if x.strip()]
    meta = encoder / "pretrain.json"
    exported = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}  # the export's step and tokens
    done = [r for r in rows if "step" not in exported or r.get("step", 0) <= exported["step"]]
    if not done:
        return None
    last = done[-1]  # the losses of the last log line up to the export (the log is written every few steps)
    out = {"step": exported.get("step", last["step"]), "tokens": exported.get("tokens_total", exported.get("tokens", last["tokens"])),
           "mlm_loss": last["loss"], "mlm_acc": last.get("mlm_acc")}  # tokens: with those of the encoder the run started from
    if "distill" in last:
        out["distill_loss"] = last["distill"]
    checkpoint = encoder.parent / "checkpoint"
    if (checkpoint / "state.json").is_file():  # the run's objective: MLM, distillation or both
        from toolkit.train.state import trainer_state

        distill = trainer_state(checkpoint)["config"].get("distill")
        out["objective"] = "mlm" if not distill else "distill" if not distill["mlm_weight"] else "mlm+distill"
        if out["objective"] == "distill":  # the LM head never trained: its loss means nothing
            out["mlm_loss"] = out["mlm_acc"] = None
    return out


def headline(full: dict) -> tuple[float, str]:
    """The split's headline score (0-1) and its name: micro-F1 for NER, macro-F1 for pairs."""
    if "micro" in full:
        return full["micro"]["f1"], "micro-F1"
    return full["macro_f1"], "macro-F1"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(TASKS), default="cmeee", help="which check (default cmeee)")
    ap.add_argument("--collect", action="store_true", help="do not train; read the finished runs")
    ap.add_argument("--inits", nargs="+", default=["pretrained", "random"], help="inits to compare (recipes/base-check/PREFIX-INIT.yaml or --encoder)")
    ap.add_argument("--encoder", action="append", default=[], metavar="INIT=FOLDER",
                    help="train INIT from this encoder folder with the task's template recipe (repeatable)")
    ap.add_argument("--seed", type=int, help="train every init with this seed instead of the recipe's (another sample of the noise)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per training run (the runs train side by side)")
    ap.add_argument("--name", help="results file name")
    args = ap.parse_args(argv)
    spec = TASKS[args.task]
    encoders = dict(x.split("=", 1) for x in args.encoder)
    unknown = set(encoders) - set(args.inits)
    if unknown:
        ap.error(f"--encoder names {sorted(unknown)} that are not in --inits")
    paths = {}
    for init in args.inits:
        if init in encoders:
            paths[init] = derived_recipe(args.task, init, encoders[init], args.seed)
        elif recipe_path(init, args.task).is_file():
            own = recipe_path(init, args.task)
            paths[init] = own if args.seed is None else derived_recipe(args.task, init, seed=args.seed, source=own)
        else:
            ap.error(f"no recipe for {init!r}: write {recipe_path(init, args.task).relative_to(ROOT)} or pass --encoder {init}=FOLDER")
    from toolkit.train.recipe import Recipe

    recipes = {init: Recipe.from_yaml(path) for init, path in paths.items()}
    if not args.collect:
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        cmd = [sys.executable, "-m", "toolkit.cli", "train"]
        procs = [subprocess.Popen(cmd + [str(path), "--no-progress"], cwd=ROOT, env=env) for path in paths.values()]
        if any(p.wait() for p in procs):
            raise SystemExit("a training run failed; see its output above")
    from toolkit.runtime.evaluation import evaluate

    rows = {}
    for init, recipe in recipes.items():
        summary = json.loads((ROOT / recipe.out / "summary.json").read_text(encoding="utf-8"))
        scores = summary["history"][-1]["scores"][spec["head"]]
        full_path = ROOT / recipe.out / ("full-dev.json" if args.task == "cmeee" else "full-eval.json")
        if not full_path.is_file():  # the whole evaluation split, scored on the saved model
            full = evaluate(str(ROOT / summary["model"]), spec["split"], progress=False)
            full_path.write_text(json.dumps(full, ensure_ascii=False, indent=2), encoding="utf-8")
        full = json.loads(full_path.read_text(encoding="utf-8"))
        value, metric = headline(full)
        row = {"encoder": str(recipe.encoder), "steps": summary["steps"], "minutes": summary["minutes"],
               "during_training": scores, "metric": metric, "value": value, "n": full["n"]}
        if "micro" in full:
            row |= {"precision": full["micro"]["precision"], "recall": full["micro"]["recall"], "per_type_all": full["per_type"]}
        else:
            row |= {"accuracy": full["accuracy"]}
        rows[init] = row
    r = next(iter(recipes.values()))
    task = r.tasks[spec["head"]]
    during = f"the first {task.dev_limit} dev texts" if task.dev_limit else f"{task.holdout} held-out training examples"
    md = [
        f"# Base encoder, supervised check: {spec['title']} from " + " vs ".join(TITLES.get(i, f"`{i}`") for i in recipes),
        "",
        f"Same recipe and budget for every encoder: {r.train.max_steps} steps of {r.train.batch_size} examples (max length {r.max_length}), "
        f"lr {r.train.lr} (layer decay {r.train.layer_decay}), head lr {r.train.head_lr}, {r.train.dtype or 'fp32'}, seed {r.train.seed}; "
        f"a {task.kind} head. Scored at the end of training on {during}, then the saved model on {spec['scored']}. "
        f"The runs trained side by side, {args.threads} CPU thread(s) each.",
        "",
        f"| init | encoder | steps | minutes | **{metric}, {spec['split']} (all)** | " + ("P | R |" if "micro" in full else "accuracy |"),
        "|---|---|---:|---:|---:|" + ("---:|---:|" if "micro" in full else "---:|"),
    ]
    for init, row in rows.items():
        extra = (f"{100 * row['precision']:.2f} | {100 * row['recall']:.2f} |" if "precision" in row else f"{100 * row['accuracy']:.2f} |")
        md.append(f"| {init} | `{row['encoder']}` | {row['steps']} | {row['minutes']} | **{100 * row['value']:.2f}** | {extra}")
    md += ["", "Recipes: " + ", ".join(f"`{Path(p).relative_to(ROOT)}`" for p in paths.values()) + "."]
    pretraining = {}
    for init, recipe in recipes.items():
        progress = mlm_progress(ROOT / recipe.encoder) if (ROOT / str(recipe.encoder)).is_dir() else None
        if progress:
            pretraining[init] = progress
            losses = ([f"MLM loss {progress['mlm_loss']}, masked-token accuracy {progress['mlm_acc']}"] if progress["mlm_loss"] is not None else []) \
                + ([f"distillation loss {progress['distill_loss']}"] if "distill_loss" in progress else [])
            md += ["", f"`{init}`: the encoder after {progress['step']} steps of continued pretraining "
                   f"({progress.get('objective', 'MLM')}; {progress['tokens']:,} tokens; " + "; ".join(losses) + ")."]
    name = args.name or ("base_encoder_ner" if args.task == "cmeee" else f"base_encoder_{args.task.replace('-', '_')}")
    write_results(name, {"run": run_info(sys.argv, threads=args.threads), "task": args.task, "rows": rows, "pretraining": pretraining}, "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
