"""Continued pretraining against tokens seen: the 400-step CMeEE check and the CHIP-STS cosine AUC.

Collects, for one or several ``toolkit pretrain`` runs (objectives: MLM, e5 distillation, both),
the results of ``base_encoder_sts.py --base RUN/encoder`` (the raw encoder's CHIP-STS cosine AUC)
and, where one was run, of ``base_encoder_ner.py`` (the 400-step CMeEE check) at checkpoints of
each run, and plots both against pretraining tokens, one line per objective, so the next run knows
whether more would pay and which objective to spend it on (issue 14). The base itself is the
0-token point of every line.

    python benchmarks/pretraining_progress.py \\
        --point mlm benchmarks/results/base_encoder_sts_adapted_400.json benchmarks/results/base_encoder_ner_adapted_400.json:adapted \\
        --point mlm benchmarks/results/base_encoder_sts_adapted.json benchmarks/results/base_encoder_ner_adapted.json:adapted \\
        --point distill benchmarks/results/base_encoder_sts_dist_650.json benchmarks/results/base_encoder_ner_objectives.json:distill

``--point OBJECTIVE STS_JSON [NER_JSON:INIT]``: the step and tokens come from the STS result (its
``pretraining`` record) or else from the NER result's. Writes
``benchmarks/results/pretraining_progress.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BASE_AUC = 0.808  # base_encoder_sts.md: the char-level base before any continued pretraining (first 600 CHIP-STS dev pairs)
BASE_NER = 45.57  # base_encoder_ner_adapted.md: the base's 400-step CMeEE check (all 5,000 dev texts)
OBJECTIVES = {"mlm": "MLM (whole-word masking)", "distill": "e5 distillation", "mlm+distill": "MLM + e5 distillation"}


def auc_of(sts: dict) -> float:
    """The char-level encoder's AUC in a base_encoder_sts.py result."""
    for key, value in sts.items():
        if isinstance(value, dict) and "b_char_base" in value:
            return float(value["b_char_base"])
    if "b_char_base" in sts:
        return float(sts["b_char_base"])
    raise KeyError("no b_char_base AUC in the STS result")


def ner_f1(row: dict) -> float:
    """A base_encoder_ner.py row's F1 on all dev texts, 0-100 (both result layouts)."""
    return 100 * (row["value"] if "value" in row else row["dev_all"]["f1"])


def point(objective: str, sts_path: str, ner_ref: str | None) -> dict:
    sts = json.loads(Path(sts_path).read_text(encoding="utf-8"))
    progress, f1 = sts.get("pretraining"), None
    if ner_ref:
        ner_path, _, init = ner_ref.rpartition(":")
        if not ner_path:
            raise SystemExit(f"--point {objective}: write the NER result as FILE:INIT, got {ner_ref!r}")
        ner = json.loads(Path(ner_path).read_text(encoding="utf-8"))
        f1 = round(ner_f1(ner["rows"][init]), 2)
        progress = progress or ner["pretraining"][init]
    if not progress:
        raise SystemExit(f"{sts_path}: no pretraining record (was --base a `toolkit pretrain` export?)")
    return {"objective": objective, "step": progress["step"], "tokens": progress["tokens"], "mlm_loss": progress.get("mlm_loss"),
            "mlm_acc": progress.get("mlm_acc"), "distill_loss": progress.get("distill_loss"),
            "cmeee_400_step_f1": f1, "chip_sts_auc": round(auc_of(sts), 4), "sts": sts_path, "ner": ner_ref}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--point", nargs="+", action="append", metavar="OBJECTIVE STS_JSON [NER_JSON:INIT]", required=True)
    args = p.parse_args(argv)
    from common import RESULTS, run_info, write_results

    points = []
    for spec in args.point:
        if len(spec) not in (2, 3):
            p.error(f"--point takes OBJECTIVE STS_JSON [NER_JSON:INIT], got {spec}")
        points.append(point(spec[0], spec[1], spec[2] if len(spec) == 3 else None))
    points.sort(key=lambda r: (list(OBJECTIVES).index(r["objective"]) if r["objective"] in OBJECTIVES else 99, r["tokens"]))
    base = {"objective": "base", "step": 0, "tokens": 0, "cmeee_400_step_f1": BASE_NER, "chip_sts_auc": BASE_AUC}
    rows = [base] + points
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    lines = ["# Continued pretraining of the 12-layer char-level base against tokens seen", "",
             "The 400-step CMeEE NER check (same recipe and budget, all 5,000 dev texts, bar 50) and the raw encoder's CHIP-STS cosine AUC "
             "(first 600 dev pairs; the original e5 scores 0.834) at checkpoints of `toolkit pretrain` runs, one per objective "
             "(batch 32 x 128, lr 1e-4 over a 650-step schedule, the same texts and seed). Step 0 is the base. "
             "Points past 2.66M tokens come from a run continued from an earlier run's export: its step counts from that start "
             "and `tokens` counts both runs (e5 distillation: a second 3,000-step schedule from the 650-step export, a new order).", "",
             "| objective | step | tokens | MLM loss | masked acc. | distill loss | CMeEE 400-step F1 | CHIP-STS AUC |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {OBJECTIVES.get(r['objective'], r['objective'])} | {r['step']} | {r['tokens']:,} | {fmt(r.get('mlm_loss'), '')} | "
                     f"{fmt(r.get('mlm_acc'), '')} | {fmt(r.get('distill_loss'), '')} | {fmt(r['cmeee_400_step_f1'], '.2f')} | {r['chip_sts_auc']:.3f} |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(10, 3.4))
        for i, obj in enumerate(dict.fromkeys(r["objective"] for r in points)):
            line = [base] + [r for r in points if r["objective"] == obj]
            ner = [r for r in line if r["cmeee_400_step_f1"] is not None]
            label = OBJECTIVES.get(obj, obj)
            ax[0].plot([r["tokens"] / 1e6 for r in ner], [r["cmeee_400_step_f1"] for r in ner], marker="o", c=f"C{i}", label=label)
            ax[1].plot([r["tokens"] / 1e6 for r in line], [r["chip_sts_auc"] for r in line], marker="o", c=f"C{i}", label=label)
        ax[0].axhline(50, ls="--", c="grey")
        ax[0].set(xlabel="pretraining tokens (M)", ylabel="CMeEE dev F1 after 400 steps", title="NER check (bar 50)")
        ax[1].axhline(0.834, ls="--", c="grey")
        ax[1].set(xlabel="pretraining tokens (M)", ylabel="cosine ROC-AUC", title="CHIP-STS (e5: 0.834)")
        ax[1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(RESULTS / "pretraining_progress.png", dpi=120)
        lines += ["", "![progress](pretraining_progress.png)"]
    except ImportError:
        lines += ["", "(matplotlib not installed: no plot)"]
    write_results("pretraining_progress", {"rows": rows, "run": run_info(sys.argv)}, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
