from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.text.tags import (
    convert_tags,
    detect_scheme,
    flatten_spans,
    is_valid,
    spans_to_tags,
    tag_set,
    tags_to_spans,
    transition_mask,
)

SCHEMES = ["BIO", "BIOES", "BMES"]


@st.composite
def flat_spans(draw, max_len=30):
    n = draw(st.integers(1, max_len))
    cuts = sorted(set(draw(st.lists(st.integers(0, n), max_size=10))) | {0, n})
    spans = []
    for a, b in zip(cuts, cuts[1:]):
        if draw(st.booleans()):
            spans.append((a, b, draw(st.sampled_from(["PER", "LOC"]))))
    return n, spans


@pytest.mark.parametrize("scheme", SCHEMES)
@settings(max_examples=100, deadline=None)
@given(data=flat_spans())
def test_round_trip_and_validity(scheme, data):
    n, spans = data
    tags = spans_to_tags(spans, n, scheme)
    decoded, repairs = tags_to_spans(tags, scheme)
    assert decoded == sorted(spans) and not repairs
    allowed, start, end = transition_mask(tag_set(["PER", "LOC"], scheme), scheme)
    ids = [tag_set(["PER", "LOC"], scheme).index(t) for t in tags]
    assert start[ids[0]] and end[ids[-1]]
    assert all(allowed[a, b] for a, b in zip(ids, ids[1:]))


@pytest.mark.parametrize(
    "tags, scheme, spans, repairs",
    [
        (["O", "I-PER", "I-PER"], "BIO", [(1, 3, "PER")], {"inside without begin": 1}),
        (["B-PER", "I-LOC"], "BIO", [(0, 1, "PER"), (1, 2, "LOC")], {"inside without begin": 1}),
        (["B-PER", "M-PER", "O"], "BMES", [(0, 2, "PER")], {"missing end": 1}),
        (["B-PER", "E-PER", "S-LOC"], "BIOES", [(0, 2, "PER"), (2, 3, "LOC")], {}),
        (["E-PER"], "BMES", [(0, 1, "PER")], {"inside without begin": 1}),
    ],
)
def test_repairs_are_counted(tags, scheme, spans, repairs):
    got, counted = tags_to_spans(tags, scheme)
    assert got == spans and dict(counted) == repairs
    assert is_valid(tags, scheme) is (not repairs)


def test_unknown_tag_names_the_scheme():
    with pytest.raises(ValueError, match="not valid in the BIO scheme"):
        tags_to_spans(["B-PER", "M-PER"], "BIO")
    with pytest.raises(ValueError, match="unknown tag scheme"):
        tag_set(["X"], "IOB3")


def test_masks_forbid_inside_after_o_and_other_types():
    tags = tag_set(["PER", "LOC"], "BIO")
    allowed, start, end = transition_mask(tags, "BIO")
    i = tags.index
    assert not allowed[i("O"), i("I-PER")]
    assert not allowed[i("B-LOC"), i("I-PER")]
    assert allowed[i("B-PER"), i("I-PER")] and allowed[i("I-PER"), i("O")]
    assert not start[i("I-PER")]


def test_bioes_masks_forbid_unfinished_entities():
    tags = tag_set(["PER"], "BIOES")
    allowed, start, end = transition_mask(tags, "BIOES")
    i = tags.index
    assert not allowed[i("B-PER"), i("O")] and not end[i("B-PER")] and not end[i("I-PER")]
    assert allowed[i("B-PER"), i("E-PER")] and allowed[i("E-PER"), i("S-PER")]


def test_convert_and_detect():
    bio = ["B-PER", "I-PER", "O", "B-LOC"]
    bmes = convert_tags(bio, "BIO", "BMES")
    assert bmes == ["B-PER", "E-PER", "O", "S-LOC"]
    assert detect_scheme(bmes) == "BIOES" and detect_scheme(["B-X", "M-X", "E-X"]) == "BMES"
    assert detect_scheme(bio) == "BIO"


def test_overlapping_spans_need_flattening():
    with pytest.raises(ValueError, match="flatten"):
        spans_to_tags([(0, 3, "dis"), (1, 2, "bod")], 4)
    kept, dropped = flatten_spans([(0, 3, "dis"), (1, 2, "bod"), (3, 4, "sym"), (0, 3, "dis")])
    assert kept == [(0, 3, "dis"), (3, 4, "sym")] and dropped == [(1, 2, "bod")]
