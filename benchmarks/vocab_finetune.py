"""Vocabulary extension, downstream: fine-tune with and without the extended vocabulary (issue 5).

    python benchmarks/vocab_finetune.py [--start runs/ner-medical-single/model] [--steps 300]

From one CMeEE model (default: the single-task control of the shipped model,
``recipes/ablation/ner-medical-single.yaml``):

* ``extended``: its vocabulary extended with the characters of ``raw/medical_zh.txt`` it lacks (seen
  at least twice; :func:`toolkit.vocab.extend.extend_vocabulary`), then ``--steps`` more steps on CMeEE train;
* ``original``: the same ``--steps`` steps, same seed and settings, on the original vocabulary.

Both are scored on the whole CMeEE dev set and on the dev texts that hold a character the original
vocabulary maps to ``[UNK]`` (where any effect must show). Writes
``benchmarks/results/vocab_finetune.{json,md}``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results

logger = logging.getLogger("benchmarks.vocab_finetune")
ROOT = Path(__file__).resolve().parent.parent


def continue_training(start: Path, out: Path, steps: int, lr: float) -> dict:
    """``steps`` more steps of CMeEE on ``start`` (its tagger head ``ner_medical``) into ``out``."""
    from toolkit.train.recipe import Recipe, TaskRecipe, TrainSettings
    from toolkit.train.loop import train

    recipe = Recipe(
        name=out.name, encoder="", from_model=str(start), out=str(out.parent / f"{out.name}.run"), model_out=str(out),
        tasks={"ner_medical": TaskRecipe(kind="tagger", train="cmeee:train", scheme="BIO", holdout=400)},
        train=TrainSettings(max_steps=steps, lr=lr, head_lr=10 * lr, warmup=0.05, eval_every=steps, seed=42),
        licence="research use only (CMeEE/CBLUE terms apply)",
    )
    return train(recipe, progress=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", default="runs/ner-medical-single/model", help="a model folder with a CMeEE tagger head ner_medical")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--out", default="runs/vocab-finetune")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import toolkit
    from toolkit.data.catalogue import resolve_data_root
    from toolkit.runtime.evaluation import evaluate_pipeline, load_split
    from toolkit.vocab.extend import extend_vocabulary, model_tokenizer, model_unk_rate
    from toolkit.vocab.scan import read_corpus
    from toolkit.vocab.scan import unk_rate

    start, out = ROOT / args.start, ROOT / args.out
    corpus = resolve_data_root() / "raw" / "medical_zh.txt"
    extended_start = out / "extended-start"
    if not (extended_start / "toolkit.yaml").is_file():
        texts, _ = read_corpus([str(corpus)], None)
        extend_vocabulary(str(start), extended_start, texts=texts, min_count=2, overwrite=True)
    dev, _ = load_split("cmeee:dev")
    tokenizer, normalizer = model_tokenizer(str(start))
    rare = [ex for ex in dev if unk_rate([ex.text], tokenizer, normalizer).unk_tokens]
    logger.info("%d of %d dev texts hold a character the original vocabulary lacks", len(rare), len(dev))
    rows = {}
    for name, begin in (("original", start), ("extended", extended_start)):
        folder = out / name
        if not (folder / "toolkit.yaml").is_file():
            continue_training(begin, folder, args.steps, args.lr)
        pipe = toolkit.load(str(folder), tasks="ner_medical", batch_size=64)
        rows[name] = {
            "unk_tokens_dev": model_unk_rate(str(folder), [ex.text for ex in dev]).unk_tokens,
            "dev": evaluate_pipeline(pipe, "ner_medical", dev)["micro"],
            "rare": evaluate_pipeline(pipe, "ner_medical", rare)["micro"],
        }
    md = ["# Vocabulary extension, downstream: CMeEE after fine-tuning with and without it", "",
          (f"Both start from `{args.start}`; `extended` first gets the characters of `{corpus.name}` its vocabulary lacked "
           f"(seen at least twice). Then {args.steps} steps on CMeEE train (lr {args.lr:g}, same seed) for each. "
           f"'rare texts': the {len(rare)} of {len(dev)} CMeEE dev texts holding a character the original vocabulary maps to [UNK]."), "",
          "| vocabulary | [UNK] tokens in dev | dev P | dev R | **dev F1** | rare texts F1 (support) |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        d, q = r["dev"], r["rare"]
        md.append(f"| {name} | {r['unk_tokens_dev']} | {100 * d['precision']:.2f} | {100 * d['recall']:.2f} | **{100 * d['f1']:.2f}** | {100 * q['f1']:.2f} ({q['support']}) |")
    write_results("vocab_finetune", {"run": run_info(sys.argv), "start": args.start, "steps": args.steps, "lr": args.lr, "rare_texts": len(rare), "rows": rows}, "\n".join(md))
    logger.info("\n%s", "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
