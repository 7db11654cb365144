"""Continued pretraining against tokens seen: the 400-step CMeEE check and the CHIP-STS cosine AUC.

Collects the results of ``base_encoder_ner.py`` (``--inits pretrained adapted``) and
``base_encoder_sts.py`` (``--base runs/mlm/encoder``) made at several checkpoints of one
``toolkit pretrain`` run, and plots both against pretraining tokens, so the next run knows whether
more would pay (issue 14). The base itself is the 0-token point.

    python benchmarks/pretraining_progress.py \
        --point benchmarks/results/base_encoder_ner_adapted_400.json benchmarks/results/base_encoder_sts_adapted_400.json \
        --point benchmarks/results/base_encoder_ner_adapted.json benchmarks/results/base_encoder_sts_adapted.json

Writes ``benchmarks/results/pretraining_progress.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BASE_AUC = 0.808  # base_encoder_sts.md: the char-level base before any continued pretraining (first 600 CHIP-STS dev pairs)


def auc_of(sts: dict) -> float:
    """The char-level encoder's AUC in a base_encoder_sts.py result."""
    for key, value in sts.items():
        if isinstance(value, dict) and "b_char_base" in value:
            return float(value["b_char_base"])
    if "b_char_base" in sts:
        return float(sts["b_char_base"])
    raise KeyError("no b_char_base AUC in the STS result")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--point", nargs=2, action="append", metavar=("NER_JSON", "STS_JSON"), required=True)
    args = p.parse_args(argv)
    from common import RESULTS, run_info, write_results

    points = []
    base_f1 = None
    for ner_path, sts_path in args.point:
        ner = json.loads(Path(ner_path).read_text(encoding="utf-8"))
        sts = json.loads(Path(sts_path).read_text(encoding="utf-8"))
        base_f1 = 100 * ner["rows"]["pretrained"]["dev_all"]["f1"]
        progress = ner["pretraining"]["adapted"]
        points.append({"step": progress["step"], "tokens": progress["tokens"], "mlm_loss": progress["mlm_loss"], "mlm_acc": progress["mlm_acc"],
                       "cmeee_400_step_f1": round(100 * ner["rows"]["adapted"]["dev_all"]["f1"], 2), "chip_sts_auc": round(auc_of(sts), 4),
                       "ner": ner_path, "sts": sts_path})
    points.sort(key=lambda r: r["tokens"])
    rows = [{"step": 0, "tokens": 0, "cmeee_400_step_f1": round(base_f1, 2), "chip_sts_auc": BASE_AUC}] + points
    lines = ["# Continued pretraining of the 12-layer char-level base against tokens seen", "",
             "The 400-step CMeEE NER check (same recipe and budget, all 5,000 dev texts, bar 50) and the raw encoder's CHIP-STS cosine AUC "
             "(first 600 dev pairs; the original e5 scores 0.834) at checkpoints of one `toolkit pretrain` run (MLM with whole-word masking, "
             "batch 32 x 128, lr 1e-4 over a 650-step schedule). Step 0 is the base.", "",
             "| step | tokens | MLM loss | masked acc. | CMeEE 400-step F1 | CHIP-STS AUC |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['step']} | {r['tokens']:,} | {r.get('mlm_loss', '-')} | {r.get('mlm_acc', '-')} | {r['cmeee_400_step_f1']:.2f} | {r['chip_sts_auc']:.3f} |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
        tokens = [r["tokens"] / 1e6 for r in rows]
        ax[0].plot(tokens, [r["cmeee_400_step_f1"] for r in rows], marker="o")
        ax[0].axhline(50, ls="--", c="grey")
        ax[0].set(xlabel="pretraining tokens (M)", ylabel="CMeEE dev F1 after 400 steps", title="NER check (bar 50)")
        ax[1].plot(tokens, [r["chip_sts_auc"] for r in rows], marker="o", c="C1")
        ax[1].axhline(0.834, ls="--", c="grey")
        ax[1].set(xlabel="pretraining tokens (M)", ylabel="cosine ROC-AUC", title="CHIP-STS (e5: 0.834)")
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
