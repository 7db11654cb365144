"""Transfer: models on a corpus of the same task they were not trained on, with a label map.

A model is scored on another corpus's split, on the labels the two label sets share (``--map`` pairs
``THEIR=OURS``). NER: gold spans of unmapped types and predictions of types outside the map are left
out of both sides; strict span match, micro and per type. Classifiers and matchers (the split's data
kind is ``cls`` or ``pair``): every example whose gold label maps is scored, accuracy and macro-F1;
``--exclude SPLIT`` drops examples whose text (or pair) also occurs in that split (e.g. the model's
training data), ``--limit N --sample`` scores a seeded random sample of N. Several models are scored
side by side on the same examples, in one run.

Default: medical NER models (CMeEE labels) on CCKS-2017 (body, disease, symptom, test; its ``治疗``
mixes procedures and drugs, so it is left out). The shipped models' transfer runs (model cards):

    python benchmarks/transfer.py --models ner-medical runs/cmeee-tagger/model --split ccks2017:train
    python benchmarks/transfer.py --models ner-general zh-multitask:ner_general --split cluener:dev \\
        --map name=PER organization=ORG company=ORG government=ORG address=LOC --name transfer_cluener
    python benchmarks/transfer.py --models sentiment zh-multitask:sentiment --split reviews-waimai:all \\
        --name transfer_waimai
    python benchmarks/transfer.py --models similarity-medical zh-multitask:similarity_medical \\
        --split kuake-qqr:dev --map 2=1 1=0 0=0 --name transfer_kuake_qqr
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CCKS_TO_CMEEE = {"身体部位": "bod", "疾病和诊断": "dis", "症状和体征": "sym", "检查和检验": "ite"}


def _pipe(model: str, task: str | None, threads: int):
    import toolkit

    return toolkit.load(model, tasks=task, threads=threads) if task else toolkit.load(model, threads=threads)


def score(model: str, task: str | None, examples: list, mapping: dict[str, str], threads: int) -> dict:
    """Strict span P/R/F1 of a NER model on ``examples``, on the mapped types only."""
    from toolkit.kinds.metrics import span_prf

    found = _pipe(model, task, threads)([ex.text for ex in examples])
    ours = set(mapping.values())
    pred = [sorted({(e.start, e.end, e.label) for e in ents if e.label in ours}) for ents in found]
    gold = [[(s.start, s.end, mapping[s.label]) for s in ex.spans if s.label in mapping] for ex in examples]
    return span_prf(pred, gold)


def score_labels(model: str, task: str | None, examples: list, mapping: dict[str, str], threads: int) -> dict:
    """Accuracy and macro-F1 of a classifier (texts) or matcher (pairs) on ``examples``, gold labels mapped."""
    from toolkit.kinds.metrics import classification_scores, per_class_prf

    inputs = [(ex.text_a, ex.text_b) if hasattr(ex, "text_a") else ex.text for ex in examples]
    found = _pipe(model, task, threads)(inputs)
    pred = [str(r["label"]) for r in found]
    gold = [mapping.get(ex.label, ex.label) for ex in examples]
    return {**classification_scores(pred, gold), "per_class": per_class_prf(pred, gold)}


def _key(ex) -> tuple:
    return (ex.text_a, ex.text_b) if hasattr(ex, "text_a") else (ex.text,)


def select(examples: list, mapping: dict[str, str] | None, exclude: list[str], limit: int | None, sample: bool) -> tuple[list, dict]:
    """The examples scored: gold label in the map (cls/pair), not in an ``exclude`` split, limited."""
    from toolkit.data.catalogue import load_dataset

    kept, info = examples, {"read": len(examples)}
    if mapping is not None and kept and not hasattr(kept[0], "spans"):
        kept = [ex for ex in kept if ex.label in mapping]
        info["label_mapped"] = len(kept)
    for split in exclude:
        seen = {_key(ex) for ex in load_dataset(split)[0]}
        kept = [ex for ex in kept if _key(ex) not in seen]
        info[f"not_in_{split}"] = len(kept)
    if limit and len(kept) > limit:
        kept = random.Random(0).sample(kept, limit) if sample else kept[:limit]
    info["scored"] = len(kept)
    return kept, info


def _ner_table(args, rows: dict, mapping: dict[str, str], n: int) -> list[str]:
    types = sorted(set(mapping.values()))
    lines = [f"# Transfer: NER on {args.split} ({n} texts), not trained on", "",
             "Types compared (theirs = ours): " + ", ".join(f"{k} = {v}" for k, v in mapping.items()) + ". Strict span match; "
             "other types are left out on both sides. The two corpora's guidelines differ (span lengths, what counts as an "
             "entity), so compare models with each other, not with in-domain scores.", "",
             "| model | P | R | **F1** | " + " | ".join(types) + " |", "|---|---:|---:|---:|" + "---:|" * len(types)]
    for spec, r in rows.items():
        m = r["micro"]
        lines.append(f"| {spec} | {100 * m['precision']:.2f} | {100 * m['recall']:.2f} | **{100 * m['f1']:.2f}** | "
                     + " | ".join(f"{100 * r['per_type'].get(t, {'f1': 0})['f1']:.2f}" for t in types) + " |")
    return lines


def _label_table(args, rows: dict, mapping: dict[str, str] | None, info: dict) -> list[str]:
    how = ", ".join(f"{k}: {v:,}" for k, v in info.items())
    labels = sorted({lab for r in rows.values() for lab in r["per_class"]})
    lines = [f"# Transfer: {args.split}, not trained on", "",
             f"Examples ({how}). Gold labels " + ("mapped (theirs = ours): " + ", ".join(f"{k} = {v}" for k, v in mapping.items())
                                                   if mapping else "used as they are") + ".", "",
             "| model | **accuracy** | macro-F1 | " + " | ".join(f"F1 {lab}" for lab in labels) + " |",
             "|---|---:|---:|" + "---:|" * len(labels)]
    for spec, r in rows.items():
        lines.append(f"| {spec} | **{100 * r['accuracy']:.2f}** | {100 * r['macro_f1']:.2f} | "
                     + " | ".join(f"{100 * r['per_class'].get(lab, {'f1': 0})['f1']:.2f}" for lab in labels) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", required=True, help="registered names or model folders (MODEL or MODEL:TASK)")
    p.add_argument("--split", default="ccks2017:train")
    p.add_argument("--map", nargs="*", help="THEIR=OURS label pairs (default: CCKS-2017 -> CMeEE for NER, none otherwise)")
    p.add_argument("--exclude", nargs="*", default=[], help="splits whose texts are not scored (e.g. the training split)")
    p.add_argument("--limit", type=int)
    p.add_argument("--sample", action="store_true", help="with --limit: a seeded random sample instead of the first N")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="transfer_ccks2017")
    args = p.parse_args(argv)
    from common import run_info, write_results
    from toolkit.data.catalogue import load_dataset

    examples, _ = load_dataset(args.split)
    ner = bool(examples) and hasattr(examples[0], "spans")
    mapping = dict(x.split("=", 1) for x in args.map) if args.map else (CCKS_TO_CMEEE if ner else None)
    examples, info = select(examples, mapping, args.exclude, args.limit, args.sample)
    rows = {}
    for spec in args.models:
        model, _, task = spec.partition(":")
        rows[spec] = (score if ner else score_labels)(model, task or None, examples, mapping or {}, args.threads)
    lines = _ner_table(args, rows, mapping, len(examples)) if ner else _label_table(args, rows, mapping, info)
    write_results(args.name, {"split": args.split, "n": len(examples), "selection": info, "map": mapping, "rows": rows,
                              "run": run_info(sys.argv, args.threads)}, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
