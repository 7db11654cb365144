"""CRF tagger vs span head on CMeEE dev: same encoder, same data, same training budget.

Trains nothing: it scores two model folders made by ``recipes/span/cmeee-tagger.yaml`` and
``recipes/span/cmeee-span.yaml`` (both continue the shipped ``zh-multitask`` encoder for the same
steps x batch on ``cmeee:train``), on every CMeEE dev text, against the original NESTED gold:

* strict span micro P/R/F1 overall and per type;
* the nested entities alone: gold entities that lie inside another gold entity ("inner") and those
  that contain one ("outer"), and how many of each the model returns exactly;
* end-to-end speed (PyTorch, the same thread count, chars/s over the dev texts), measured side by side.

    toolkit train recipes/span/cmeee-tagger.yaml && toolkit train recipes/span/cmeee-span.yaml
    python benchmarks/span_vs_crf.py --crf runs/cmeee-tagger/model --span runs/cmeee-span/model
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def nesting(spans: list[tuple[int, int, str]]) -> tuple[set, set]:
    """``(inner, outer)``: spans strictly inside another span, and spans that contain another."""
    inner, outer = set(), set()
    for a in spans:
        for b in spans:
            if a != b and b[0] <= a[0] and a[1] <= b[1] and (a[0], a[1]) != (b[0], b[1]):
                inner.add(a)
                outer.add(b)
    return inner, outer


def holdout_threshold(pipe, task: str, holdout: list) -> float:
    """The span head's threshold chosen on the 400 held-out training texts (what training now does
    at every evaluation: ``SpanKind.tune``); the same texts selected both models."""
    from toolkit.kinds.span import best_threshold

    decoder = pipe.decoders[task]
    pipe.decoders[task] = decoder.with_threshold(0.05)
    outputs = pipe([ex.text for ex in holdout])
    threshold, _ = best_threshold(outputs, holdout, 0.05)
    pipe.decoders[task] = decoder.with_threshold(threshold)
    return threshold


def score_model(folder: str, task: str, examples: list, threads: int, holdout: list | None = None) -> dict:
    import toolkit
    from toolkit.kinds.metrics import span_prf

    pipe = toolkit.load(folder, tasks=task, threads=threads)
    threshold = holdout_threshold(pipe, task, holdout) if holdout is not None and pipe.kinds[task].name == "span" else None
    texts = [ex.text for ex in examples]
    pipe(texts[:32])  # warm-up
    start = time.perf_counter()
    found = pipe(texts)
    seconds = time.perf_counter() - start
    pred = [sorted({(e.start, e.end, e.label) for e in ents}) for ents in found]
    gold = [[s.as_tuple() for s in ex.spans] for ex in examples]
    scores = span_prf(pred, gold)
    counts = {"inner": [0, 0], "outer": [0, 0]}
    for p, g in zip(pred, gold):
        inner, outer = nesting(g)
        ps = set(p)
        counts["inner"][0] += len(inner)
        counts["inner"][1] += len(inner & ps)
        counts["outer"][0] += len(outer)
        counts["outer"][1] += len(outer & ps)
    nested_pred = sum(len(nesting(p)[0]) for p in pred)
    return {"folder": folder, "task": task, "threshold": threshold, "micro": scores["micro"], "per_type": scores["per_type"],
            "inner_gold": counts["inner"][0], "inner_found": counts["inner"][1], "outer_gold": counts["outer"][0], "outer_found": counts["outer"][1],
            "predicted_inner": nested_pred, "seconds": round(seconds, 1), "chars_per_s": round(sum(map(len, texts)) / seconds)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--crf", required=True, help="model folder with the CRF tagger")
    p.add_argument("--span", required=True, help="model folder with the span head")
    p.add_argument("--crf-task", default="ner_tagger")
    p.add_argument("--span-task", default="ner_span")
    p.add_argument("--split", default="cmeee:dev")
    p.add_argument("--limit", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="span_vs_crf", help="results file name")
    p.add_argument("--note", default="Same start (the shipped `zh-multitask` encoder), same data (`cmeee:train`, 400 held out for model selection), "
                   "same budget (recipes in `recipes/span/`).", help="what the two models are (the table's caption)")
    args = p.parse_args(argv)
    from common import run_info, write_results
    from toolkit.data.catalogue import load_dataset

    from toolkit.train.recipe import split_holdout

    examples, _ = load_dataset(args.split)
    examples = examples[: args.limit] if args.limit else examples
    _, holdout = split_holdout(load_dataset("cmeee:train")[0], 400, 42)  # the recipes' model-selection texts
    rows = {"crf": score_model(args.crf, args.crf_task, examples, args.threads),
            "span": score_model(args.span, args.span_task, examples, args.threads, holdout)}
    c, s = rows["crf"], rows["span"]
    types = sorted(c["per_type"])
    lines = [f"# CRF tagger vs span head on {args.split} ({len(examples)} texts), nested gold", "",
             args.note + " Strict span match against the original nested gold. "
             f"The span head's threshold ({s['threshold']}) was chosen on the 400 held-out training texts that selected both models.", "",
             "| head | P | R | **F1** | inner entities found | outer entities found | chars/s (torch, %d thread) |" % args.threads,
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        m = r["micro"]
        lines.append(f"| {name} | {100 * m['precision']:.2f} | {100 * m['recall']:.2f} | **{100 * m['f1']:.2f}** | "
                     f"{r['inner_found']} / {r['inner_gold']} | {r['outer_found']} / {r['outer_gold']} | {r['chars_per_s']:,} |")
    lines += ["", "Per type (F1):", "", "| type | support | CRF | span |", "|---|---:|---:|---:|"]
    lines += [f"| {t} | {c['per_type'][t]['support']} | {100 * c['per_type'][t]['f1']:.2f} | {100 * s['per_type'].get(t, {'f1': 0})['f1']:.2f} |" for t in types]
    lines += ["", f"Speed ratio span / CRF (same run, same thread count): {s['chars_per_s'] / c['chars_per_s']:.2f}x. "
              f"The span model returned {s['predicted_inner']} entities nested inside another; the CRF {c['predicted_inner']}."]
    write_results(args.name, {"split": args.split, "n": len(examples), "rows": rows, "run": run_info(sys.argv, args.threads)}, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
