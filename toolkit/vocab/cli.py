"""``toolkit vocab extend``: the command line of :mod:`toolkit.vocab.extend`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import extend as vocab
from .scan import read_corpus, read_terms


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``vocab extend`` to the ``toolkit`` command's ``subparsers``.

    Example:
        >>> parser = argparse.ArgumentParser(prog="toolkit")
        >>> register_cli(parser.add_subparsers(dest="command", required=True))
        >>> parser.parse_args(["vocab", "extend", "m", "--terms", "t.txt", "--out", "o"]).tagger_policy
        'warn'
    """
    from ..cli_io import positive_int

    p = subparsers.add_parser("vocab", help="extend a model's vocabulary (characters, domain terms)")
    sub = p.add_subparsers(dest="vocab_command", required=True)
    e = sub.add_parser("extend", help="add the characters a corpus needs (and terms) to a model; writes a new model folder",
                       description=(vocab.__doc__ or "").split("\n\n")[0])
    e.add_argument("model", help="registered name or model folder")
    e.add_argument("--from-corpus", nargs="+", default=[], metavar="FILE", help="corpus files (one text per line, or --format)")
    e.add_argument("--format", help="read the corpus files with this toolkit reader (cmeee, json-spans, table-cls ...); "
                   "NER examples read so also serve the entity-boundary check")
    e.add_argument("--terms", metavar="FILE", help="domain terms, one per line")
    e.add_argument("--mine-terms", action="store_true", help="mine frequent multi-character words with jieba")
    e.add_argument("--out", required=True, help="the new model folder")
    e.add_argument("--min-count", type=positive_int, default=2, help="add characters seen at least N times (default 2)")
    e.add_argument("--max-new", type=positive_int, default=1000, help="add at most N characters, most frequent first (default 1000)")
    e.add_argument("--min-term-count", type=positive_int, default=vocab.MIN_TERM_COUNT, help=f"mined terms: min count (default {vocab.MIN_TERM_COUNT})")
    e.add_argument("--max-terms", type=positive_int, default=vocab.MAX_TERMS, help=f"mined terms: at most N (default {vocab.MAX_TERMS})")
    e.add_argument("--ner-data", nargs="+", default=[], metavar="FILE", help="NER examples to check terms against entity boundaries")
    e.add_argument("--ner-format", help="reader for --ner-data (cmeee, json-spans, columns ...)")
    e.add_argument("--tagger-policy", choices=["warn", "refuse"], default="warn",
                   help="terms cutting entity boundaries in a model with a tagger head: warn (default) or refuse")
    e.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    e.set_defaults(func=_cmd_vocab_extend)


def _cmd_vocab_extend(args: argparse.Namespace) -> int:
    if not (args.from_corpus or args.terms):
        raise ValueError("give --from-corpus FILE [FILE ...] and/or --terms FILE")
    if args.mine_terms and not args.from_corpus:
        raise ValueError("--mine-terms mines the corpus: give --from-corpus FILE too")
    if args.ner_data and not args.ner_format:
        raise ValueError("--ner-data needs --ner-format (e.g. cmeee, json-spans, columns)")
    texts, ner = read_corpus(args.from_corpus, args.format) if args.from_corpus else ([], [])
    if args.ner_data:
        ner = ner + read_corpus(args.ner_data, args.ner_format)[1]
    terms = read_terms(args.terms) if args.terms else []
    report = vocab.extend_vocabulary(args.model, args.out, texts=texts, terms=terms, mine=args.mine_terms,
                               min_count=args.min_count, max_new=args.max_new, min_term_count=args.min_term_count,
                               max_terms=args.max_terms, ner_examples=ner or None, tagger_policy=args.tagger_policy,
                               overwrite=args.overwrite)
    summary = report.to_dict(max_items=50)
    summary["report"] = str(Path(args.out) / vocab.REPORT_FILE)
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0


__all__ = ["register_cli"]
