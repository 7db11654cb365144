"""Continued pretraining as one short job on a lent GPU machine: pack here, run there, unpack here.

The GPU machine gets the working tree plus at most 64 MiB in all, has no jieba or opencc, and gives
back at most 8 files of 16 MiB (64 MiB together). So the work is split:

1. ``pack`` (here, on the CPU): tokenise and segment the texts (the same ``RUN/data`` cache as
   ``toolkit pretrain``), and write a small folder: the token ids (uint16) and word ids (as
   differences), xz-compressed; the start encoder in float16 (xz-compressed when that saves space);
   ``job.json`` with the training settings and checksums (:mod:`toolkit.train.gpu_pack`). jieba
   and opencc run only here. With ``--distill-weight W`` the job also carries the e5 teacher
   (:mod:`toolkit.train.distill`), pruned to fit: its whole tokenizer, but only the embedding rows
   of the pieces this corpus produces, and the layers it shares with the start encoder (the base
   was built from e5) stored once, as names.
2. ``run`` (there): one command. Unpacks into a scratch folder, measures a few steps to fit the LR
   schedule to ``--minutes`` (``max_steps: auto``), runs :func:`toolkit.train.pretrain.pretrain` on
   the GPU (bf16 autocast, checkpoints in the scratch folder), and writes the encoder as safetensors
   shards of at most 15 MB each (``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json``,
   Hugging Face's sharded layout: :mod:`toolkit.train.shards`), ``config.json`` and ``log.jsonl``
   (copied as training goes).
3. ``unpack`` (here): the shards + the job's tokenizer -> a normal encoder folder, loadable by
   ``Encoder.from_pretrained``, usable as ``encoder:`` in a recipe or ``toolkit pretrain --encoder``.
   The optimizer moments stay on the GPU machine (too large to come back): a later run continues
   from the weights, with a fresh optimizer.

Commands (``runs/`` is git-ignored, so the job travels only when carried)::

    toolkit gpu-job pack --encoder zh-e5-small-base --text ../shared/corpora/raw/medical_zh.txt \\
        --out runs/gpu_job --batch-size 128 --lr 1e-4 [--distill-weight 1 --teacher auto --mlm-weight 1 \\
        --distill-loss mse] [--num-layers 6]
    # device tool: run(carry=["runs/gpu_job"], timeout_s=560, command=) the CUDA tests, then the job:
    python3 -m pytest -q -p no:cacheprovider -k cuda tests/test_gpu_job.py tests/test_distill.py; \\
    PYTHONUNBUFFERED=1 python3 -m toolkit.train.gpu_job run --job runs/gpu_job --out $OUT/result --minutes 7
    toolkit gpu-job unpack --result FILES_AT/result --job runs/gpu_job --out runs/gpu-encoder

Room: the tree that travels counts against the same 64 MiB; ``pack`` reports the tree's size, the
pack's, and whether both fit. Measured: the fp16 base (53 MiB) packs to 23 MiB (its weights are
dequantised 4-bit values, which xz finds); the data to about 1.07M tokens per MiB. The result of
the base is 4 shards of 15 MB + index, config, log: 7 files, 53 MiB. Nothing here needs a GPU:
the tests run all three steps with ``--device cpu``. The teacher's share is in ``pack``'s summary
(``teacher_mib``, ``teacher_shared_mib``, ``teacher_pieces``) and counts towards ``fits``. Measured
once (the first 8.0M tokens of the pretraining cache, max length 128, the base): 19,011 of e5's
250,002 pieces kept, 196 of the teacher's 197 tensors stored as names, 8.35 MiB for the teacher.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .gpu_pack import DEVICE_MIB, MIB, TEACHER, TRAIN_DEFAULTS, materialize, pack
from .shards import WEIGHTS, load_shards, save_shards

logger = logging.getLogger(__name__)

RETURN_FILES, RETURN_FILE_MIB = 8, 16  # what the device tool gives back: files, MiB each


# ---------------------------------------------------------------- run (GPU machine)

def run_job(job: str | Path, out: str | Path, *, minutes: float, device: str = "cuda", work: str | Path | None = None,
            overrides: dict[str, Any] | None = None, calibrate_steps: int = 30, reserve_s: float = 45.0) -> dict[str, Any]:
    """Train the packed job for at most ``minutes`` (wall clock, from the call) and write the result
    shards, ``config.json``, ``log.jsonl`` and the index (with this summary) into ``out``.

    The job's settings decide distillation (``distill_weight`` > 0: from the job's pruned teacher)
    and ``num_layers``; jobs packed before those settings existed train MLM alone, all layers."""
    import torch
    from safetensors.torch import load_file

    from .pretrain import pretrain
    from .state import trainer_state

    began = time.perf_counter()
    deadline = began + 60 * minutes
    job, out = Path(job), Path(out)
    work = Path(work) if work else Path(tempfile.gettempdir()) / "toolkit-gpu-job"
    encoder, ids, words, spec = materialize(job, work)
    train = TRAIN_DEFAULTS | spec["train"] | {k: v for k, v in (overrides or {}).items() if v is not None}
    corpus = (ids, words, spec["data"]["sources"])
    out.mkdir(parents=True, exist_ok=True)
    opts = {k: train[k] for k in ("batch_size", "max_length", "lr", "warmup", "weight_decay", "clip", "seed", "dtype",
                                  "num_layers")}
    if train["distill_weight"]:
        if "teacher" not in spec:
            raise ValueError(f"{job}/job.json asks for distillation but carries no teacher: pack the job again")
        opts |= {"distill_weight": train["distill_weight"], "teacher": work / TEACHER, "mlm_weight": train["mlm_weight"],
                 "distill_loss": train["distill_loss"]}
    plan_path, steps = work / "plan.json", train["max_steps"]
    run_dir = work / "run"
    resume = (run_dir / "checkpoint" / "state.json").is_file() and plan_path.is_file()
    if resume:  # a second call on a machine still warm: continue the same schedule
        steps = json.loads(plan_path.read_text())["max_steps"]
    elif steps == "auto":
        t0 = time.perf_counter()
        shutil.rmtree(work / "calibrate", ignore_errors=True)
        pretrain(encoder, out=work / "calibrate", corpus=corpus, max_steps=calibrate_steps, device=device,
                 log_every=1, save_every=10**9, **opts)
        log = [json.loads(x) for x in (work / "calibrate" / "log.jsonl").read_text().splitlines()]
        per_step = float(np.median(np.diff([r["elapsed_s"] for r in log])[min(5, len(log) - 2):]))
        overhead = time.perf_counter() - t0 - log[-1]["elapsed_s"]
        steps = max(1, int(0.95 * (deadline - time.perf_counter() - reserve_s - overhead) / max(per_step, 1e-6)))
        logger.info("calibration: %.1f ms per step, %.1f s to load and save: %d steps fit in the budget", 1000 * per_step, overhead, steps)
        shutil.rmtree(work / "calibrate", ignore_errors=True)
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
        plan_path.write_text(json.dumps({"max_steps": int(steps)}))
    log_path = run_dir / "log.jsonl"

    def copy_log(step: int) -> None:
        if step % train["log_every"] == 0 and log_path.is_file():
            shutil.copyfile(log_path, out / "log.jsonl")

    left = (deadline - time.perf_counter() - reserve_s) / 60
    prior = trainer_state(run_dir / "checkpoint")["elapsed"] / 60 if resume else 0.0
    record = pretrain(encoder, out=run_dir, corpus=corpus, max_steps=int(steps), max_minutes=max(left, 0.05) + prior,
                      device=device, log_every=train["log_every"], save_every=train["save_every"], resume=resume,
                      on_step=copy_log, **opts)
    state = load_file(str(run_dir / "encoder" / WEIGHTS))
    target = getattr(torch, train["out_dtype"])
    state = {k: v.to(target) if v.dtype.is_floating_point else v for k, v in state.items()}
    summary = {"steps": record["step"], "planned_steps": int(steps), "tokens": record.get("tokens"),
               "loss": record.get("loss"), "mlm_acc": record.get("mlm_acc"), "dtype": record.get("dtype"),
               "device": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else device,
               "torch": torch.__version__, "job_created": spec["created"], "encoder": spec["encoder"]["source"],
               "wall_s": round(time.perf_counter() - began, 1)}
    if train["distill_weight"]:
        summary |= {"distill": record.get("distill"), "distill_dropped": record.get("distill_dropped"),
                    "teacher_pieces": spec["teacher"]["pieces"]}
    for f in out.glob("model-*.safetensors"):
        f.unlink()
    save_shards(state, out, metadata={"job": summary})
    shutil.copyfile(run_dir / "encoder" / "config.json", out / "config.json")
    shutil.copyfile(log_path, out / "log.jsonl")
    files = [f for f in out.rglob("*") if f.is_file()]
    total = sum(f.stat().st_size for f in files)
    summary["result_files"], summary["result_mib"] = len(files), round(total / MIB, 2)
    if len(files) > RETURN_FILES or total > DEVICE_MIB * MIB or any(f.stat().st_size > RETURN_FILE_MIB * MIB for f in files):
        logger.warning("the result (%d files, %.1f MiB) is over what the device tool gives back (%d files of %d MiB, %d MiB)",
                       len(files), total / MIB, RETURN_FILES, RETURN_FILE_MIB, DEVICE_MIB)
    return summary


# ---------------------------------------------------------------- unpack (CPU machine)

def unpack(result: str | Path, job: str | Path, out: str | Path, check: bool = True) -> Path:
    """The shards in ``result`` + the tokenizer of ``job`` -> the encoder folder ``out`` (atomically)."""
    from safetensors.torch import save_file

    from ..model.folder import replace_folder

    result, job, out = Path(result), Path(job), Path(out)
    state = load_shards(result)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in (job / "encoder").iterdir():
        if not f.name.startswith("model"):
            shutil.copyfile(f, tmp / f.name)
    if (result / "config.json").is_file():
        shutil.copyfile(result / "config.json", tmp / "config.json")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / WEIGHTS), metadata={"format": "pt"})
    if check:
        from ..model.encoder import Encoder

        Encoder.from_pretrained(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_folder(tmp, out)
    return out


# ---------------------------------------------------------------- CLI

def register_cli(sub) -> None:
    """Add ``toolkit gpu-job pack|run|unpack`` to the ``toolkit`` command's subparsers."""
    from ..cli_io import positive_float, positive_int

    p = sub.add_parser("gpu-job", help="continued pretraining on a GPU machine: pack here, run there, unpack here")
    verbs = p.add_subparsers(dest="verb", required=True)
    a = verbs.add_parser("pack", help="tokenise + segment texts and pack them with the start encoder into a small folder")
    a.add_argument("--encoder", default="zh-e5-small-base", help="start encoder: base name or Hugging Face folder")
    a.add_argument("--text", nargs="*", default=[], metavar="FILE", help="UTF-8 files, one text per line")
    a.add_argument("--from-split", nargs="*", default=[], metavar="ID", help="also the texts of catalogue splits")
    a.add_argument("--data-root")
    a.add_argument("--run", help="a toolkit pretrain run folder whose RUN/data cache to reuse or fill")
    a.add_argument("--out", required=True, help="the job folder (e.g. runs/gpu_job: git-ignored, carried to the device)")
    a.add_argument("--max-tokens", type=positive_int, help="keep only the first texts, up to this many tokens")
    a.add_argument("--limit-mib", type=positive_float, default=60.0, help="refuse a job larger than this (default 60)")
    for name, kind in (("batch-size", positive_int), ("max-length", positive_int), ("lr", positive_float),
                       ("seed", int), ("save-every", positive_int), ("log-every", positive_int)):
        a.add_argument(f"--{name}", type=kind, help=f"training setting (default {TRAIN_DEFAULTS[name.replace('-', '_')]})")
    a.add_argument("--max-steps", help="LR schedule length, or auto (default): as many as fit in run --minutes")
    a.add_argument("--num-layers", type=positive_int, help="pretrain only the encoder's first N layers (default: all)")
    from .distill import add_distill_arguments

    add_distill_arguments(a)  # --distill-weight (packs the teacher, pruned), --teacher, --distill-loss, --mlm-weight
    a.set_defaults(func=_cmd_pack)
    r = verbs.add_parser("run", help="on the GPU machine: train the packed job within --minutes, write <=15 MB shards")
    r.add_argument("--job", required=True)
    r.add_argument("--out", required=True, help="result folder, e.g. $OUT/result")
    r.add_argument("--minutes", type=positive_float, required=True, help="wall-clock budget of the whole command")
    r.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu (tests)")
    r.add_argument("--work", help="scratch folder for the unpacked job and checkpoints (default: $TMPDIR/toolkit-gpu-job)")
    r.add_argument("--max-steps", type=positive_int, help="instead of the job's (auto: measured)")
    r.add_argument("--batch-size", type=positive_int)
    r.add_argument("--lr", type=positive_float)
    r.set_defaults(func=_cmd_run)
    u = verbs.add_parser("unpack", help="reassemble the shards into an encoder folder")
    u.add_argument("--result", required=True, help="the run's result folder (the fetched files)")
    u.add_argument("--job", required=True, help="the job folder it was packed from (for the tokenizer)")
    u.add_argument("--out", required=True)
    u.set_defaults(func=_cmd_unpack)


def _cmd_pack(args: argparse.Namespace) -> int:
    if not args.text and not args.from_split:
        raise ValueError("give texts to pack: --text FILE ... and/or --from-split ID ...")
    keys = ("batch_size", "max_length", "lr", "seed", "save_every", "log_every", "num_layers", "distill_weight",
            "mlm_weight", "distill_loss")
    settings = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    if args.max_steps:
        settings["max_steps"] = args.max_steps if args.max_steps == "auto" else int(args.max_steps)
    print(json.dumps(pack(args.encoder, args.text, args.out, splits=args.from_split, data_root=args.data_root, run=args.run,
                          max_tokens=args.max_tokens, settings=settings, limit_mib=args.limit_mib,
                          teacher=args.teacher if args.distill_weight else None), ensure_ascii=False))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    overrides = {"max_steps": args.max_steps, "batch_size": args.batch_size, "lr": args.lr}
    print(json.dumps(run_job(args.job, args.out, minutes=args.minutes, device=args.device, work=args.work,
                             overrides=overrides), ensure_ascii=False))
    return 0


def _cmd_unpack(args: argparse.Namespace) -> int:
    print(json.dumps({"encoder": str(unpack(args.result, args.job, args.out))}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m toolkit.train.gpu_job pack|run|unpack ...`` (the GPU machine has no ``toolkit`` command)."""
    parser = argparse.ArgumentParser(prog="python -m toolkit.train.gpu_job")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["gpu-job", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
