"""Transfer: NER models on a corpus of the same task they were not trained on, with a label map.

A model is scored on another corpus's split, on the types the two label sets share (``--map`` pairs
``THEIR=OURS``); gold spans of unmapped types and predictions of types outside the map are left out
of both sides. Strict span match, micro and per type. Several models are scored side by side on the
same texts, in one run. Default: medical NER models (CMeEE labels) on CCKS-2017 (body, disease,
symptom, test; its ``治疗`` mixes procedures and drugs, so it is left out).

    python benchmarks/transfer.py --models ner-medical runs/cmeee-tagger/model --split ccks2017:train
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CCKS_TO_CMEEE = {"身体部位": "bod", "疾病和诊断": "dis", "症状和体征": "sym", "检查和检验": "ite"}


def score(model: str, task: str | None, examples: list, mapping: dict[str, str], threads: int) -> dict:
    import toolkit
    from toolkit.kinds.metrics import span_prf

    pipe = toolkit.load(model, tasks=task, threads=threads) if task else toolkit.load(model, threads=threads)
    found = pipe([ex.text for ex in examples])
    ours = set(mapping.values())
    pred = [sorted({(e.start, e.end, e.label) for e in ents if e.label in ours}) for ents in found]
    gold = [[(s.start, s.end, mapping[s.label]) for s in ex.spans if s.label in mapping] for ex in examples]
    return span_prf(pred, gold)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", required=True, help="registered names or model folders (MODEL or MODEL:TASK)")
    p.add_argument("--split", default="ccks2017:train")
    p.add_argument("--map", nargs="*", help="THEIR=OURS label pairs (default: CCKS-2017 -> CMeEE)")
    p.add_argument("--limit", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="transfer_ccks2017")
    args = p.parse_args(argv)
    from common import run_info, write_results
    from toolkit.data.catalogue import load_dataset

    mapping = dict(x.split("=", 1) for x in args.map) if args.map else CCKS_TO_CMEEE
    examples, _ = load_dataset(args.split)
    examples = examples[: args.limit] if args.limit else examples
    rows = {}
    for spec in args.models:
        model, _, task = spec.partition(":")
        rows[spec] = score(model, task or None, examples, mapping, args.threads)
    types = sorted(set(mapping.values()))
    lines = [f"# Transfer: NER on {args.split} ({len(examples)} texts), not trained on", "",
             "Types compared (theirs = ours): " + ", ".join(f"{k} = {v}" for k, v in mapping.items()) + ". Strict span match; "
             "other types are left out on both sides. The two corpora's guidelines differ (span lengths, what counts as a "
             "symptom), so compare models with each other, not with in-domain scores.", "",
             "| model | P | R | **F1** | " + " | ".join(types) + " |", "|---|---:|---:|---:|" + "---:|" * len(types)]
    for spec, r in rows.items():
        m = r["micro"]
        lines.append(f"| {spec} | {100 * m['precision']:.2f} | {100 * m['recall']:.2f} | **{100 * m['f1']:.2f}** | "
                     + " | ".join(f"{100 * r['per_type'].get(t, {'f1': 0})['f1']:.2f}" for t in types) + " |")
    write_results(args.name, {"split": args.split, "n": len(examples), "map": mapping, "rows": rows, "run": run_info(sys.argv, args.threads)}, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
