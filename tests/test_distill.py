"""Distillation from a SentencePiece-tokenised teacher (toolkit.train.distill), with a tiny random
teacher built here: a 2-layer BertModel (width 16, the student is 32) and a unigram tokenizer."""
from __future__ import annotations

import json
import string

import numpy as np
import pytest

from conftest import CJK, Killed, PUNCT, kill_at
from toolkit.text.tokenization import TextTokenizer
from toolkit.train.distill import Distiller, layer_pairs
from toolkit.train.e5_teacher import Teacher, save_teacher
from toolkit.train.pretrain import load_mlm, pretrain

WORDS = ["患者", "发热", "咳嗽", "糖尿病", "北京", "大学", "医院", "检查", "New", "York", "CT"]
TEXTS = ["患者三天前出现发热咳嗽，既往糖尿病史。", "北京大学医院的医生说明天检查血压。", "CT检查 New York 2 mg"]


def build_teacher(folder, normalize=None) -> Teacher:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel

    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    pieces += [(w, -5.0) for w in WORDS] + [("\u2581" + w, -5.0) for w in ("New", "York", "CT", "2", "mg")]
    singles = sorted(set(CJK + PUNCT + string.ascii_letters + string.digits + ",."))
    pieces += [(c, -10.0) for c in singles]
    tok = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    torch.manual_seed(5)
    config = BertConfig(vocab_size=len(pieces), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, pad_token_id=1)
    teacher = Teacher(BertModel(config, add_pooling_layer=False), tok, bos=0, eos=2, pad=1, unk=3, normalize=normalize)
    save_teacher(teacher, folder, dtype="float32")
    return Teacher.load(folder)


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder):
    return TextTokenizer.from_pretrained(tiny_encoder)


def _distiller(teacher_folder, tokenizer, tiny_encoder, **kw):
    model = load_mlm(tiny_encoder, seed=0)
    return Distiller.for_model(Teacher.load(teacher_folder), tokenizer, model, **kw), model


def _row(tokenizer, *texts):
    ids = [tokenizer.cls_id]
    for t in texts:
        ids += tokenizer.encode([t])[0][0].tolist() + [tokenizer.sep_id]
    return np.asarray([ids], dtype=np.int64)


def test_layer_pairs():
    assert layer_pairs(12, 12) == [(4, 4), (8, 8), (12, 12)]
    assert layer_pairs(2, 2) == [(1, 1), (2, 2)]
    assert layer_pairs(12, 2, [6, 12]) == [(6, 1), (12, 2)]
    with pytest.raises(ValueError):
        layer_pairs(12, 2, [13])


def test_a_two_character_piece_pools_exactly_its_two_tokens(teacher_folder, tokenizer, tiny_encoder):
    import torch

    distiller, model = _distiller(teacher_folder, tokenizer, tiny_encoder)
    ids = _row(tokenizer, "患者发热")  # [CLS] 患 者 发 热 [SEP]
    al = distiller.align(ids, np.zeros(ids.shape, bool))
    vocab = distiller.teacher.tokenizer.get_vocab()
    seq = al.ids[0][al.mask[0] == 1].tolist()
    assert seq == [0, vocab["\u2581"], vocab["患者"], vocab["发热"], 2]
    width = al.ids.shape[1]
    assert al.piece[0].tolist() == [-1, 2, 2, 3, 3, -1]  # the lone ▁ (index 1) gets no student token
    hidden = torch.randn(1, ids.shape[1], 32)
    means, which = distiller.pooled(hidden, torch.from_numpy(al.piece))
    assert which.tolist() == [2, 3] and width >= 5
    assert torch.allclose(means[0], hidden[0, 1:3].mean(0)) and torch.allclose(means[1], hidden[0, 3:5].mean(0))


def test_masked_tokens_drop_their_piece(teacher_folder, tokenizer, tiny_encoder):
    distiller, _ = _distiller(teacher_folder, tokenizer, tiny_encoder)
    ids = _row(tokenizer, "患者发热")
    blocked = np.zeros(ids.shape, bool)
    blocked[0, 2] = True  # 者 is masked: 患者 is left out, 发热 stays
    assert distiller.align(ids, blocked).piece[0].tolist() == [-1, -1, -1, 3, 3, -1]


def test_rebuilt_text_and_segments(teacher_folder, tokenizer, tiny_encoder):
    distiller, _ = _distiller(teacher_folder, tokenizer, tiny_encoder)
    ids = _row(tokenizer, "CT检查 New York", "2 mg")
    segs = distiller.rebuild(ids[0])
    assert [s[0] for s in segs] == ["CT检查New York", "2 mg"]  # a space only between two alphanumeric tokens
    text, spans, pos = segs[0]
    assert [text[a:b] for a, b in spans] == ["CT", "检", "查", "N", "e", "w", "Y", "o", "r", "k"]  # N ##e ##w ...
    al = distiller.align(ids, np.zeros(ids.shape, bool))
    vocab = distiller.teacher.tokenizer.get_vocab()
    seq = al.ids[0][al.mask[0] == 1].tolist()
    assert seq[:6] == [0, vocab["\u2581CT"], vocab["检查"], vocab["New"], vocab["\u2581York"], 2]
    assert al.piece[0, pos[1]] == al.piece[0, pos[2]] == 2  # 检 查 -> 检查
    assert al.piece[0, pos[3:6]].tolist() == [3, 3, 3] and al.piece[0, pos[6:10]].tolist() == [4] * 4


def test_teacher_offsets_follow_the_normalisation(tmp_path):
    teacher = build_teacher(tmp_path / "t", normalize={ord("，"): ",", ord("㎎"): "mg", ord("\u200b"): ""})
    ids, offs = teacher.encode(["患者\u200b发热，2㎎"])[0]
    vocab = {v: k for k, v in teacher.tokenizer.get_vocab().items()}
    text = "患者\u200b发热，2㎎"
    got = [(vocab[i], text[a:b]) for i, (a, b) in zip(ids.tolist(), offs.tolist()) if vocab[i] != "\u2581"]
    assert got == [("患者", "患者"), ("发热", "发热"), (",", "，"), ("2", "2"), ("m", "㎎"), ("g", "㎎")]


@pytest.mark.parametrize("loss", ["mse", "cosine"])
def test_loss_is_finite_and_decreases(teacher_folder, tokenizer, tiny_encoder, loss):
    import torch

    distiller, model = _distiller(teacher_folder, tokenizer, tiny_encoder, loss=loss)
    assert distiller.proj is not None and any(n.startswith("distill_proj.") for n, _ in model.named_parameters())
    ids = np.concatenate([_row(tokenizer, t)[:, :16] for t in TEXTS[:2]] * 2)
    x = torch.from_numpy(ids)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    torch.manual_seed(0)
    losses = []
    for _ in range(12):
        states = model.bert(input_ids=x, attention_mask=torch.ones_like(x), output_hidden_states=True).hidden_states
        value = distiller(states, ids, np.zeros(ids.shape, bool))
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(float(value.detach()))
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0], losses
    assert not any(p.requires_grad for p in distiller.teacher.model.parameters())


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dtexts") / "texts.txt"
    path.write_text("\n".join(TEXTS * 6) + "\n", encoding="utf-8")
    return path


def test_pretrain_with_distillation_resumes_exactly(tiny_encoder, teacher_folder, text_file, tmp_path):
    from safetensors.torch import load_file

    opts = dict(max_steps=6, batch_size=4, max_length=24, lr=1e-3, seed=1, log_every=1, save_every=2,
                distill_weight=1.0, teacher=teacher_folder)
    pretrain(tiny_encoder, [text_file], tmp_path / "full", **opts)
    log = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 6 and all(np.isfinite(r["distill"]) and r["distill"] > 0 for r in log)

    kill = kill_at(3)

    with pytest.raises(Killed):
        pretrain(tiny_encoder, [text_file], tmp_path / "part", on_step=kill, **opts)
    pretrain(tiny_encoder, [text_file], tmp_path / "part", resume=True, **opts)
    a = load_file(str(tmp_path / "full" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "checkpoint" / "model.safetensors"))
    assert any(k.startswith("distill_proj.") for k in a)
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    exported = load_file(str(tmp_path / "full" / "encoder" / "model.safetensors"))
    assert not any("distill" in k for k in exported)


def test_distillation_alone(tiny_encoder, teacher_folder, text_file, tmp_path):
    pretrain(tiny_encoder, [text_file], tmp_path / "r", max_steps=2, batch_size=2, max_length=16, log_every=1,
             distill_weight=1.0, mlm_weight=0.0, teacher=teacher_folder, distill_loss="cosine")
    log = [json.loads(x) for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(0 <= r["distill"] <= 2 for r in log)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_distillation_on_cuda_in_bf16(teacher_folder, tokenizer, tiny_encoder):
    import torch

    distiller, model = _distiller(teacher_folder, tokenizer, tiny_encoder)
    model.cuda()
    distiller.teacher.model.cuda()
    ids = np.concatenate([_row(tokenizer, t)[:, :16] for t in TEXTS[:2]])
    x = torch.from_numpy(ids).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        states = model.bert(input_ids=x, attention_mask=torch.ones_like(x), output_hidden_states=True).hidden_states
    value = distiller(states, ids, np.zeros(ids.shape, bool), "bf16")
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert model.distill_proj[0].weight.grad is not None


def test_cli_options(tiny_encoder, teacher_folder, text_file, tmp_path, capsys):
    from toolkit.cli import main

    code = main(["pretrain", "--encoder", str(tiny_encoder), "--text", str(text_file), "--out", str(tmp_path / "r"),
                 "--max-steps", "1", "--batch-size", "2", "--max-length", "16", "--device", "cpu",
                 "--distill-weight", "0.5", "--teacher", str(teacher_folder), "--distill-loss", "cosine"])
    assert code == 0
    assert "distill" in json.loads(capsys.readouterr().out)
