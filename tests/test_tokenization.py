from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.text.tokenization import TextTokenizer, align_spans, make_windows, sentence_breaks, token_types


@pytest.fixture(scope="module")
def tok(tiny_encoder):
    return TextTokenizer.from_pretrained(tiny_encoder)


def test_one_token_per_cjk_char_with_exact_offsets(tok):
    text = "患者CT检查"
    ids, offsets = tok.encode([text])[0]
    pieces = [text[s:e] for s, e in offsets]
    assert pieces == ["患", "者", "CT", "检", "查"]


@pytest.mark.parametrize("text", ["𠮷患者", "患㐀者", "ⅱ发热μ", "😀😀患者", "患 者\t发热", "a-b患者"])
def test_unknown_characters_never_shift_offsets(tok, text):
    ids, offsets = tok.encode([text])[0]
    assert np.all(offsets[:, 1] > offsets[:, 0])
    covered = "".join(text[s:e] for s, e in offsets)
    assert covered == "".join(text.split())
    for (s, e), i in zip(offsets, ids):
        if i != tok.unk_id:
            assert tok.hf.convert_ids_to_tokens(int(i)).lstrip("#") == text[s:e]


def test_pair_truncates_longest_first(tok):
    a, b = np.arange(10), np.arange(3)
    ids, segments = tok.pair(a, b, max_length=12)
    assert len(ids) == 12 and ids[0] == tok.cls_id and ids[-1] == tok.sep_id
    assert segments.tolist() == [0] + [1] * 6 + [0] + [2] * 3 + [0]
    assert token_types(segments).tolist() == [0] * 8 + [1] * 4
    _, only_a = tok.pair(a[:2], b[:0], max_length=12)
    assert token_types(only_a).tolist() == [0, 0, 0, 0, 1]


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 400), size=st.integers(1, 40), breaks=st.lists(st.integers(0, 400), max_size=30))
def test_windows_cover_and_owned_ranges_partition(n, size, breaks):
    windows = make_windows(n, size, breaks)
    assert all(w.end - w.start <= size for w in windows)
    owned = [i for w in windows for i in range(w.own_start, w.own_end)]
    assert owned == list(range(n)) or (n == 0 and windows[0].end == 0)
    assert all(w.start <= w.own_start <= w.own_end <= w.end for w in windows)


def test_windows_respect_sentences_when_they_fit():
    windows = make_windows(10, 5, breaks=[3, 6, 8])
    assert [(w.start, w.end) for w in windows] == [(0, 3), (3, 8), (8, 10)]


def test_sentence_breaks(tok):
    text = "发热。咳嗽\n胸痛！头痛"
    ids, offsets = tok.encode([text])[0]
    assert sentence_breaks(text, offsets) == [3, 5, 8]


def test_align_spans_reports_misaligned():
    offsets = np.array([[0, 1], [1, 3], [3, 4]])  # "患", "CT", "检"
    aligned, bad = align_spans(offsets, [(0, 3, "X"), (1, 2, "Y"), (3, 4, "Z")])
    assert aligned == [(0, 2, "X"), (2, 3, "Z")] and bad == [(1, 2, "Y")]


def test_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="fast"):
        TextTokenizer(Slow())
