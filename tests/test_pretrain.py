"""Continued MLM pretraining (toolkit.train.pretrain) and its corpus (toolkit.train.mlm_data) on the
tiny encoder and texts written here."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import Killed, kill_at

from toolkit.train.mlm_data import Packed, encode_corpus, mask_batch
from toolkit.train.pretrain import load_mlm, pretrain
from toolkit.text.tokenization import TextTokenizer

TEXTS = [
    "患者三天前出现发热咳嗽，既往糖尿病史。",
    "北京大学医院的医生说明天检查血压。",
    "上海银行公司在广州和深圳都有中心。",
    "我们要去学校看老师，他们都很好。",
    "头痛腹泻呕吐，诊断为感冒，治疗后好转。",
]


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder):
    return TextTokenizer.from_pretrained(tiny_encoder)


@pytest.fixture(scope="module")
def corpus(tokenizer):
    return encode_corpus(TEXTS * 20, tokenizer)


def _mask(tokenizer, ids, words, seed, step):
    return mask_batch(ids, words, np.random.default_rng([seed, step, 2]), len(tokenizer), tokenizer.hf.mask_token_id,
                      tokenizer.hf.all_special_ids)


def test_words_follow_jieba(tokenizer):
    import jieba

    ids, words = encode_corpus([TEXTS[0]], tokenizer)
    assert ids[-1] == tokenizer.sep_id and words[-1] == -1
    lengths = np.bincount(words[:-1]).tolist()
    assert lengths == [len(w) for w in jieba.lcut(TEXTS[0])]


def test_whole_words_are_masked(tokenizer, corpus):
    data = Packed(*corpus, max_length=32, tokenizer=tokenizer)
    ids, words, _ = data.batch(0, 0, 16)
    _, labels = _mask(tokenizer, ids, words, 0, 0)
    picked = labels != -100
    for r in range(len(ids)):
        for w in np.unique(words[r][words[r] >= 0]):
            inside = picked[r][words[r] == w]
            assert inside.all() or not inside.any()  # all characters of a word, or none
        n_words = len(np.unique(words[r][words[r] >= 0]))
        assert len(np.unique(words[r][picked[r]])) == max(1, round(0.15 * n_words))
    assert not picked[ids == tokenizer.cls_id].any() and not picked[ids == tokenizer.sep_id].any()


def test_mask_80_10_10(tokenizer, corpus):
    data = Packed(*corpus, max_length=32, tokenizer=tokenizer)
    kinds = np.zeros(3)
    for step in range(40):
        ids, words, _ = data.batch(0, step, 16)
        inputs, labels = _mask(tokenizer, ids, words, 0, step)
        picked = labels != -100
        kinds += [(inputs[picked] == tokenizer.hf.mask_token_id).sum(), ((inputs != ids) & picked & (inputs != tokenizer.hf.mask_token_id)).sum(),
                  ((inputs == ids) & picked).sum()]
    share = kinds / kinds.sum()
    assert abs(share[0] - 0.8) < 0.04 and abs(share[1] - 0.1) < 0.03 and abs(share[2] - 0.1) < 0.03, share


def test_masking_is_deterministic_per_seed_and_step(tokenizer, corpus):
    data = Packed(*corpus, max_length=32, tokenizer=tokenizer)
    a = _mask(tokenizer, *data.batch(0, 3, 8)[:2], 0, 3)
    b = _mask(tokenizer, *data.batch(0, 3, 8)[:2], 0, 3)
    c = _mask(tokenizer, *data.batch(0, 4, 8)[:2], 0, 4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_decoder_tied_to_embeddings(tiny_encoder):
    model = load_mlm(tiny_encoder, seed=0)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("texts") / "texts.txt"
    path.write_text("\n".join(TEXTS * 4) + "\n", encoding="utf-8")
    return path


def _run(tiny_encoder, text_file, out, **kw):
    opts = dict(max_steps=12, batch_size=4, max_length=24, lr=1e-3, seed=3, log_every=1, save_every=4)
    return pretrain(tiny_encoder, [text_file], out, **(opts | kw))


def test_loss_decreases(tiny_encoder, tmp_path):
    path = tmp_path / "one.txt"
    path.write_text((TEXTS[0] + "\n") * 50, encoding="utf-8")
    pretrain(tiny_encoder, [path], tmp_path / "run", max_steps=30, batch_size=8, max_length=24, lr=3e-3,
             log_every=1, save_every=100)
    losses = [json.loads(x)["loss"] for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5]), losses


def test_resume_is_bit_identical(tiny_encoder, text_file, tmp_path):
    from safetensors.torch import load_file

    _run(tiny_encoder, text_file, tmp_path / "full")

    kill = kill_at(6)  # after the checkpoint of step 4: steps 5-6 are lost and redone

    with pytest.raises(Killed):
        _run(tiny_encoder, text_file, tmp_path / "part", on_step=kill)
    with pytest.raises(FileExistsError):
        _run(tiny_encoder, text_file, tmp_path / "part")
    _run(tiny_encoder, text_file, tmp_path / "part", resume=True)
    a = load_file(str(tmp_path / "full" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    full = (tmp_path / "full" / "log.jsonl").read_text().splitlines()
    part = (tmp_path / "part" / "log.jsonl").read_text().splitlines()
    strip = lambda lines: [{k: v for k, v in json.loads(x).items() if k != "elapsed_s"} for x in lines]  # noqa: E731
    assert strip(full) == strip(part)


def test_resuming_a_pretraining_run_whose_time_budget_is_spent_says_how_to_continue(tiny_encoder, text_file, tmp_path):
    """Regression: ``--max-minutes`` counts the run across resumes, so resuming a run that had stopped
    on time trained one more step and stopped again without saying why. Now it is refused before the
    corpus is read (here: the text file is gone), with the ``--max-minutes`` that continues it."""
    import shutil

    from toolkit.errors import ConfigError

    texts = tmp_path / "texts.txt"
    shutil.copy(text_file, texts)
    first = _run(tiny_encoder, texts, tmp_path / "run", max_minutes=1e-6)
    assert first["step"] == 1  # stopped on time, checkpointed
    texts.unlink()
    with pytest.raises(ConfigError, match=r"max_minutes is 1e-06, which counts the whole run across resumes: .*--max-minutes \d+"):
        _run(tiny_encoder, texts, tmp_path / "run", max_minutes=1e-6, resume=True)
    shutil.copy(text_file, texts)
    assert _run(tiny_encoder, texts, tmp_path / "run", resume=True)["step"] == 12  # a larger budget (none) continues


def test_a_corpus_copied_again_resumes_and_keeps_its_cache(tiny_encoder, tmp_path, caplog):
    """Regression (session 8): the text files were identified by modification time, so the same corpus
    copied again (new mtime, same bytes) rebuilt the tokenised cache and made --resume refuse the run
    ("different settings: data"). Now by content; a changed file is still refused, and a checkpoint
    that recorded the time (an older run) resumes when paths and sizes match."""
    import os

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS * 4) + "\n", encoding="utf-8")
    with pytest.raises(Killed):
        _run(tiny_encoder, texts, tmp_path / "run", on_step=kill_at(6))
    cache = tmp_path / "run" / "data" / "ids.npy"
    built = cache.stat().st_mtime_ns
    os.utime(texts, ns=(texts.stat().st_atime_ns, texts.stat().st_mtime_ns + 10**9))  # copied again: a new time
    _run(tiny_encoder, texts, tmp_path / "run", resume=True)
    assert cache.stat().st_mtime_ns == built  # the cache was kept

    original = texts.read_text(encoding="utf-8")
    texts.write_text("\n".join(TEXTS[::-1] * 4) + "\n", encoding="utf-8")  # same size, other bytes
    with pytest.raises(ValueError, match="different settings than the checkpoint.*data"):
        _run(tiny_encoder, texts, tmp_path / "run", resume=True)
    texts.write_text(original, encoding="utf-8")

    state = tmp_path / "run" / "checkpoint" / "state.json"
    record = json.loads(state.read_text(encoding="utf-8"))
    files = record["trainer"]["config"]["data"]["files"]
    assert set(files[0]) == {"path", "size", "sha256"}
    for entry in files:  # what an older checkpoint recorded
        del entry["sha256"]
        entry["mtime_ns"] = 1
    state.write_text(json.dumps(record), encoding="utf-8")
    with caplog.at_level("WARNING", logger="toolkit.train.mlm_data"):
        _run(tiny_encoder, texts, tmp_path / "run", resume=True, max_steps=12)
    assert "modification time" in caplog.text  # no way to tell its bytes apart: trusted, and said so



def test_exported_encoder_loads(tiny_encoder, text_file, tmp_path):
    import torch

    from toolkit.model.encoder import Encoder
    from toolkit.model.multitask import MultiTaskModel

    _run(tiny_encoder, text_file, tmp_path / "run", max_steps=3)
    folder = tmp_path / "run" / "encoder"
    enc = Encoder.from_pretrained(folder)
    mlm = load_mlm(folder, seed=0)  # the trained weights, not the original ones
    orig = Encoder.from_pretrained(tiny_encoder)
    w = enc.model.embeddings.word_embeddings.weight
    assert not torch.equal(w, orig.model.embeddings.word_embeddings.weight)
    assert torch.equal(w, mlm.bert.embeddings.word_embeddings.weight)
    model = MultiTaskModel.build(folder, {"sentiment": {"kind": "classifier", "labels": ["neg", "pos"]}}, max_length=32)
    assert model is not None and not list(folder.parent.glob("encoder.tmp"))


def test_cli(tiny_encoder, text_file, tmp_path, capsys):
    from toolkit.cli import main

    code = main(["pretrain", "--encoder", str(tiny_encoder), "--text", str(text_file), "--out", str(tmp_path / "r"),
                 "--max-steps", "2", "--batch-size", "2", "--max-length", "16", "--threads", "1"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["step"] == 2
    assert (tmp_path / "r" / "encoder" / "config.json").is_file()


def test_truncated_encoder_pretrains_and_resumes(tiny_encoder, text_file, tmp_path):
    """--num-layers: the first layers only, trained, exported with that depth; resume keeps it and
    refuses a different depth (issue 14: continue pretraining after truncating, not cut an adapted model)."""
    import torch

    from toolkit.model.encoder import Encoder

    orig = Encoder.from_pretrained(tiny_encoder)
    assert orig.num_layers == 2

    kill = kill_at(5)

    with pytest.raises(Killed):
        _run(tiny_encoder, text_file, tmp_path / "run", max_steps=8, num_layers=1, on_step=kill)
    with pytest.raises(ValueError, match="num_layers"):
        _run(tiny_encoder, text_file, tmp_path / "run", max_steps=8, resume=True)  # a different depth than the checkpoint
    _run(tiny_encoder, text_file, tmp_path / "run", max_steps=8, num_layers=1, resume=True)
    enc = Encoder.from_pretrained(tmp_path / "run" / "encoder")
    assert enc.num_layers == 1 and len(enc.model.encoder.layer) == 1
    assert json.loads((tmp_path / "run" / "encoder" / "pretrain.json").read_text())["step"] == 8
    first = orig.model.encoder.layer[0].attention.self.query.weight
    assert not torch.equal(enc.model.encoder.layer[0].attention.self.query.weight, first)  # trained, not just cut
    _run(tiny_encoder, text_file, tmp_path / "full", max_steps=8, num_layers=1)
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "run" / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the killed-and-resumed run is bit-identical


def test_a_run_that_continues_another_counts_its_tokens(tiny_encoder, text_file, tmp_path):
    """An encoder exported by one run and pretrained further by another: the second export records its
    own step and tokens and, as ``tokens_total``, those of both runs (what progress plots use)."""
    _run(tiny_encoder, text_file, tmp_path / "first", max_steps=4)
    first = json.loads((tmp_path / "first" / "encoder" / "pretrain.json").read_text())
    assert first == {"step": 4, "tokens": first["tokens"], "tokens_total": first["tokens"]} and first["tokens"] > 0
    _run(tmp_path / "first" / "encoder", text_file, tmp_path / "second", max_steps=3)
    second = json.loads((tmp_path / "second" / "encoder" / "pretrain.json").read_text())
    assert second["step"] == 3 and second["tokens_total"] == first["tokens"] + second["tokens"]
