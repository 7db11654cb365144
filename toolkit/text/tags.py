"""Tag schemes for sequence labelling: BIO, BIOES and BMES.

A span is ``(start, end, label)`` with ``end`` exclusive, in whatever unit the tags are in
(characters in a corpus file, tokens inside a model). Three jobs live here:

* :func:`spans_to_tags` / :func:`tags_to_spans` convert between the two views. Decoding is lenient
  and **counts every repair** it makes (``I-X`` with no ``B-X`` before it, an entity that never saw
  its ``E-X`` ...), so readers can report them instead of dropping anything silently.
* :func:`transition_mask` says which tag may follow which; the CRF decoder uses it so that it can
  never emit an invalid sequence.
* :func:`flatten_spans` chooses a flat subset of nested spans (CMeEE nests) for a flat tagger.

Example:
    >>> tags = spans_to_tags([(0, 2, "PER")], 3, "BIOES")
    >>> tags
    ['B-PER', 'E-PER', 'O']
    >>> tags_to_spans(tags, "BIOES")[0]
    [(0, 2, 'PER')]
"""
from __future__ import annotations

import functools
from collections import Counter
from typing import Iterable, Literal, Sequence

import numpy as np

Scheme = Literal["BIO", "BIOES", "BMES"]
SCHEMES: dict[str, dict[str, str]] = {
    # role -> prefix. Roles: begin, inside, end, single.
    "BIO": {"begin": "B", "inside": "I"},
    "BIOES": {"begin": "B", "inside": "I", "end": "E", "single": "S"},
    "BMES": {"begin": "B", "inside": "M", "end": "E", "single": "S"},
}
Span = tuple[int, int, str]


def check_scheme(scheme: str) -> str:
    """Return ``scheme`` upper-cased, or raise ``ValueError`` listing the known schemes."""
    name = str(scheme).upper()
    if name not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    return name


def tag_set(labels: Iterable[str], scheme: Scheme = "BIO") -> list[str]:
    """All tags of ``scheme`` for entity ``labels``, ``"O"`` first, in a fixed order.

    >>> tag_set(["LOC"], "BMES")
    ['O', 'B-LOC', 'M-LOC', 'E-LOC', 'S-LOC']
    """
    roles = SCHEMES[check_scheme(scheme)]
    order = [roles[r] for r in ("begin", "inside", "end", "single") if r in roles]
    return ["O"] + [f"{p}-{label}" for label in labels for p in order]


@functools.lru_cache(maxsize=4096)  # called once per token when decoding: tag sets are small
def parse_tag(tag: str, scheme: Scheme) -> tuple[str | None, str | None]:
    """Split ``tag`` into ``(role, label)``; ``("O", None)`` gives ``(None, None)``.

    Raises ``ValueError`` (naming the scheme's prefixes) for a tag that the scheme does not have.
    """
    if tag == "O":
        return None, None
    prefix, sep, label = tag.partition("-")
    roles = {p: r for r, p in SCHEMES[check_scheme(scheme)].items()}
    if not sep or not label or prefix not in roles:
        allowed = ", ".join(f"{p}-TYPE" for p in roles)
        raise ValueError(f"tag {tag!r} is not valid in the {scheme} scheme (expected O, {allowed})")
    return roles[prefix], label


def detect_scheme(tags: Iterable[str]) -> Scheme:
    """Guess the scheme from the prefixes used: ``M-`` means BMES, ``E-``/``S-`` BIOES, else BIO."""
    prefixes = {t.partition("-")[0] for t in tags if t != "O"}
    if "M" in prefixes:
        return "BMES"
    if prefixes & {"E", "S"}:
        return "BIOES"
    return "BIO"


def spans_to_tags(spans: Iterable[Span], length: int, scheme: Scheme = "BIO") -> list[str]:
    """Tags for ``length`` positions from non-overlapping ``spans``.

    Raises ``ValueError`` for an empty, out-of-range or overlapping span (flatten nested spans with
    :func:`flatten_spans` first).
    """
    roles = SCHEMES[check_scheme(scheme)]
    tags = ["O"] * length
    for start, end, label in sorted(spans):
        if not 0 <= start < end <= length:
            raise ValueError(f"span {(start, end, label)} is empty or outside 0..{length}")
        if any(t != "O" for t in tags[start:end]):
            raise ValueError(f"span {(start, end, label)} overlaps another span; flatten nested spans first")
        if end - start == 1 and "single" in roles:
            tags[start] = f"{roles['single']}-{label}"
            continue
        tags[start] = f"{roles['begin']}-{label}"
        for i in range(start + 1, end):
            tags[i] = f"{roles['inside']}-{label}"
        if "end" in roles:
            tags[end - 1] = f"{roles['end']}-{label}"
    return tags


def tags_to_spans(tags: Sequence[str], scheme: Scheme = "BIO") -> tuple[list[Span], Counter]:
    """Decode ``tags`` into spans, repairing invalid sequences and counting each repair.

    Repairs (the keys of the returned ``Counter``):

    * ``"inside without begin"``: ``I-X``/``M-X``/``E-X`` after ``O`` or after another type starts
      a new ``X`` entity there;
    * ``"missing end"`` (BIOES/BMES): an entity cut off by ``O``, ``B`` or the end of the
      sequence before its ``E-X`` is kept as it stands.

    Unknown tags raise ``ValueError``.
    """
    scheme = check_scheme(scheme)
    has_end = "end" in SCHEMES[scheme]
    spans: list[Span] = []
    repairs: Counter = Counter()
    start, label = -1, None

    def close(i: int, complete: bool) -> None:
        nonlocal start, label
        if label is not None:
            if has_end and not complete:
                repairs["missing end"] += 1
            spans.append((start, i, label))
        start, label = -1, None

    for i, tag in enumerate(tags):
        role, lab = parse_tag(tag, scheme)
        if role is None:
            close(i, False)
        elif role in ("begin", "single"):
            close(i, False)
            start, label = i, lab
            if role == "single":
                close(i + 1, True)
        else:  # inside / end
            if label != lab:
                close(i, False)
                repairs["inside without begin"] += 1
                start, label = i, lab
            if role == "end":
                close(i + 1, True)
    close(len(tags), False)
    return spans, repairs


def transition_mask(tags: Sequence[str], scheme: Scheme) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which tag sequences are valid: ``(allowed[prev, next], allowed_start, allowed_end)``.

    BIO: ``I-X`` only after ``B-X`` or ``I-X``. BIOES/BMES: after ``B-X`` or ``I-X`` only
    ``I-X``/``E-X``; ``I-X``/``E-X`` only after ``B-X``/``I-X``; a sequence may not start inside an
    entity nor end in the middle of one.
    """
    scheme = check_scheme(scheme)
    parsed = [parse_tag(t, scheme) for t in tags]
    n = len(tags)
    allowed = np.zeros((n, n), dtype=bool)
    has_end = "end" in SCHEMES[scheme]
    for i, (r1, l1) in enumerate(parsed):
        open_after = r1 in ("begin", "inside") and has_end
        for j, (r2, l2) in enumerate(parsed):
            continues = r2 in ("inside", "end")
            if continues:
                allowed[i, j] = r1 in ("begin", "inside") and l1 == l2
            else:
                allowed[i, j] = not open_after
    start = np.array([r not in ("inside", "end") for r, _ in parsed])
    end = np.array([not (has_end and r in ("begin", "inside")) for r, _ in parsed])
    return allowed, start, end


def is_valid(tags: Sequence[str], scheme: Scheme) -> bool:
    """True when ``tags`` needs no repair under ``scheme`` (see :func:`transition_mask`)."""
    _, repairs = tags_to_spans(tags, scheme)
    return not repairs


def convert_tags(tags: Sequence[str], source: Scheme, target: Scheme) -> list[str]:
    """Re-write a tag sequence from one scheme into another (via spans)."""
    spans, _ = tags_to_spans(tags, source)
    return spans_to_tags(spans, len(tags), target)


def flatten_spans(spans: Iterable[Span], policy: Literal["longest", "first"] = "longest") -> tuple[list[Span], list[Span]]:
    """Choose non-overlapping spans for a flat tagger; returns ``(kept, dropped)``.

    ``"longest"`` keeps longer spans first (ties: earlier start, then label), ``"first"`` keeps
    spans in start order. Exact duplicates count once.

    >>> flatten_spans([(0, 4, "dis"), (0, 2, "bod")])
    ([(0, 4, 'dis')], [(0, 2, 'bod')])
    """
    unique = sorted(set(spans))
    if policy == "longest":
        order = sorted(unique, key=lambda s: (-(s[1] - s[0]), s[0], s[2]))
    elif policy == "first":
        order = unique
    else:
        raise ValueError(f"unknown flattening policy {policy!r}; use 'longest' or 'first'")
    taken: list[Span] = []
    dropped: list[Span] = []
    for span in order:
        if any(span[0] < t[1] and t[0] < span[1] for t in taken):
            dropped.append(span)
        else:
            taken.append(span)
    return sorted(taken), sorted(dropped)
