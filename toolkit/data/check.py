"""``toolkit data check``: what to clean in a corpus before training on it.

For NER, classification and pair data in any format the readers take (or a catalogue id such as
``cmeee:train``), :func:`check_data` reports, each with counts and the first examples' ``file:line``:

* what the reader repaired or skipped, label counts per split, classes with fewer than 5 examples,
  labels of dev/test that train lacks;
* conflicting labels (the same text with different labels, or for NER different spans), mentions
  tagged with several types (``发热: sym 412, dis 3``), mentions left untagged where they are
  tagged elsewhere, nested spans a flat tagger drops;
* exact and near duplicates in each split and train/dev/test overlap (near: equal after
  normalising, or character 5-gram Jaccard >= 0.9 found by MinHash LSH);
* length outliers and texts over the model's ``max_length``; characters the model's vocabulary
  lacks; traditional characters (mixed scripts); invisible/control characters; stray whitespace;
* noise terms among the TF-IDF ranking of jieba words (markup, URLs, e-mails, phone numbers,
  mojibake, ad words) and boilerplate clauses.

Each finding has a severity: ``error`` (labels a model cannot learn from, dev texts in train),
``warning`` or ``info``. It runs in seconds on CMeEE-size data (``benchmarks/results/data_check.md``).

Example:
    >>> result = check_data("cmeee:train", dev="cmeee:dev")                      # doctest: +SKIP
    >>> print(result.to_markdown())                                              # doctest: +SKIP
    >>> [f.check for f in result.findings if f.severity == "error"]              # doctest: +SKIP
    ['conflicting_labels', 'overlap']

Command line::

    toolkit data check cmeee:train --dev cmeee:dev --json check.json
    toolkit data check my_train.tsv --dev my_dev.tsv --kind cls --option text_column=review
"""
from __future__ import annotations

import argparse
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from toolkit.data.check_rules import (Corpus, Finding, conflicting_labels, duplicate_findings, label_findings,
                                      length_findings, length_summary, located, surface_findings)
from toolkit.data.check_text import noise_findings, script_findings, vocabulary_findings
from toolkit.data.validation import ReadReport
from toolkit.errors import InputError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "ner-medical"  # its vocabulary is zh-e5-small-base's (16,294 tokens), and it ships with the repository
SEVERITIES = ("error", "warning", "info")


@dataclass
class DataCheck:
    """The result of :func:`check_data`: a summary per split, the findings, and what the run took."""

    kind: str
    splits: dict[str, dict[str, Any]]
    findings: list[Finding]
    model: str | None = None
    unk: dict[str, Any] = field(default_factory=dict)
    top_terms: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Number of findings per severity."""
        return {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}

    def to_dict(self) -> dict[str, Any]:
        """Everything, as plain data for JSON."""
        return {"kind": self.kind, "model": self.model, "seconds": self.seconds, "counts": self.counts(),
                "splits": self.splits, "findings": [f.to_dict() for f in self.findings], "unk": self.unk,
                "top_terms": self.top_terms, "timings": self.timings}

    def to_markdown(self) -> str:
        """A readable report: the splits, then each finding with its first examples (``file:line``)."""
        counts = self.counts()
        sizes = ", ".join(f"{name} {s['examples']:,}" for name, s in self.splits.items())
        lines = [f"# Data check: {self.kind} ({sizes} examples)", "",
                 f"errors {counts['error']}, warnings {counts['warning']}, notes {counts['info']}; "
                 f"vocabulary: {self.model or 'not checked'}; {self.seconds:.1f} s", "", "## Splits", "",
                 "| split | file | format | examples | labels | chars p50 / p99 / max |", "|---|---|---|---:|---|---|"]
        for name, s in self.splits.items():
            labels = ", ".join(f"{k} {v:,}" for k, v in list(s["labels"].items())[:12])
            more = f" (+{len(s['labels']) - 12} more)" if len(s["labels"]) > 12 else ""
            ln = s["lengths"]
            lines.append(f"| {name} | `{s['path']}` | {s['format']} | {s['examples']:,} | {labels}{more} | "
                         f"{ln['p50']:g} / {ln['p99']:g} / {ln['max']} |")
        lines += ["", "## Findings", ""]
        if not self.findings:
            lines.append("Nothing to report.")
        for f in self.findings:
            lines += [f"### [{f.severity}] {f.title}", ""]
            for ex in f.examples:
                text = f" 「{ex['text']}」" if ex.get("text") else ""
                detail = f" — {ex['detail']}" if ex.get("detail") else ""
                also = f" (also {', '.join(f'`{a}`' for a in ex['also'])})" if ex.get("also") else ""
                lines.append(f"- `{ex['source']}`{text}{detail}{also}")
            if f.count > len(f.examples):
                lines.append(f"- ... {f.count - len(f.examples):,} more (see the JSON report)")
            lines.append("")
        if self.top_terms:
            lines += ["## Top terms by TF-IDF (jieba words)", "",
                      ", ".join(f"{t['term']}{' [' + t['flag'] + ']' if t['flag'] else ''} {t['score']:g}" for t in self.top_terms), ""]
        return "\n".join(lines)


# ------------------------------------------------------------------ reading


def read_split(ref: str | Path, kind: str | None = None, format: str | None = None, options: dict[str, Any] | None = None,
               data_root: str | Path | None = None) -> tuple[str, list, ReadReport, dict[str, str]]:
    """``(kind, examples, report, {"path", "format"})`` of a corpus file or a catalogue id (``cmeee:dev``).

    A file's format is ``format``, else guessed from its extension (and ``kind``, when the
    extension is shared: ``.jsonl``); the readers' ``file:line`` errors and repairs are kept.

    >>> kind, examples, report, where = read_split("train.bio")    # doctest: +SKIP
    """
    from toolkit.data.readers import READER_TASKS, read

    path = Path(ref)
    if path.is_file():
        format = format or _guess_format(path, kind)
        if kind and READER_TASKS.get(format, kind) != kind:
            raise InputError(f"{ref}: the {format!r} reader reads {READER_TASKS[format]} data, not {kind}; drop --kind or --format")
        examples, report = read(path, format, **(options or {}))
        return READER_TASKS[format], examples, report, {"path": str(path), "format": format}
    if ":" not in str(ref):
        raise InputError(f"{ref}: no such file; give a corpus file or a catalogue id such as cmeee:train "
                         "(see toolkit/data/catalogue.yaml)")
    from toolkit.data.catalogue import dataset_info, dataset_path, load_dataset

    spec = dataset_info(str(ref))
    if options or format:
        raise InputError(f"--format and --option apply to files; {ref} is a catalogue id, read as the catalogue says")
    examples, report = load_dataset(str(ref), data_root=data_root)
    reader, _ = spec.reader_for(str(ref).partition(":")[2])
    return spec.task, examples, report, {"path": str(dataset_path(str(ref), data_root)), "format": reader}


_JSON_KEY = re.compile(r'"([^"\\]{1,40})"\s*:')


def _guess_format(path: Path, kind: str | None) -> str:
    """The reader for ``path``: from its extension, and when that is shared between kinds (``.jsonl``,
    ``.tsv``) from the field names of its start (``spans`` -> NER; the pair readers' default fields
    ``text1``/``text2`` or ``sentence1``/``sentence2`` -> pair; ``text`` -> classification)."""
    from toolkit.data.readers import FORMATS, guess_format

    if kind:
        return guess_format(kind, path)  # type: ignore[arg-type]
    found = {}
    for k in FORMATS:
        try:
            found[k] = guess_format(k, path)  # type: ignore[arg-type]
        except ValueError:
            continue
    if len(set(found.values())) == 1:
        return next(iter(found.values()))
    if found:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            head = f.read(4096)
        fields = set(_JSON_KEY.findall(head)) | set(re.split(r"[\t,]", head.partition("\n")[0].strip()))
        guess = ("ner" if "spans" in fields else "pair" if {"text1", "text2"} <= fields or {"sentence1", "sentence2"} <= fields
                 else "cls" if "text" in fields else None)
        if guess in found:
            logger.info("reading %s as %s (%s data, from its field names)", path, found[guess], guess)
            return found[guess]
    raise InputError(f"cannot tell what {path} holds from its name or its first fields: pass --kind ner|cls|pair "
                     "or --format (columns, cmeee, json-spans, table-cls, json-cls, table-pair, json-pair, ...)")


def load_vocabulary(model: str | Path) -> tuple[Any, Any, int, str]:
    """``(tokenizer, normalizer, max_length, name)`` of a registered model, a model folder, or an
    encoder folder in Hugging Face format (default normalisation, its ``model_max_length`` or 512)."""
    from toolkit.registry import MANIFEST

    folder = Path(model)
    if not (folder / MANIFEST).is_file() and folder.is_dir():
        from toolkit.text.normalize import Normalizer
        from toolkit.text.tokenization import TextTokenizer

        tokenizer = TextTokenizer.from_pretrained(folder)
        limit = getattr(tokenizer.hf, "model_max_length", 512)
        return tokenizer, Normalizer(), int(limit) if limit and limit < 100_000 else 512, str(model)
    from toolkit.model.manifest import Manifest
    from toolkit.registry import resolve
    from toolkit.vocab.extend import model_tokenizer

    tokenizer, normalizer = model_tokenizer(model)
    return tokenizer, normalizer, Manifest.read(resolve(model)[0]).max_length, str(model)


# ------------------------------------------------------------------ checking


def reader_findings(reports: dict[str, ReadReport], max_examples: int = 5) -> list[Finding]:
    """What the readers repaired (info) or skipped (warning), per split and problem, with the first places."""
    out = []
    for split, report in reports.items():
        for severity, verb, counter in (("warning", "skipped", report.skipped), ("info", "repaired", report.repaired)):
            for problem, n in sorted(counter.items()):
                rows = [located(where) for where in report.where.get(problem, [])[:max_examples]]
                out.append(Finding(f"reader_{verb}", severity, f"{split}: the reader {verb} {n} x {problem}", n, rows,
                                   {"split": split, "problem": problem}))
    return out


def check_examples(splits: dict[str, list], kind: str, *, reports: dict[str, ReadReport] | None = None,
                   model: str | Path | None = None, max_examples: int = 5, top_terms: int = 20,
                   near_threshold: float = 0.9, sources: dict[str, dict[str, str]] | None = None) -> DataCheck:
    """Run every check on examples already read (``splits``: ``{"train": [...], "dev": [...]}``, train first).

    ``model``: a registered name, model folder or encoder folder whose vocabulary and ``max_length``
    the texts are checked against (``None``: skip those checks).

    >>> from toolkit.data.examples import TextExample
    >>> result = check_examples({"train": [TextExample("好", "pos", "a.tsv:2"), TextExample("好", "neg", "a.tsv:3")]}, "cls")
    >>> [f.check for f in result.findings if f.severity == "error"]
    ['conflicting_labels']
    """
    if "train" not in splits:
        raise InputError(f"the checks compare dev and test with train: give a 'train' split (got {sorted(splits)})")
    from toolkit.text.normalize import NormalizationConfig, Normalizer

    start = time.perf_counter()
    t2s = Normalizer(NormalizationConfig(opencc="t2s", fullwidth=False, invisible=False, whitespace=False))
    corpus = Corpus(kind, dict(sorted(splits.items(), key=lambda kv: kv[0] != "train")), max_examples,
                    simplify=lambda text: t2s(text).text)
    timings: dict[str, float] = {}

    def timed(name: str, run: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = run()
        timings[name] = round(time.perf_counter() - t, 3)
        logger.info("%s: %.2f s", name, timings[name])
        return out

    findings = reader_findings(reports or {}, max_examples)
    findings += timed("labels", lambda: label_findings(corpus) + conflicting_labels(corpus) + surface_findings(corpus))
    findings += timed("duplicates", lambda: duplicate_findings(corpus, threshold=near_threshold))
    token_lengths, max_length, unk, name = None, None, {}, None
    if model is not None:
        tokenizer, normalizer, max_length, name = timed("load_model", lambda: load_vocabulary(model))
        found, token_lengths, unk = timed("vocabulary", lambda: vocabulary_findings(corpus, tokenizer, normalizer))
        findings += found
    findings += timed("lengths", lambda: length_findings(corpus, token_lengths, max_length))
    findings += timed("script", lambda: script_findings(corpus))
    noise, top = timed("noise", lambda: noise_findings(corpus, top_terms))
    findings += noise
    findings.sort(key=lambda f: SEVERITIES.index(f.severity))
    lengths = length_summary(corpus)
    summary = {}
    for split, examples in corpus.splits.items():
        report = (reports or {}).get(split)
        summary[split] = {**(sources or {}).get(split, {"path": "", "format": ""}), "examples": len(examples),
                          "labels": dict(corpus.labels(split).most_common()), "lengths": lengths[split],
                          "reader": report.as_dict() if report else None}
    return DataCheck(kind, summary, findings, name, unk, top, round(time.perf_counter() - start, 2), timings)


def check_data(train: str | Path, dev: str | Path | None = None, test: str | Path | None = None, *, kind: str | None = None,
               format: str | None = None, options: dict[str, Any] | None = None, model: str | Path | None = None,
               data_root: str | Path | None = None, **settings: Any) -> DataCheck:
    """Read ``train`` (and ``dev``, ``test``: files or catalogue ids) and run every check on them.

    ``format``/``options`` are the reader's (for files); ``kind`` (ner, cls, pair) is needed only
    when neither the format nor the extension tells. ``settings`` go to :func:`check_examples`
    (``max_examples``, ``top_terms``, ``near_threshold``).

    >>> result = check_data("train.tsv", dev="dev.tsv", kind="cls", model="sentiment")   # doctest: +SKIP
    >>> result.counts()                                                                  # doctest: +SKIP
    {'error': 1, 'warning': 3, 'info': 4}
    """
    start = time.perf_counter()
    splits, reports, sources = {}, {}, {}
    for name, ref in (("train", train), ("dev", dev), ("test", test)):
        if ref is None:
            continue
        found, examples, report, where = read_split(ref, kind, format, options, data_root)
        if kind and found != kind:
            raise InputError(f"{ref} holds {found} data, not {kind}: check --kind and the file")
        kind = found
        splits[name], reports[name], sources[name] = examples, report, where
    result = check_examples(splits, kind, reports=reports, model=model, sources=sources, **settings)  # type: ignore[arg-type]
    result.timings = {"read": round(time.perf_counter() - start - result.seconds, 3), **result.timings}
    result.seconds = round(time.perf_counter() - start, 2)
    return result


# ------------------------------------------------------------------ command line


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data check`` to the ``toolkit`` command's ``subparsers``.

    Example:
        >>> parser = argparse.ArgumentParser(prog="toolkit")
        >>> register_cli(parser.add_subparsers(dest="command", required=True))
        >>> parser.parse_args(["data", "check", "train.tsv", "--kind", "cls"]).max_examples
        5
    """
    from toolkit.cli_io import positive_int

    p = subparsers.add_parser("data", help="look at corpus files before training on them")
    sub = p.add_subparsers(dest="data_command", required=True)
    c = sub.add_parser("check", help="report label problems, duplicates, overlap, odd characters and noise in corpus files",
                       description="Report what to clean in corpus files before training: label problems, duplicates, "
                                   "train/dev/test overlap, length outliers, characters the vocabulary lacks, mixed scripts, "
                                   "invisible characters and noise terms, each with file:line locations.")
    c.add_argument("train", help="training file, or a catalogue id such as cmeee:train")
    c.add_argument("--dev", help="dev file or catalogue id (checked for overlap with train)")
    c.add_argument("--test", help="test file or catalogue id")
    c.add_argument("--kind", choices=["ner", "cls", "pair"], help="what the files hold, when neither --format nor the extension tells")
    c.add_argument("--format", help="reader of the files (columns, cmeee, json-spans, table-cls, json-cls, table-pair, json-pair, ...)")
    c.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="reader option, e.g. --option text_column=review (repeatable)")
    c.add_argument("--model", help=f"registered model, model folder or encoder folder whose vocabulary and max length to check against "
                   f"(default {DEFAULT_MODEL}, which has zh-e5-small-base's vocabulary; 'none' skips these checks)")
    c.add_argument("--data-root", help="corpus root for catalogue ids (default: $TOOLKIT_DATA_ROOT or ../shared/corpora)")
    c.add_argument("--json", metavar="FILE", help="also write the full report as JSON here")
    c.add_argument("--max-examples", type=positive_int, default=5, help="examples shown per finding (default 5)")
    c.add_argument("--top-terms", type=positive_int, default=20, help="top TF-IDF terms listed (default 20)")
    c.add_argument("--strict", action="store_true", help="exit with code 1 when a finding has severity 'error'")
    c.set_defaults(func=_cmd_data_check)


def _cmd_data_check(args: argparse.Namespace) -> int:
    from toolkit.cli_io import key_value
    from toolkit.cli_io import output, to_json
    from toolkit.errors import UnknownNameError

    model: str | None = args.model
    if model is None:
        from toolkit.registry import resolve

        try:
            resolve(DEFAULT_MODEL)
            model = DEFAULT_MODEL
        except (FileNotFoundError, UnknownNameError, ImportError) as err:
            logger.warning("vocabulary checks skipped: the default model %s is not available (%s); pass --model", DEFAULT_MODEL, err)
    elif model.lower() == "none":
        model = None
    result = check_data(args.train, args.dev, args.test, kind=args.kind, format=args.format,
                        options=dict(key_value(x) for x in args.option), model=model, data_root=args.data_root,
                        max_examples=args.max_examples, top_terms=args.top_terms)
    if args.json:
        with output(args.json) as out:
            out.write(to_json(result.to_dict(), args.json, indent=2) + "\n")
    print(result.to_markdown())
    return 1 if args.strict and result.counts()["error"] else 0


__all__ = ["DEFAULT_MODEL", "DataCheck", "Finding", "check_data", "check_examples", "load_vocabulary", "read_split",
           "reader_findings", "register_cli"]
