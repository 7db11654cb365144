"""Shared fixtures: a tiny random BERT with a tiny character vocabulary, built here (no download)."""
from __future__ import annotations

import string
from pathlib import Path

import pytest

# Characters written for these tests (common characters of everyday and clinical Chinese).
CJK = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴急酒诉显怕船健医患者病痛热咳嗽糖尿史既往出现发三天前型症状治疗药物检查血压心肺肝肾胃肠头痛腹泻呕吐感冒炎症手术诊断胸部北京上海广州深圳张王李赵刘陈公司银行大学医院中心市省县区号路"
)
PUNCT = "，。！？；：、“”‘’（）《》【】…—·"


def tiny_vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ascii_chars = list(string.ascii_letters + string.digits + string.punctuation)
    pieces = ["##" + c for c in string.ascii_letters + string.digits]
    words = ["CT", "MRI", "mg", "the", "##mg"]
    cjk = sorted(set(CJK))
    seen, vocab = set(), []
    for tok in specials + ascii_chars + pieces + words + cjk + list(PUNCT):
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)
    return vocab


def build_tiny_encoder(folder: Path, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A random 2-layer BERT + char tokenizer saved as a Hugging Face folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(str(folder / "vocab.txt"), do_lower_case=False, tokenize_chinese_chars=True, strip_accents=False)
    tok.save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        type_vocab_size=2,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(str(folder))
    return folder


TASKS = {
    "ner": {"kind": "tagger", "labels": ["PER", "LOC", "ORG"], "scheme": "BIO"},
    "sentiment": {"kind": "classifier", "labels": ["neg", "pos"], "options": {"pooling": "mean"}},
    "match": {"kind": "matcher", "labels": ["0", "1"]},
}


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny") / "encoder")


@pytest.fixture(scope="session")
def tiny_model(tiny_encoder):
    """A random multi-task model (tagger + classifier + matcher), max length 32, in eval mode."""
    import torch

    from toolkit.model.multitask import MultiTaskModel

    torch.manual_seed(1)
    model = MultiTaskModel.build(tiny_encoder, TASKS, max_length=32, name="tiny")
    with torch.no_grad():  # sharpen the random heads so decoding finds entities
        model.heads["ner"].proj.weight.mul_(40)
        model.heads["ner"].crf.transitions.mul_(3)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_folder(tiny_model, tmp_path_factory) -> Path:
    """``tiny_model`` saved as a model folder in fp32 (exact round trip)."""
    import torch

    return tiny_model.save(tmp_path_factory.mktemp("models") / "tiny", dtype=torch.float32)


def in_threads(work, n: int = 8) -> list:
    """Run ``work()`` in ``n`` threads at once; returns their results (re-raises the first error)."""
    import threading

    results: list = [None] * n
    errors: list = []

    def run(k: int) -> None:
        try:
            results[k] = work()
        except Exception as err:  # pragma: no cover - re-raised below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


TINY_CLS = "text\tlabel\n服务很好\tpos\n太差了\tneg\n很好很好\tpos\n差\tneg\n"


def write_corpora(folder: Path, ner_rows: list[dict], cls_text: str = TINY_CLS) -> tuple[Path, Path]:
    """``folder/ner.jsonl`` (JSON spans, one row a line) and ``folder/cls.tsv``; returns both paths."""
    import json

    ner = folder / "ner.jsonl"
    ner.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ner_rows) + "\n", encoding="utf-8")
    cls = folder / "cls.tsv"
    cls.write_text(cls_text, encoding="utf-8")
    return ner, cls


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory) -> Path:
    """A tiny e5-like distillation teacher folder (``test_distill.build_teacher``)."""
    from test_distill import build_teacher

    folder = tmp_path_factory.mktemp("teacher")
    build_teacher(folder)
    return folder


class Killed(Exception):
    """A training run stopped from its ``on_step`` callback, as a kill would stop it (:func:`kill_at`)."""


def kill_at(stop: int):
    """An ``on_step`` callback for ``pretrain()`` that raises :class:`Killed` after step ``stop``."""

    def on_step(step: int) -> None:
        if step == stop:
            raise Killed

    return on_step


def crash_after_first_checkpoint(monkeypatch, recipe) -> None:
    """Train ``recipe`` until its first checkpoint is written, then stop it as a Ctrl-C would."""
    import toolkit.train.loop as training

    real_save = training.save_checkpoint

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        training.train(recipe, progress=False)
    monkeypatch.setattr(training, "save_checkpoint", real_save)
