"""Issue #11 (pipeline side): entity boundaries, input checks, blank text, batch sizes, NaN outputs.

A context-free fake runner makes the entity tests exact: its emissions depend only on the token, so
"张三 李四" is one PER to the model unless the pipeline says where entities may not continue.
"""
from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest

from toolkit.kinds.decoding import TagDecoder
from toolkit.errors import InputError, ModelFolderError
from toolkit.text.normalize import NormalizationConfig, Normalizer
from toolkit.runtime.bundle import Bundle
from toolkit.runtime.pipeline import TextPipeline, build_pipeline
from toolkit.text.tags import tag_set
from toolkit.text.tokenization import TextTokenizer, entity_breaks, is_symbol, symbol_tokens


class CharRunner:
    """张/王 begin a PER; 三/四/李 and [UNK] (emoji) continue one; everything else is O."""

    def __init__(self, tokenizer: TextTokenizer, tags: list[str]) -> None:
        vocab = tokenizer.hf.get_vocab()
        self.tags, self.calls = tags, 0
        self.begin = [vocab[c] for c in "张王"]
        self.inside = [vocab[c] for c in "三四李"] + [tokenizer.unk_id]

    def run(self, batch, tasks):
        self.calls += 1
        ids = batch["input_ids"]
        em = np.zeros(ids.shape + (len(self.tags),))
        em[..., 0] = 1.0
        em[np.isin(ids, self.begin), self.tags.index("B-PER")] = 5.0
        em[np.isin(ids, self.inside), self.tags.index("I-PER")] = 5.0
        return {"ner": em}


@pytest.fixture(scope="module")
def tok(tiny_encoder):
    return TextTokenizer.from_pretrained(tiny_encoder)


@pytest.fixture
def exact(tok):
    tags = tag_set(["PER"], "BIO")
    T = len(tags)
    dec = TagDecoder(tags, "BIO", np.zeros((T, T)), np.zeros(T), np.zeros(T))
    return TextPipeline(Bundle.of(tok, NormalizationConfig(), 16, {"ner": ("tagger", dec)}), CharRunner(tok, tags))


def spans(entities):
    return [(e.text, e.start, e.end) for e in entities]


# ---------------------------------------------------------------- 6: entity boundaries
@pytest.mark.parametrize("sep", ["\n", "\r\n", "\n\n", "\u2028", "\u2029", "\r", "\x0b", " ", "\u3000", "\t", " \n "])
def test_entity_never_crosses_a_line_break_or_a_space_between_han(exact, sep):
    text = "参会：张三" + sep + "李四"
    found = exact(text)
    assert spans(found) == [("张三", 3, 5), ("李四", 5 + len(sep), 7 + len(sep))]
    assert all(text[e.start : e.end] == e.text for e in found)


def test_without_a_break_it_stays_one_entity(exact):
    assert spans(exact("张三李四")) == [("张三李四", 0, 4)]


def test_invisible_characters_are_no_break(exact):
    assert spans(exact("张\u200b三")) == [("张\u200b三", 0, 3)]


def test_breaks_are_read_in_the_original_text_with_exact_offsets(exact):
    text = "\ufeff張三\r\n李四\u3000王三"  # traditional script, BOM, CRLF, ideographic space
    found = exact(text)
    assert spans(found) == [("張三", 1, 3), ("李四", 5, 7), ("王三", 8, 10)]


@pytest.mark.parametrize("text", ["😷😷张三😷", "张三😷😷", "😷张三", "张😷三"])
def test_emoji_is_never_part_of_an_entity(exact, text):
    found = exact(text)
    assert found and all(not any(is_symbol(c) for c in e.text) for e in found)
    assert all(text[e.start : e.end] == e.text for e in found)


def test_a_symbol_inside_a_mixed_token_is_trimmed(exact):
    text = "张三CT😷"  # "CT😷" is one [UNK] token that continues the name
    (entity,) = exact(text)
    assert entity.text == "张三CT" and text[entity.start : entity.end] == entity.text


def test_spaces_between_latin_letters_or_digits_are_no_break():
    norm = Normalizer()("New York 2 mg 张三 李四 3 天")
    offsets = np.array([[0, 3], [4, 8], [9, 10], [11, 13], [14, 15], [15, 16], [17, 18], [18, 19], [20, 21], [22, 23]])
    assert entity_breaks(norm, offsets).tolist() == [False, False, False, False, False, False, True, False, False, False]


def test_symbol_tokens_and_units():
    assert [is_symbol(c) for c in "😷✈℃㎎°A发+"] == [True, True, False, False, False, False, False, False]
    assert symbol_tokens("😷发", np.array([[0, 1], [1, 2]])).tolist() == [True, False]


def brute_force_span_prob(dec: TagDecoder, em: np.ndarray, span: tuple[int, int, str]) -> float:
    """P(the span is exactly there) by enumerating every tag path of the constrained CRF."""
    p = dec.params
    total, hit = 0.0, 0.0
    for path in itertools.product(range(len(dec.tags)), repeat=em.shape[0]):
        score = p.start[path[0]] + p.end[path[-1]] + sum(em[t, k] for t, k in enumerate(path))
        score += sum(p.trans[a, b] for a, b in zip(path, path[1:]))
        w = np.exp(score)
        total += w
        s, e, label = span
        tags = [dec.tags[k] for k in path]
        inside = tags[s] in (f"B-{label}", f"S-{label}") and all(t in (f"I-{label}", f"E-{label}") for t in tags[s + 1 : e])
        closed = e == len(tags) or tags[e] not in (f"I-{label}", f"E-{label}")
        hit += w * (inside and closed)
    return hit / total


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_decoder_splits_at_a_break_and_scores_the_returned_span(scheme):
    tags = tag_set(["X"], scheme)
    rng = np.random.default_rng(0)
    T = len(tags)
    dec = TagDecoder(tags, scheme, rng.normal(size=(T, T)), rng.normal(size=T), rng.normal(size=T))
    em = np.zeros((1, 4, T))
    em[0, 0, tags.index("B-X")] = 6.0
    for t in (1, 2, 3):
        em[0, t, tags.index("I-X")] = 6.0  # the model wants one entity over all four tokens
    breaks = np.array([[False, False, True, False]])
    (found,) = dec.decode(em, np.array([4]), breaks=breaks)
    assert [(s, e) for s, e, _, _ in found] == [(0, 2), (2, 4)]
    constrained = dec.constrain(em, breaks, None)[0]
    for s, e, label, score in found:
        assert score == pytest.approx(brute_force_span_prob(dec, constrained, (s, e, label)), abs=1e-6)


def test_shared_numpy_decoding_obeys_breaks_on_onnx_too(tiny_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import shutil

    import toolkit

    folder = shutil.copytree(tiny_folder, tmp_path / "tiny", ignore=shutil.ignore_patterns("onnx"))
    texts = ["张三\n李四", "北京 上海", "😷王五😷", "發熱\r\n咳嗽"]
    onnx_pipe = toolkit.load(str(folder), tasks="ner", runtime="onnx", export=True)
    torch_pipe = toolkit.load(str(folder), tasks="ner")
    for text, a, b in zip(texts, onnx_pipe(texts), torch_pipe(texts)):
        assert spans(a) == spans(b)
        assert all(text[e.start : e.end] == e.text and "\n" not in e.text and " " not in e.text for e in a)


# ---------------------------------------------------------------- 12: invalid text
def test_lone_surrogate_names_the_position(exact):
    with pytest.raises(InputError, match=r"the text has a lone surrogate '\\ud800' at character 2"):
        exact("发热\ud800咳嗽")


def test_one_bad_text_fails_the_whole_batch_before_any_model_work(exact):
    with pytest.raises(InputError, match="text 2 of the batch .* at character 1"):
        exact(["张三", "李四", "王\udc00"])
    assert exact.runner.calls == 0


def test_lone_surrogate_in_a_pair(tiny_model):
    pair = build_pipeline(tiny_model, ["match"])
    with pytest.raises(InputError, match="side b of pair 1 of the batch .* at character 0"):
        pair([("发热", "咳嗽"), ("头痛", "\ud83d")])


# ---------------------------------------------------------------- 13: blank text
BLANK = {"label": None, "score": None, "scores": {}}


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\u200b\ufeff"])
def test_classifier_says_blank_text_has_no_label(tiny_model, text):
    assert build_pipeline(tiny_model, ["sentiment"])(text) == BLANK


def test_blank_texts_in_a_batch_skip_the_model(tiny_model):
    multi = build_pipeline(tiny_model, ["ner", "sentiment"])
    out = multi(["", "服务很好", " "])
    assert out[0] == {"ner": [], "sentiment": BLANK} and out[2] == out[0]
    assert out[1] == multi("服务很好") and out[1]["sentiment"]["label"] in {"neg", "pos"}


@pytest.mark.parametrize("pair", [("", "咳嗽"), ("发热", "  "), ("", "")])
def test_matcher_says_a_pair_with_a_blank_side_has_no_label(tiny_model, pair):
    pipe = build_pipeline(tiny_model, ["match"])
    assert pipe(pair) == BLANK
    assert pipe([("发热", "咳嗽"), pair])[1] == BLANK
    assert pipe([("发热", "咳嗽"), pair])[0] == pipe(("发热", "咳嗽"))


# ---------------------------------------------------------------- 8: batch_size
@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "8"])
def test_batch_size_must_be_a_positive_int(tiny_model, bad):
    for tasks, arg in ((["ner"], "发热"), (["sentiment"], "发热"), (["match"], ("发热", "咳嗽"))):
        pipe = build_pipeline(tiny_model, tasks)
        with pytest.raises(InputError, match="batch_size must be a positive integer"):
            pipe(arg, batch_size=bad)
        with pytest.raises(InputError, match="batch_size must be a positive integer"):
            build_pipeline(tiny_model, tasks, batch_size=bad)
    with pytest.raises(InputError, match="batch_size"):
        build_pipeline(tiny_model)("发热", batch_size=bad)


def test_numpy_integers_are_fine(tiny_model):
    pipe = build_pipeline(tiny_model, ["ner"], batch_size=np.int64(2))
    assert pipe(["发热", "张三"], batch_size=np.int32(1)) == pipe(["发热", "张三"])


# ---------------------------------------------------------------- 4: non-finite outputs
@pytest.mark.parametrize("task,arg", [("ner", "张三在北京"), ("sentiment", "服务很好"), ("match", ("发热", "咳嗽"))])
def test_nan_outputs_raise_naming_the_model(tiny_model, task, arg):
    import torch

    broken = copy.deepcopy(tiny_model)
    with torch.no_grad():
        next(broken.heads[task].parameters()).fill_(float("nan"))
    with pytest.raises(ModelFolderError, match=rf"model 'tiny': head '{task}' returned non-finite values.*corrupted.*toolkit info"):
        build_pipeline(broken, [task])(arg)


def test_nan_on_another_runtime_names_its_graph(tok):
    class NanRunner:
        path = "/models/tiny/onnx/model.onnx"

        def run(self, batch, tasks):
            return {"ner": np.full(batch["input_ids"].shape + (3,), np.nan, dtype=np.float32)}

    tags = tag_set(["PER"], "BIO")
    dec = TagDecoder(tags, "BIO", np.zeros((3, 3)), np.zeros(3), np.zeros(3))
    pipe = TextPipeline(Bundle.of(tok, NormalizationConfig(), 16, {"ner": ("tagger", dec)}), NanRunner())
    with pytest.raises(ModelFolderError, match="/models/tiny/onnx/model.onnx"):
        pipe("张三")

