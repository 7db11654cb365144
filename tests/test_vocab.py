"""Vocabulary extension (toolkit.vocab.extend, toolkit.vocab.scan) on the tiny random model: no download, no data."""
from __future__ import annotations

import argparse
import doctest
import json
from pathlib import Path

import pytest
import torch

from toolkit import load
from toolkit.data.examples import NerExample, Span
from toolkit import kinds
from toolkit.train.features import FeatureReport, build_features
from toolkit.model.manifest import TaskSpec
from toolkit.text.normalize import NormalizationConfig, Normalizer
from toolkit.text.tokenization import TextTokenizer
from toolkit.vocab import extend as vocab_mod, scan as vocab_scan
from toolkit.vocab.extend import EmbeddingSources, TaggerBoundaryError, extend_tokenizer_json, extend_vocabulary
from toolkit.vocab.cli import register_cli
from toolkit.vocab.scan import added_token_boundaries, find_new_characters, mine_terms, unk_rate

from conftest import TASKS

# Written for these tests: rare CJK (𠮷 U+20BB7, 㐀 U+3400), a Roman numeral, Greek mu, unit squares,
# and a traditional character (醫) whose simplified form (医) the tiny vocabulary knows.
CORPUS = [
    "患者服用5㎎药物，每日10㎏。",
    "患者有ⅱ型糖尿病史，血压2ⅱ。",
    "5μg是μ的用量",
    "张三在北京醫院，𠮷和㐀。",
    "𠮷大学",
]
NEW = {"𠮷", "㐀", "ⅱ", "μ", "㎎", "㎏"}
PLAIN = ["张三在北京医院工作", "患者三天前出现发热、咳嗽", "李四和王五到上海", "北京大学医院"]
TERMS = ["糖尿病", "北京大学", "𠮷医"]
NER = [
    NerExample("北京大学医院", [Span(0, 2, "LOC")], "a:1"),              # 北京 inside 北京大学: 1 boundary
    NerExample("糖尿病患者", [Span(0, 3, "LOC")], "b:1"),                 # the whole term: fine
    NerExample("张三在北京大学", [Span(0, 2, "PER"), Span(3, 7, "ORG")], "c:1"),
    NerExample("北京大學", [Span(0, 2, "LOC")], "d:1"),                   # traditional, normalised first
    NerExample("有糖尿病", [Span(2, 3, "LOC")], "e:1"),                   # both boundaries inside 糖尿病
]


def _rows(folder: Path) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(folder / "encoder" / "model.safetensors"))["embeddings.word_embeddings.weight"]


def _vocab(folder: Path) -> dict[str, int]:
    data = json.loads((folder / "encoder" / "tokenizer.json").read_text(encoding="utf-8"))
    return {**data["model"]["vocab"], **{a["content"]: a["id"] for a in data["added_tokens"]}}


@pytest.fixture(scope="module")
def ext_chars(tiny_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("vocab") / "chars"
    return out, extend_vocabulary(tiny_folder, out, texts=CORPUS, min_count=1)


@pytest.fixture(scope="module")
def ext_terms(tiny_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("vocab") / "terms"
    return out, extend_vocabulary(tiny_folder, out, texts=CORPUS, terms=TERMS, min_count=1, ner_examples=NER)


def test_finds_unknown_characters_after_normalisation(tiny_model):
    chars, stats = find_new_characters(CORPUS, tiny_model.tokenizer, Normalizer(tiny_model.normalization))
    found = {c.char: c for c in chars}
    assert set(found) == NEW and "醫" not in found  # 醫 -> 医 (t2s) is known
    assert found["𠮷"].entries == ("𠮷",) and found["𠮷"].count == 2
    assert found["㎎"].entries == ("㎎", "##㎎") and found["ⅱ"].count == 2 and found["μ"].count == 2
    assert chars[0].count >= chars[-1].count and stats["unk_words"] > 0


def test_min_count_and_max_new(tiny_model):
    norm = Normalizer(tiny_model.normalization)
    chars, stats = find_new_characters(CORPUS, tiny_model.tokenizer, norm, min_count=2)
    assert {c.char for c in chars} == {"𠮷", "ⅱ", "μ"} and stats["below_min_count"] == 3
    assert len(find_new_characters(CORPUS, tiny_model.tokenizer, norm, max_new=2)[0]) == 2


def test_unk_rate_drops_to_zero(ext_chars, tiny_model):
    out, rep = ext_chars
    assert rep.before.unk_tokens > 0 and rep.before.char_rate > 0
    assert rep.after.unk_tokens == 0 and rep.after.char_rate == 0.0
    assert {c["char"] for c in rep.characters} == NEW
    again = unk_rate(CORPUS, TextTokenizer.from_pretrained(out / "encoder"), Normalizer(tiny_model.normalization))
    assert again.unk_tokens == 0 and again.chars == rep.before.chars
    assert vocab_mod.model_unk_rate(out, CORPUS).to_dict() == again.to_dict()
    assert rep.vocab_size_after == rep.vocab_size_before + sum(len(c["entries"]) for c in rep.characters)


@pytest.mark.parametrize("fixture", ["ext_chars", "ext_terms"])
def test_offsets_exact_on_new_characters(fixture, request):
    out, rep = request.getfixturevalue(fixture)
    tok = TextTokenizer.from_pretrained(out / "encoder")
    terms = {t["term"] for t in rep.terms}
    norm = Normalizer(NormalizationConfig())
    texts = [norm(t).text for t in CORPUS + ["x㎎y", "ⅱⅱⅱ", "5μ㎎"]]
    for text, (ids, offsets) in zip(texts, tok.encode(texts)):
        assert tok.unk_id not in ids
        pieces = []
        for i, (s, e) in zip(ids, offsets):
            token = tok.hf.convert_ids_to_tokens(int(i))
            assert (token if token in terms else token.removeprefix("##")) == text[s:e], (text, token, s, e)
            pieces.append(text[s:e])
        assert "".join(pieces) == "".join(text.split())


def test_new_characters_keep_ner_alignment(ext_chars, tiny_folder, tiny_model):
    ex = [NerExample("𠮷和㐀在5㎎", [Span(0, 1, "PER"), Span(2, 3, "LOC"), Span(5, 6, "ORG")])]
    norm = Normalizer(tiny_model.normalization)
    counts = {}
    for name, folder in (("old", tiny_folder), ("new", ext_chars[0])):
        report = FeatureReport()
        spec = TaskSpec.from_dict("ner", {"kind": "tagger", "labels": tiny_model.heads["ner"].labels, "scheme": "BIO"})
        build_features(kinds.get("tagger"), ex, spec, TextTokenizer.from_pretrained(folder / "encoder"), norm, 32, report)
        counts[name] = report.counts["spans with a boundary inside a token"]
    assert counts == {"old": 1, "new": 0}  # "5㎎" was one [UNK] word; now "5 ##㎎"
    tok = TextTokenizer.from_pretrained(ext_chars[0] / "encoder")
    assert added_token_boundaries(ex, tok, norm).boundaries == 0


def test_rows_follow_the_rules(ext_chars, tiny_folder):
    out, rep = ext_chars
    old, new, ov, nv = _rows(tiny_folder), _rows(out), _vocab(tiny_folder), _vocab(out)
    assert torch.equal(new[: len(old)], old)  # existing rows untouched

    def mean(*tokens: str) -> torch.Tensor:
        return old[[ov[t] for t in tokens]].mean(0)

    cjk = [i for t, i in ov.items() if len(t) == 1 and "\u4e00" <= t <= "\u9fff"]
    expected = {
        "㎎": mean("mg"), "##㎎": mean("##mg"),            # NFKC 'mg': one old piece
        "㎏": mean("k", "##g"), "##㎏": mean("##k", "##g"),  # NFKC 'kg': two old pieces
        "ⅱ": mean("i", "##i"), "##ⅱ": mean("##i", "##i"),
        "μ": old[cjk].mean(0), "𠮷": old[cjk].mean(0), "㐀": old[cjk].mean(0),  # nothing known: CJK mean
    }
    for token, row in expected.items():
        torch.testing.assert_close(new[nv[token]], row, rtol=0, atol=1e-6, msg=token)
    by_char = {c["char"]: c["rules"] for c in rep.characters}
    assert by_char["㎎"] == {"㎎": "nfkc", "##㎎": "nfkc"} and by_char["μ"]["μ"] == "cjk_mean"
    assert rep.rules == {"nfkc": 6, "cjk_mean": 4}


def test_term_rows_are_the_mean_of_their_characters(ext_terms):
    out, rep = ext_terms
    rows, v = _rows(out), _vocab(out)
    for term in ("糖尿病", "𠮷医"):  # 𠮷 is a new character itself: its new row counts
        torch.testing.assert_close(rows[v[term]], rows[[v[c] for c in term]].mean(0), rtol=0, atol=1e-6)
    assert [t["term"] for t in rep.terms] == TERMS and rep.rules["term_pieces"] == 3


def test_variant_rules(tiny_encoder):
    from tokenizers import Tokenizer

    data = json.loads((tiny_encoder / "tokenizer.json").read_text(encoding="utf-8"))
    n = len(data["model"]["vocab"])
    backend = Tokenizer.from_str(json.dumps(extend_tokenizer_json(data, ["μ", "##μ"], [], n)))
    src = EmbeddingSources(backend, unk_id=1)
    assert src.for_entry("µ") == ("nfkc", [n])            # micro sign -> Greek mu
    assert src.for_entry("##µ") == ("nfkc", [n + 1])
    assert src.for_entry("醫") == ("t2s", [backend.token_to_id("医")])
    assert src.for_entry("##μ")[0] == "own_form" and src.for_entry("㐀")[0] == "cjk_mean"


def test_traditional_added_only_without_t2s(tiny_encoder, tmp_path):
    from toolkit.model.multitask import MultiTaskModel

    folder = MultiTaskModel.build(tiny_encoder, TASKS, normalization={"opencc": None}, max_length=32).save(
        tmp_path / "no-t2s", dtype=torch.float32)
    rep = extend_vocabulary(folder, tmp_path / "out", texts=["北京醫院", "醫生"], min_count=1)
    assert [c["char"] for c in rep.characters] == ["醫"] and rep.rules == {"t2s": 1}
    v, rows = _vocab(tmp_path / "out"), _rows(tmp_path / "out")
    assert torch.equal(rows[v["醫"]], rows[v["医"]])


def test_loads_with_toolkit_and_transformers_alone(ext_terms):
    from transformers import AutoModel, AutoTokenizer

    out, rep = ext_terms
    tok = AutoTokenizer.from_pretrained(str(out / "encoder"))
    enc = AutoModel.from_pretrained(str(out / "encoder"))
    assert len(tok) == enc.get_input_embeddings().num_embeddings == enc.config.vocab_size == rep.vocab_size_after
    assert tok.tokenize("5㎎糖尿病𠮷") == ["5", "##㎎", "糖尿病", "𠮷"]
    with torch.inference_mode():
        hidden = enc(**tok(["𠮷和㐀，ⅱ型糖尿病"], return_tensors="pt")).last_hidden_state
    assert torch.isfinite(hidden).all()
    ner = load(str(out), tasks="ner")
    text = "张三在北京醫院看𠮷和㐀"
    assert all(text[e.start : e.end] == e.text for e in ner(text))
    saved = json.loads((out / vocab_mod.REPORT_FILE).read_text(encoding="utf-8"))
    assert saved["vocab_size"]["after"] == rep.vocab_size_after and "Vocabulary extension" in (out / "README.md").read_text()


@pytest.mark.parametrize("fixture", ["ext_chars", "ext_terms"])
def test_predictions_unchanged_without_new_items(fixture, request, tiny_folder):
    out, _ = request.getfixturevalue(fixture)
    texts = [t for t in PLAIN if not any(term in t for term in TERMS)]
    before, after = load(str(tiny_folder), tasks=["ner", "sentiment"]), load(str(out), tasks=["ner", "sentiment"])
    for a, b in zip(before(texts), after(texts)):
        assert [(e.start, e.end, e.label) for e in a["ner"]] == [(e.start, e.end, e.label) for e in b["ner"]]
        assert [e.score for e in a["ner"]] == pytest.approx([e.score for e in b["ner"]], abs=1e-6)
        assert a["sentiment"]["label"] == b["sentiment"]["label"]
    pairs = [(texts[0], texts[1])]
    assert load(str(tiny_folder), tasks="match")(pairs)[0]["scores"] == pytest.approx(load(str(out), tasks="match")(pairs)[0]["scores"], abs=1e-6)


def test_boundaries_inside_added_terms_are_counted(ext_terms):
    _, rep = ext_terms
    b = rep.boundaries
    assert (b.examples, b.spans, b.spans_affected, b.boundaries) == (5, 6, 3, 4)
    assert dict(b.by_term) == {"北京大学": 2, "糖尿病": 2} and b.sources == ["a:1", "d:1", "e:1"]
    assert rep.warnings and "4 boundaries" in rep.warnings[0]


def test_refuse_raises_and_writes_nothing(tiny_folder, tmp_path):
    with pytest.raises(TaggerBoundaryError, match=r"3 of 6 gold entity spans have 4 boundaries.*北京大学 \(2\)"):
        extend_vocabulary(tiny_folder, tmp_path / "x", terms=TERMS, ner_examples=NER, tagger_policy="refuse")
    with pytest.raises(TaggerBoundaryError, match="no NER"):
        extend_vocabulary(tiny_folder, tmp_path / "x", terms=TERMS, tagger_policy="refuse")
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []
    ok = extend_vocabulary(tiny_folder, tmp_path / "y", terms=["糖尿病"], ner_examples=NER[1:3], tagger_policy="refuse")
    assert ok.boundaries.boundaries == 0 and not ok.warnings


def test_nothing_to_add_and_bad_folder(tiny_folder, tmp_path):
    with pytest.raises(ValueError, match="nothing to add"):
        extend_vocabulary(tiny_folder, tmp_path / "o", texts=PLAIN[:2], terms=["患"])
    with pytest.raises(ValueError, match="not the model folder"):
        extend_vocabulary(tiny_folder, tiny_folder, texts=CORPUS)


def test_mine_terms(tiny_model):
    texts = ["患者有糖尿病史", "糖尿病患者在北京大学医院", "糖尿病", "CT检查CT检查"]
    terms = dict(mine_terms(texts, tiny_model.tokenizer, Normalizer(tiny_model.normalization), min_count=2))
    assert terms["糖尿病"] == 3 and terms["患者"] == 2 and "北京大学" not in terms and "CT" not in terms
    assert list(terms) == sorted(terms, key=lambda t: (-terms[t], t))


def test_cli_end_to_end(tiny_folder, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    terms = tmp_path / "terms.txt"
    terms.write_text("# domain terms\n糖尿病\n北京大學\n", encoding="utf-8")
    ner = tmp_path / "ner.jsonl"
    ner.write_text(json.dumps({"text": "北京大学医院", "spans": [{"start": 0, "end": 2, "label": "LOC"}]},
                              ensure_ascii=False) + "\n", encoding="utf-8")
    parser = argparse.ArgumentParser(prog="toolkit")
    register_cli(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "ext"
    args = parser.parse_args(["vocab", "extend", str(tiny_folder), "--from-corpus", str(corpus), "--terms", str(terms),
                              "--min-count", "1", "--ner-data", str(ner), "--ner-format", "json-spans", "--out", str(out)])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["unk"]["after"]["unk_tokens"] == 0 and summary["added"] == {"characters": 6, "terms": 2, "entries": 12}
    assert [t["term"] for t in summary["terms"]] == ["糖尿病", "北京大学"] and summary["boundaries"]["boundaries"] == 1
    assert load(str(out), tasks="ner")("𠮷和㐀") is not None
    args = parser.parse_args(["vocab", "extend", str(tiny_folder), "--out", str(tmp_path / "z")])
    with pytest.raises(ValueError, match="--from-corpus"):
        args.func(args)


def test_doctests():
    for module in (vocab_mod, vocab_scan):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
