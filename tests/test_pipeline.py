"""Pipelines on the tiny random model, and on a context-free fake runner for exact merge checks."""
from __future__ import annotations


import numpy as np
import pytest

from conftest import in_threads
from toolkit.kinds.decoding import TagDecoder
from toolkit.text.normalize import NormalizationConfig
from toolkit.runtime.bundle import Bundle
from toolkit.runtime.pipeline import Entity, PairPipeline, TextPipeline, build_pipeline
from toolkit.text.tags import tag_set
from toolkit.text.tokenization import TextTokenizer

TEXTS = ["患者三天前出现发热、咳嗽，既往有2型糖尿病史。", "张三在北京大学医院工作", "CT检查：胸部未见异常", "王", ""]


@pytest.fixture(scope="module")
def ner(tiny_model):
    return build_pipeline(tiny_model, ["ner"], batch_size=2)


@pytest.fixture(scope="module")
def multi(tiny_model):
    return build_pipeline(tiny_model, ["ner", "sentiment"])


def key(entities):
    return [(e.text, e.label, e.start, e.end) for e in entities]


def test_ner_returns_entities_with_exact_original_offsets(ner):
    for text in TEXTS:
        for e in ner(text):
            assert isinstance(e, Entity) and text[e.start : e.end] == e.text and 0 <= e.score <= 1


def test_traditional_and_invisible_input_maps_to_original(ner):
    simple = "张三在北京大学医院工作"
    trad = "張三在北京大學醫院工作"
    noisy = "\ufeff張\u200b三在北京大學醫院\u3000工作"
    base = ner(simple)
    assert base, "the sharpened random model finds entities"
    assert [(e.label, e.start, e.end) for e in ner(trad)] == [(e.label, e.start, e.end) for e in base]
    for e in ner(noisy):
        assert noisy[e.start : e.end] == e.text
    assert [e.label for e in ner(noisy)] == [e.label for e in base]


def test_batch_equals_one_by_one(ner):
    batched = ner(TEXTS)
    single = [ner(t) for t in TEXTS]
    assert [key(b) for b in batched] == [key(s) for s in single]
    for b, s in zip(batched, single):
        np.testing.assert_allclose([e.score for e in b], [e.score for e in s], atol=1e-4)


def test_decoding_batches_together_changes_nothing(ner, monkeypatch):
    import toolkit.runtime.pipeline as pipeline

    texts = TEXTS * 3 + ["发热" * 40]  # batches of 2 with different lengths, one long text in windows
    monkeypatch.setattr(pipeline, "DECODE_GROUP", 1)  # each batch decoded on its own
    alone = ner(texts)
    monkeypatch.setattr(pipeline, "DECODE_GROUP", 256)  # all batches decoded in one go
    together = ner(texts)
    assert [key(a) for a in alone] == [key(t) for t in together]
    np.testing.assert_allclose([e.score for a in alone for e in a], [e.score for t in together for e in t], rtol=1e-9)


@pytest.mark.parametrize("text", ["", "   ", "\u200b\ufeff", "\n\n"])
def test_blank_text_gives_no_entities(ner, text):
    assert ner(text) == []


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["ok", None]])
def test_non_text_is_a_type_error(ner, bad):
    with pytest.raises(TypeError, match="expected a str"):
        ner(bad)


def test_multitask_runs_requested_heads_in_one_pass(tiny_model, multi):
    calls = []
    original = tiny_model.encoder.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    tiny_model.encoder.forward = counting
    try:
        out = multi("张三在北京大学医院工作")
    finally:
        del tiny_model.encoder.forward
    assert set(out) == {"ner", "sentiment"} and len(calls) == 1
    assert out["sentiment"]["label"] in {"neg", "pos"}
    assert abs(sum(out["sentiment"]["scores"].values()) - 1) < 1e-6


def test_classifier_and_pair_pipelines(tiny_model):
    cls = build_pipeline(tiny_model, ["sentiment"])
    res = cls("服务很好")
    assert set(res) == {"label", "score", "scores"} and res["score"] == max(res["scores"].values())
    pair = build_pipeline(tiny_model, ["match"])
    assert isinstance(pair, PairPipeline)
    one = pair(("头痛怎么办", "头疼如何治疗"))
    assert pair("头痛怎么办", "头疼如何治疗") == one
    many = pair([("头痛怎么办", "头疼如何治疗"), ("发热", "咳嗽")])
    assert many[0]["label"] == one["label"] and np.isclose(many[0]["score"], one["score"], atol=1e-5)
    with pytest.raises(TypeError, match="pair"):
        pair(["only one"])


def test_combined_pipeline_dispatches_text_and_pairs(tiny_model):
    both = build_pipeline(tiny_model)
    assert set(both("发热")) == {"ner", "sentiment"}
    assert set(both(("发热", "咳嗽"))) == {"match"}  # keyed by task even when one pair head answers
    assert set(both(("发热", "咳嗽"))["match"]) == {"label", "score", "scores"}
    assert both("发热", "咳嗽") == both(("发热", "咳嗽"))
    assert [set(r) for r in both([("发热", "咳嗽"), ("头痛", "头疼")])] == [{"match"}, {"match"}]
    assert [set(r) for r in both(["发热", "咳嗽"])] == [{"ner", "sentiment"}] * 2


def test_threads_get_serial_results(ner):
    texts = [t * (i % 3 + 1) for i, t in enumerate(TEXTS * 4)]
    serial = [key(ner(t)) for t in texts]
    assert all(r == serial for r in in_threads(lambda: [key(ner(t)) for t in texts]))


def test_long_text_works(ner):
    import resource

    text = ("患者三天前出现发热、咳嗽，既往有2型糖尿病史。" * 4400)[:100_000]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    entities = ner(text, batch_size=64)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 300, f"peak memory grew by {grown_mb:.0f} MB on a 100k-character text"
    assert all(text[e.start : e.end] == e.text for e in entities)
    assert all(a.end <= b.start for a, b in zip(entities, entities[1:])), "no overlaps or duplicates"


# ---------------------------------------------------------------- exact merging, context-free runner
class CharRunner:
    """Emissions that depend only on the token: 张/王 begin a PER, 三/四 continue it."""

    def __init__(self, tokenizer: TextTokenizer, tags):
        self.tags = tags
        vocab = tokenizer.hf.get_vocab()
        self.begin = {vocab[c] for c in "张王"}
        self.inside = {vocab[c] for c in "三四"}

    def run(self, batch, tasks):
        ids = batch["input_ids"]
        em = np.zeros(ids.shape + (len(self.tags),))
        em[..., 0] = 1.0
        em[np.isin(ids, list(self.begin)), self.tags.index("B-PER")] = 5.0
        em[np.isin(ids, list(self.inside)), self.tags.index("I-PER")] = 5.0
        return {"ner": em}


@pytest.fixture(scope="module")
def exact(tiny_encoder):
    tok = TextTokenizer.from_pretrained(tiny_encoder)
    tags = tag_set(["PER"], "BIO")
    T = len(tags)
    dec = TagDecoder(tags, "BIO", np.zeros((T, T)), np.zeros(T), np.zeros(T))
    return TextPipeline(Bundle.of(tok, NormalizationConfig(), 16, {"ner": ("tagger", dec)}), CharRunner(tok, tags), batch_size=7)


@pytest.mark.parametrize("sep", ["。", "", "\n", "，"])
def test_windows_merge_without_duplicates_or_losses(exact, sep):
    unit = "张三在医院" + sep + "王四发热"
    text = unit * 500
    found = exact(text)
    expected = []
    for k in range(500):
        base = k * len(unit)
        expected.append(("张三", base, base + 2))
        w = base + len("张三在医院" + sep)
        expected.append(("王四", w, w + 2))
    assert [(e.text, e.start, e.end) for e in found] == expected


@pytest.mark.parametrize("before", range(14, 40))
def test_entity_across_a_window_edge_comes_back_whole(exact, before):
    """Windows of 14 tokens overlapping by 3: wherever a 10-token entity falls, it is found once, whole."""
    text = "的" * before + "张" + "三" * 9 + "的" * 15
    found = exact(text)
    assert [(e.text, e.start, e.end) for e in found] == [("张" + "三" * 9, before, before + 10)]


def test_combined_pipeline_takes_a_pair_as_two_arguments(tiny_model):
    both = build_pipeline(tiny_model)
    assert both("发热", "咳嗽") == both(("发热", "咳嗽"))
    assert both([["发热", "咳嗽"]]) == [both(("发热", "咳嗽"))]
    assert set(both(["发热", "咳嗽"])[0]) == {"ner", "sentiment"}


def test_classifier_reads_the_first_window_like_training(tiny_model):
    cls = build_pipeline(tiny_model, ["sentiment"])
    first = "服务很好，房间干净。" * 3
    assert len(first) >= cls.max_length - 2, "the texts differ only after the first window"
    assert cls(first + "太差了" * 40) == cls(first + "很好" * 40)
