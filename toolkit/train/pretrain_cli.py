"""The ``toolkit pretrain`` command: its arguments, and the call of :func:`toolkit.train.pretrain.pretrain`.

Example::

    toolkit pretrain --encoder zh-e5-small-base --text medical.txt --from-split cmeee:train \\
        --out runs/mlm --max-minutes 60            # again with --resume to continue
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..registry import DEFAULT_BASE
from .pretrain import pretrain


def register_cli(sub) -> None:
    """Add ``toolkit pretrain`` to the ``toolkit`` command's subparsers."""
    from ..cli_io import positive_float, positive_int

    p = sub.add_parser("pretrain", help="continue masked-LM pretraining (whole-word masking) of an encoder on raw texts")
    p.add_argument("--encoder", default=DEFAULT_BASE, help=f"base encoder name or Hugging Face folder (default {DEFAULT_BASE})")
    p.add_argument("--text", nargs="*", default=[], metavar="FILE", help="UTF-8 files, one text per line")
    p.add_argument("--from-split", nargs="*", default=[], metavar="ID", help="also the texts (not labels) of catalogue splits, e.g. cmeee:train")
    p.add_argument("--data-root", help="corpus root for --from-split (default: $TOOLKIT_DATA_ROOT or ../shared/corpora)")
    p.add_argument("--out", required=True, help="run folder: data cache, checkpoint, log.jsonl, encoder/")
    p.add_argument("--max-steps", type=positive_int, default=10000, help="length of the LR schedule and of the run")
    p.add_argument("--max-minutes", type=positive_float, help="stop (with a checkpoint and an export) once the run has trained this long, counted across --resume")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--max-length", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=5e-5)
    p.add_argument("--threads", type=positive_int, help="CPU threads torch uses")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=positive_int, default=50)
    p.add_argument("--save-every", type=positive_int, default=500, help="checkpoint every N steps")
    p.add_argument("--export-every", type=positive_int, default=0, help="also export RUN/encoder every N steps (default: at the end)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint, bit-identically")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto", help="fp32, bf16 autocast, or auto (default): "
                   "whichever a short measurement on this CPU finds faster, cached per CPU; --resume keeps the checkpoint's")
    p.add_argument("--num-layers", type=positive_int, help="pretrain only the encoder's first N layers (a truncated start for a small student)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N (bf16 autocast under --dtype auto)")
    from .distill import add_distill_arguments

    add_distill_arguments(p)  # --distill-weight, --teacher, --distill-loss, --mlm-weight
    p.set_defaults(func=_cmd_pretrain)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    if not args.text and not args.from_split:
        raise ValueError("give texts to pretrain on: --text FILE ... and/or --from-split ID ...")
    record = pretrain(args.encoder, args.text, args.out, splits=args.from_split, data_root=args.data_root,
                      max_steps=args.max_steps, max_minutes=args.max_minutes, batch_size=args.batch_size,
                      max_length=args.max_length, lr=args.lr, seed=args.seed, threads=args.threads,
                      log_every=args.log_every, save_every=args.save_every, export_every=args.export_every or 0,
                      resume=args.resume, dtype=args.dtype, device=args.device, distill_weight=args.distill_weight or 0.0,
                      teacher=args.teacher, distill_loss=args.distill_loss, mlm_weight=args.mlm_weight,
                      num_layers=args.num_layers)
    print(json.dumps(record | {"encoder": str(Path(args.out) / "encoder")}, ensure_ascii=False))
    return 0
