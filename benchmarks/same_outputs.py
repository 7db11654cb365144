"""Do the shipped models answer exactly as before? Digests of every output on the shipped splits.

For each shipped name and its evaluation split (the five below), on PyTorch and on ONNX Runtime
fp32, the model's outputs on every text of the split are written in one canonical JSON form (the
results' ``to_dict()``, keys sorted, floats as the pipeline rounds them) and hashed. Run it on two
commits and compare the digests: equal digests mean byte-identical outputs on every text.

    python benchmarks/same_outputs.py --out before.json           # on the old commit
    python benchmarks/same_outputs.py --check before.json         # on the new one: exit 1 if any differ

Only digests and counts are written (never the corpus texts). ``--limit N`` scores the first N
texts of each split (a quick run); the results file records it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

SPLITS = [  # (registered name, task, split)
    ("ner-medical", "ner_medical", "cmeee:dev"),
    ("ner-general", "ner_general", "msra:test"),
    ("sentiment", "sentiment", "chnsenticorp:test"),
    ("similarity-medical", "similarity_medical", "chip-sts:dev"),
    ("ner-medical-small", "ner_medical", "cmeee:dev"),
]


def canonical(result: Any) -> Any:
    """Plain JSON data of one result (entities and labels through ``to_dict`` when they have it)."""
    if hasattr(result, "to_dict"):
        return canonical(result.to_dict())
    if isinstance(result, dict):
        return {str(k): canonical(v) for k, v in result.items()}
    if isinstance(result, (list, tuple)):
        return [canonical(x) for x in result]
    return result


def digest(name: str, split: str, runtime: str, limit: int | None, threads: int) -> dict[str, Any]:
    import toolkit
    from toolkit.data.catalogue import load_dataset

    examples, _ = load_dataset(split)
    examples = examples[:limit] if limit else examples
    inputs = [(ex.text_a, ex.text_b) if hasattr(ex, "text_a") else ex.text for ex in examples]
    kwargs: dict[str, Any] = {"threads": threads}
    if runtime == "onnx":
        kwargs["runtime"] = "onnx"
    pipe = toolkit.load(name, **kwargs)
    start = time.perf_counter()
    outputs = pipe(inputs)
    seconds = time.perf_counter() - start
    h = hashlib.sha256()
    for out in outputs:
        h.update(json.dumps(canonical(out), ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")
    return {"name": name, "split": split, "runtime": runtime, "n": len(inputs), "sha256": h.hexdigest(), "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write the digests here (JSON)")
    p.add_argument("--check", help="compare with the digests in this file; exit 1 when any differs")
    p.add_argument("--runtimes", nargs="+", default=["torch", "onnx"])
    p.add_argument("--limit", type=int, help="only the first N texts of each split")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = [digest(name, split, rt, args.limit, args.threads) for name, _, split in SPLITS for rt in args.runtimes]
    for r in rows:
        print(f"{r['name']:20} {r['split']:18} {r['runtime']:6} n={r['n']:5}  {r['sha256'][:16]}  {r['seconds']} s", flush=True)
    data = {"limit": args.limit, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if args.check:
        ref = {(r["name"], r["split"], r["runtime"]): r for r in json.loads(Path(args.check).read_text(encoding="utf-8"))["rows"]}
        bad = [r for r in rows if ref.get((r["name"], r["split"], r["runtime"]), {}).get("sha256") != r["sha256"]]
        for r in bad:
            print(f"DIFFERENT: {r['name']} {r['split']} {r['runtime']}", flush=True)
        print("all outputs identical" if not bad else f"{len(bad)} of {len(rows)} differ", flush=True)
        if bad:
            return 1
        if not args.limit:
            from common import run_info, write_results

            lines = ["# Same outputs before and after: digests of every output on the shipped splits", "",
                     f"Reference: `{args.check}` (digests made with `--out` on an earlier commit; kept in the JSON under `reference`). Every row: the sha256 of the canonical JSON "
                     "of the model's outputs on every text of the split; **identical** means byte-identical outputs.", "",
                     "| name | split | runtime | texts | sha256 (first 16) | identical |", "|---|---|---|---:|---|---|"]
            lines += [f"| {r['name']} | {r['split']} | {r['runtime']} | {r['n']} | `{r['sha256'][:16]}` | yes |" for r in rows]
            write_results("same_outputs", {"reference": json.loads(Path(args.check).read_text(encoding="utf-8")), "rows": rows,
                                           "run": run_info(sys.argv, args.threads)}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
