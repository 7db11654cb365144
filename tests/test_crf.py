"""The numpy CRF decoder against pytorch-crf and against brute-force enumeration."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.kinds.crf import CRFParams, forward_backward, span_log_probs, viterbi
from toolkit.kinds.decoding import TagDecoder
from toolkit.text.tags import is_valid, parse_tag, tag_set, tags_to_spans, transition_mask


def unconstrained(trans, start, end):
    T = len(start)
    ones = np.ones(T, bool)
    return CRFParams.build(trans, start, end, np.ones((T, T), bool), ones, ones, ~ones)


def test_viterbi_matches_pytorch_crf():
    from torchcrf import CRF

    torch.manual_seed(0)
    crf = CRF(5, batch_first=True)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    emissions = torch.randn(4, 7, 5)
    lengths = torch.tensor([7, 3, 1, 5])
    mask = torch.arange(7)[None] < lengths[:, None]
    expected = crf.decode(emissions, mask=mask)
    params = unconstrained(crf.transitions.detach().numpy(), crf.start_transitions.detach().numpy(), crf.end_transitions.detach().numpy())
    got = viterbi(emissions.numpy(), lengths.numpy(), params)
    assert [p.tolist() for p in got] == expected


def test_log_partition_matches_pytorch_crf():
    from torchcrf import CRF

    torch.manual_seed(1)
    crf = CRF(4, batch_first=True)
    emissions = torch.randn(2, 6, 4)
    mask = torch.ones(2, 6, dtype=torch.bool)
    log_z = crf._compute_normalizer(emissions.transpose(0, 1), mask.transpose(0, 1)).detach().numpy()
    params = unconstrained(crf.transitions.detach().numpy(), crf.start_transitions.detach().numpy(), crf.end_transitions.detach().numpy())
    _, _, got = forward_backward(emissions.numpy(), np.array([6, 6]), params)
    np.testing.assert_allclose(got, log_z, rtol=1e-5)


@pytest.mark.parametrize("spread", [3.0, 400.0, 2000.0])  # 2000: the scaled recursion underflows and falls back to log space
def test_scaled_forward_backward_matches_log_space(spread):
    from toolkit.kinds.crf import _forward_backward_log

    tags = tag_set(["X", "Y"], "BIO")
    allowed, allowed_start, allowed_end = transition_mask(tags, "BIO")
    rng = np.random.default_rng(3)
    T = len(tags)
    p = CRFParams.build(rng.normal(0, 2, (T, T)), rng.normal(size=T), rng.normal(size=T), allowed, allowed_start, allowed_end, np.zeros(T, bool))
    em = rng.normal(0, spread, (5, 9, T))
    lengths = np.array([9, 4, 1, 0, 7])
    alpha, beta, log_z = forward_backward(em, lengths, p)
    ref_alpha, ref_beta, ref_z = _forward_backward_log(em, lengths, p)
    np.testing.assert_allclose(log_z, ref_z, rtol=1e-9)
    for ours, ref in ((alpha, ref_alpha), (beta, ref_beta)):
        for b, n in enumerate(lengths):  # states within 600 nats of each position's best (below that, both are "impossible")
            live = ref[b, :n] > ref[b, :n].max(axis=-1, keepdims=True) - 600
            np.testing.assert_allclose(ours[b, :n][live], ref[b, :n][live], rtol=1e-9)


@pytest.mark.parametrize("scheme", ["BIO", "BIOES", "BMES"])
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), length=st.integers(1, 12))
def test_constrained_decoding_never_emits_invalid_sequences(scheme, seed, length):
    rng = np.random.default_rng(seed)
    tags = tag_set(["A", "B"], scheme)
    T = len(tags)
    dec = TagDecoder(tags, scheme, rng.normal(size=(T, T)) * 5, rng.normal(size=T) * 5, rng.normal(size=T) * 5)
    emissions = rng.normal(size=(3, length, T)) * 5
    lengths = np.array([length, max(1, length // 2), 1])
    for path, n in zip(viterbi(emissions, lengths, dec.params), lengths):
        assert len(path) == n
        assert is_valid([tags[i] for i in path], scheme)


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_entity_score_is_the_exact_probability(scheme):
    """Brute force: sum P(y) over all valid sequences that contain the entity exactly."""
    rng = np.random.default_rng(3)
    tags = tag_set(["A", "B"], scheme)
    T, L = len(tags), 4
    dec = TagDecoder(tags, scheme, rng.normal(size=(T, T)), rng.normal(size=T), rng.normal(size=T))
    p = dec.params
    em = rng.normal(size=(L, T)) * 2
    scores = {}
    for seq in itertools.product(range(T), repeat=L):
        s = p.start[seq[0]] + em[0, seq[0]] + p.end[seq[-1]]
        s += sum(p.trans[a, b] + em[t + 1, b] for t, (a, b) in enumerate(zip(seq, seq[1:])))
        scores[seq] = s
    log_z = np.logaddexp.reduce(list(scores.values()))
    probs = {k: np.exp(v - log_z) for k, v in scores.items()}
    alpha, beta, lz = forward_backward(em[None], np.array([L]), p)
    assert np.isclose(lz[0], log_z)
    likely = [seq for seq in sorted(probs, key=probs.get, reverse=True) if probs[seq] > 1e-9][:20]
    checked = 0
    for seq in likely:
        for s, e, label in tags_to_spans([tags[i] for i in seq], scheme)[0]:
            exact = sum(pr for other, pr in probs.items() if (s, e, label) in tags_to_spans([tags[i] for i in other], scheme)[0])
            got = np.exp(span_log_probs(em[None], alpha, beta, lz, np.array([L]), np.array([seq]), [0], [s], [e], p)[0])
            assert np.isclose(got, exact, atol=1e-6)
            checked += 1
    assert checked >= 5


def test_decoder_reports_entities_with_scores_in_unit_interval():
    tags = tag_set(["X"], "BIO")
    dec = TagDecoder(tags, "BIO", np.zeros((3, 3)), np.zeros(3), np.zeros(3))
    em = np.zeros((2, 4, 3))
    em[0, 1, 1] = em[0, 2, 2] = em[0, 3, 0] = 8.0
    em[1, 0, 1] = 1.0
    out = dec.decode(em, np.array([4, 2]))
    assert [(s, e, lab) for s, e, lab, _ in out[0]] == [(1, 3, "X")]
    assert all(0.0 <= sc <= 1.0 for seq in out for *_, sc in seq)
    assert out[0][0][3] > 0.9
    assert dec.decode(np.zeros((0, 0, 3)), np.array([])) == []


def test_continuation_flags():
    tags = tag_set(["X"], "BIOES")
    dec = TagDecoder(tags, "BIOES", np.zeros((5, 5)), np.zeros(5), np.zeros(5))
    assert dec.params.continues.tolist() == [parse_tag(t, "BIOES")[0] in ("inside", "end") for t in tags]
    allowed, _, _ = transition_mask(tags, "BIOES")
    assert (dec.params.trans[~allowed] < -1e3).all()
