"""Character- and word-level checks of corpus texts, for :mod:`toolkit.data.check`.

* :func:`invisible_chars`: zero-width characters, BOM, bidi marks, C0/C1 controls (tab included,
  ``\\n`` not) and special spaces (U+00A0, U+3000 ...), by name;
* :func:`traditional_chars`: the characters OpenCC ``t2s`` changes (traditional-only forms);
* :func:`stray_whitespace`: leading/trailing whitespace, runs of spaces, a space between two
  Chinese characters;
* :func:`noise_terms`: terms ranked by TF-IDF over jieba words (HTML tags and entities, URLs,
  e-mail addresses, phone numbers and mojibake are kept whole), each flagged when it looks like noise (:func:`noise_flag`);
* :func:`boilerplate`: clauses repeated verbatim across many texts;
* :func:`script_findings`, :func:`vocabulary_findings`, :func:`noise_findings`: the checks of
  ``toolkit data check`` built on them (see :mod:`toolkit.data.check_rules`).

Example:
    >>> invisible_chars("发热\\u200b咳嗽\\u3000")
    ['U+200B ZERO WIDTH SPACE', 'U+3000 IDEOGRAPHIC SPACE']
    >>> noise_flag("http://t.cn/abc"), noise_flag("发热")
    ('url', None)
"""
from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections import Counter
from typing import Any, Callable, Sequence

from toolkit.data.check_rules import Corpus, Finding, Severity, instance
from toolkit.data.examples import PairExample

logger = logging.getLogger(__name__)

# Invisible or special characters: C0 controls but \n, DEL and C1 controls, no-break and other
# special spaces, soft hyphen, zero-width and bidi marks, variation selectors, BOM, Hangul fillers.
_INVISIBLE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u00a0\u00ad\u034f\u061c\u115f\u1160\u1680\u180e\u2000-\u200f"
    "\u2028-\u202f\u205f-\u206f\u3000\u3164\ufe00-\ufe0f\ufeff\ufff9-\ufffb]"
)
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_STRAY = re.compile(rf"^\s|\s$| {{2,}}|(?<=[{_CJK}])[ \t\u3000\u00a0]+(?=[{_CJK}])")

# Terms kept whole (not cut by jieba), with their flag.
NOISE_PATTERNS: dict[str, re.Pattern] = {
    "markup": re.compile(r"</?[A-Za-z][A-Za-z0-9]{0,10}(?:\s[^<>]{0,60})?/?>|&(?:[A-Za-z]{2,8}|#\d{2,5});"),
    "url": re.compile(r"(?:https?://|www\.)[^\s\u3000-\u303f\uff00-\uffef" + _CJK + r"]+", re.IGNORECASE),
    "email": re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"),
    "phone": re.compile(r"(?<![\d.])(?:1[3-9]\d{9}|0\d{2,3}-\d{7,8}|400-?\d{3}-?\d{4})(?![\d.])"),
    "mojibake": re.compile("\ufffd+|(?:锟斤拷)+|烫烫烫+|屯屯屯+|ï»¿|â€.|(?:[\u00c2-\u00ef][\u0080-\u00bf])+"),
}
# Words that mark advertising or contact boilerplate (a hint: a review may say 包邮 for real).
AD_WORDS = ("微信", "加微", "扫码", "二维码", "公众号", "点击链接", "包邮", "促销", "优惠券", "红包", "抽奖",
            "客服电话", "咨询热线", "官网", "广告", "加群", "招商", "代购", "QQ群", "淘宝店")
_CLAUSE = re.compile(r"[。！？!?；;\n]+")
MIN_BOILERPLATE_CHARS = 12


def char_name(ch: str) -> str:
    """``"U+200B ZERO WIDTH SPACE"``; controls, which have no name, as ``"U+0009 <control>"``.

    >>> char_name("\\t")
    'U+0009 <control>'
    """
    return f"U+{ord(ch):04X} {unicodedata.name(ch, '<control>')}"


def invisible_chars(text: str) -> list[str]:
    """Names (:func:`char_name`) of the invisible, control and special-space characters of ``text``, in order."""
    return [char_name(m.group()) for m in _INVISIBLE.finditer(text)]


def traditional_chars(text: str, simplified: str) -> list[str]:
    """Characters of ``text`` that its ``t2s`` conversion ``simplified`` changed (traditional forms).

    Compared position by position when the lengths agree; otherwise the characters of ``text``
    missing from ``simplified``.

    >>> traditional_chars("醫院門診", "医院门诊")
    ['醫', '門', '診']
    """
    if text == simplified:
        return []
    if len(text) == len(simplified):
        return [a for a, b in zip(text, simplified) if a != b]
    kept = set(simplified)
    return [c for c in text if c not in kept]


def stray_whitespace(text: str) -> str | None:
    """What is stray about ``text``'s whitespace, or ``None``.

    >>> stray_whitespace(" 发热"), stray_whitespace("张三 李四"), stray_whitespace("CT 正常")
    ('leading or trailing whitespace', 'space between Chinese characters', None)
    """
    m = _STRAY.search(text)
    if m is None:
        return None
    if m.start() == 0 and text[:1].isspace() or m.end() == len(text) and text[-1:].isspace():
        return "leading or trailing whitespace"
    return "run of spaces" if m.group().startswith("  ") else "space between Chinese characters"


def noise_flag(term: str) -> str | None:
    """``markup``, ``url``, ``email``, ``phone``, ``mojibake`` or ``ad`` when ``term`` looks like noise, else ``None``.

    >>> noise_flag("锟斤拷"), noise_flag("加微信"), noise_flag("a@b.com"), noise_flag("<sub>")
    ('mojibake', 'ad', 'email', 'markup')
    """
    for flag, pattern in NOISE_PATTERNS.items():
        if pattern.fullmatch(term):
            return flag
    if any(word in term for word in AD_WORDS):
        return "ad"
    return None


def _terms(text: str, cut: Callable[[str], list[str]]) -> list[str]:
    """Noise-pattern matches whole, then jieba words of at least two characters holding a letter or digit."""
    found: list[str] = []
    for pattern in NOISE_PATTERNS.values():
        found.extend(m.group() for m in pattern.finditer(text))
        text = pattern.sub(" ", text)
    words = [w for w in cut(text) if len(w.strip()) >= 2 and any(c.isalnum() for c in w) and not w.isdigit()]
    return found + words


def noise_terms(texts: Sequence[str], top_k: int = 20) -> tuple[list[dict], list[dict]]:
    """``(top, flagged)``: the ``top_k`` terms of ``texts`` by TF-IDF, and every term :func:`noise_flag`
    flags, best first; each ``{"term", "score", "count", "texts", "flag"}``.

    A term's score is the sum over texts of ``tf * idf``, with ``tf`` its share of the text's terms
    and ``idf = log((1 + N) / (1 + df)) + 1`` (smoothed, as scikit-learn does). Words come from
    jieba's dictionary (``HMM=False``: no guessed words, same result every run).

    >>> top, flagged = noise_terms(["详情见 http://x.cn 谢谢", "发热三天"], top_k=2)   # doctest: +SKIP
    >>> flagged[0]["term"], flagged[0]["flag"]                                        # doctest: +SKIP
    ('http://x.cn', 'url')
    """
    try:
        import jieba
    except ImportError as err:  # pragma: no cover - jieba is a dependency
        raise ImportError("the noise-term check needs jieba: pip install jieba") from err
    jieba.setLogLevel(logging.WARNING)

    def cut(text: str) -> list[str]:
        return jieba.lcut(text, HMM=False)

    score: Counter[str] = Counter()
    count: Counter[str] = Counter()
    df: Counter[str] = Counter()
    per_text = []
    for text in texts:
        terms = Counter(_terms(text, cut))
        per_text.append(terms)
        df.update(terms.keys())
        count.update(terms)
    n = len(texts)
    idf = {t: math.log((1 + n) / (1 + d)) + 1 for t, d in df.items()}
    for terms in per_text:
        total = sum(terms.values())
        for t, c in terms.items():
            score[t] += c / total * idf[t]

    def row(term: str) -> dict:
        return {"term": term, "score": round(score[term], 3), "count": count[term], "texts": df[term], "flag": noise_flag(term)}

    ranked = sorted(score, key=lambda t: (-score[t], t))
    top = [row(t) for t in ranked[:top_k]]
    flagged = [r for r in (row(t) for t in ranked) if r["flag"]]
    return top, flagged


def boilerplate(texts: Sequence[str], min_texts: int | None = None) -> list[tuple[str, int]]:
    """Clauses of at least :data:`MIN_BOILERPLATE_CHARS` characters that recur verbatim, as part of a
    longer text, in at least ``min_texts`` texts (default: 5, or 0.2% of the texts if more); most
    frequent first, with the number of texts.

    >>> boilerplate(["发热。本文仅供参考请以医生意见为准", "咳嗽。本文仅供参考请以医生意见为准"], min_texts=2)
    [('本文仅供参考请以医生意见为准', 2)]
    """
    min_texts = min_texts or max(5, math.ceil(0.002 * len(texts)))
    seen: Counter[str] = Counter()
    for text in texts:
        clauses = {c.strip() for c in _CLAUSE.split(text)}
        seen.update(c for c in clauses if len(c) >= MIN_BOILERPLATE_CHARS and c != text.strip())
    return sorted(((c, n) for c, n in seen.items() if n >= min_texts), key=lambda kv: (-kv[1], kv[0]))


# ------------------------------------------------------------------ characters and words


def _per_text(corpus: Corpus, check: str, severity: Severity, title: str, found: dict[int, list[str]],
              extra: dict[str, Any] | None = None) -> list[Finding]:
    """A finding over texts: ``found`` maps a text's index in :attr:`Corpus.texts` to what it holds."""
    if not found:
        return []
    counts = Counter(x for xs in found.values() for x in xs)
    rows = [instance(corpus.texts[i][1], corpus.texts[i][0], ", ".join(dict.fromkeys(xs)))
            for i, xs in list(found.items())[: corpus.max_examples]]
    return [Finding(check, severity, title.format(n=len(found)), len(found), rows,
                    {"counts": dict(counts.most_common(50)), **(extra or {})})]


def script_findings(corpus: Corpus) -> list[Finding]:
    """Traditional characters (OpenCC ``t2s`` changes the text), invisible/control characters, stray whitespace."""
    texts = [t for t, _, _ in corpus.texts]
    trad = {i: xs for i, (t, s) in enumerate(zip(texts, corpus.simplified)) if (xs := traditional_chars(t, s))}
    chinese = sum(1 for t in texts if any("\u4e00" <= c <= "\u9fff" for c in t))
    mixed = 0 < len(trad) < chinese
    out = _per_text(corpus, "traditional_script", "warning" if mixed else "info",
                    "{n} texts hold traditional characters" + (" (the corpus mixes scripts)" if mixed else ""), trad,
                    {"texts_with_chinese": chinese, "mixed": mixed})
    invisible = {i: xs for i, t in enumerate(texts) if (xs := invisible_chars(t))}
    out += _per_text(corpus, "invisible_chars", "warning", "{n} texts hold invisible, control or special-space characters", invisible)
    stray = {i: [x] for i, t in enumerate(texts) if (x := stray_whitespace(t))}
    out += _per_text(corpus, "stray_whitespace", "info", "{n} texts with stray whitespace", stray)
    return out


def vocabulary_findings(corpus: Corpus, tokenizer: Any, normalizer: Any) -> tuple[list[Finding], list[int], dict]:
    """Characters the model's vocabulary lacks (``[UNK]`` after its normalisation), the token count of
    each example (with special tokens) and the ``[UNK]`` rates."""
    from toolkit.vocab.scan import UnkRate, find_new_characters, unk_rate

    normalized = [normalizer(t).text for t, _, _ in corpus.texts]
    sizes, with_unk = [], []
    for start in range(0, len(normalized), 512):  # one pass over everything; the [UNK] scans see only texts with one
        for n, (ids, _) in enumerate(tokenizer.encode(normalized[start:start + 512]), start):
            sizes.append(len(ids))
            if (ids == tokenizer.unk_id).any():
                with_unk.append(normalized[n])
    found = unk_rate(with_unk, tokenizer)
    rate = UnkRate(len(normalized), sum(sizes), found.unk_tokens, sum(len(t) - sum(c.isspace() for c in t) for t in normalized),
                   found.unk_chars)
    chars, _ = find_new_characters(with_unk, tokenizer)
    lengths, pos = [], 0
    for _, ex in corpus.examples():
        if isinstance(ex, PairExample):
            lengths.append(sizes[pos] + sizes[pos + 1] + 3)
            pos += 2
        else:
            lengths.append(sizes[pos] + 2)
            pos += 1
    out = []
    if chars:
        top = chars[: corpus.max_examples]
        first = {c.char: next(i for i, t in enumerate(normalized) if c.char in t) for c in top}
        rows = [instance(corpus.texts[first[c.char]][1], corpus.texts[first[c.char]][0], f"{c.char!r} x {c.count}") for c in top]
        severity: Severity = "warning" if rate.char_rate > 0.001 else "info"
        out.append(Finding("unknown_chars", severity, f"{len(chars)} characters are not in the model's vocabulary "
                           f"({rate.unk_tokens} [UNK] tokens, {rate.token_rate:.3%} of tokens)", len(chars), rows,
                           {"top": {c.char: c.count for c in chars[:50]}, "unk": rate.to_dict()}))
    return out, lengths, rate.to_dict()


def noise_findings(corpus: Corpus, top_k: int = 20) -> tuple[list[Finding], list[dict]]:
    """Terms flagged as noise among the TF-IDF ranking of jieba words (and the top ``top_k`` terms), and
    clauses repeated verbatim across texts (boilerplate)."""
    texts = [t for t, _, _ in corpus.texts]
    top, flagged = noise_terms(texts, top_k)
    out = []
    if flagged:
        rows = []
        for row in flagged[: corpus.max_examples]:
            i = next(i for i, t in enumerate(texts) if row["term"] in t)
            rows.append(instance(corpus.texts[i][1], row["term"], f"{row['flag']}: {row['count']} times in {row['texts']} texts"))
        severity: Severity = "warning" if any(r["flag"] != "ad" for r in flagged) else "info"
        out.append(Finding("noise_terms", severity, f"{len(flagged)} noise terms (markup, URLs, e-mails, phone numbers, "
                           f"mojibake, ad words) in {sum(r['texts'] for r in flagged)} texts", len(flagged), rows,
                           {"terms": flagged[:50], "by_flag": dict(Counter(r["flag"] for r in flagged))}))
    repeated = boilerplate(texts)
    if repeated:
        rows = []
        for clause, n in repeated[: corpus.max_examples]:
            i = next(i for i, t in enumerate(texts) if clause in t)
            rows.append(instance(corpus.texts[i][1], clause, f"in {n} texts"))
        out.append(Finding("boilerplate", "info", f"{len(repeated)} clauses repeat verbatim across many texts", len(repeated),
                           rows, {"clauses": dict(repeated[:50])}))
    return out, top


__all__ = ["AD_WORDS", "NOISE_PATTERNS", "boilerplate", "char_name", "invisible_chars", "noise_flag",
           "noise_findings", "noise_terms", "script_findings", "stray_whitespace", "traditional_chars", "vocabulary_findings"]
