"""`toolkit train ner|cls|pair --train ...` on a user's own files, as a user would run it."""
from __future__ import annotations

import json

import pytest

import toolkit
from toolkit.cli import main
from toolkit.train.finetune import default_settings, guess_format

BIO = """张 B-PER
三 I-PER
在 O
北 B-LOC
京 I-LOC

王 B-PER
五 I-PER
去 O
上 B-LOC
海 I-LOC

李 B-PER
四 I-PER
在 O
广 B-LOC
州 I-LOC
"""
CLS = "text\tlabel\n服务很好\tpos\n太差了\tneg\n很好很好\tpos\n差\tneg\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "train.bio").write_text(BIO, encoding="utf-8")
    (tmp_path / "dev.bio").write_text(BIO.split("\n\n")[0] + "\n", encoding="utf-8")
    (tmp_path / "cls.tsv").write_text(CLS, encoding="utf-8")
    return tmp_path


def test_train_ner_on_own_files_then_gain_a_task(files, tiny_encoder, capsys):
    model = files / "my-ner"
    args = ["train", "ner", "--train", str(files / "train.bio"), "--dev", str(files / "dev.bio"), "--from", str(tiny_encoder)]
    assert main(args + ["--out", str(model), "--epochs", "60", "--lr", "3e-3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "PER" in out and "micro" in out and f"toolkit.load('{model}')" in out
    ner = toolkit.load(str(model))
    before = ner(["张三在北京", "王五去上海"])
    assert [(e.text, e.label) for e in before[0]] == [("张三", "PER"), ("北京", "LOC")]

    # the NER model gains a classifier; with the encoder frozen, NER predictions cannot move
    both = files / "my-both"
    assert main(["train", "cls", "--train", str(files / "cls.tsv"), "--from", str(model), "--out", str(both), "--epochs", "40", "--freeze-encoder", "--no-progress"]) == 0
    combined = toolkit.load(str(both))
    assert set(combined.tasks) == {"ner", "cls"}
    after = toolkit.load(str(both), tasks="ner")(["张三在北京", "王五去上海"])
    assert after == before
    summary = json.loads((files / "my-both.run" / "finetune.json").read_text(encoding="utf-8"))
    assert summary["data"]["train_examples"] == 4 and summary["task"] == "cls"


def test_train_needs_a_training_file(capsys):
    assert main(["train", "ner"]) == 2
    assert "--train" in capsys.readouterr().err


def test_format_guess_and_defaults():
    assert guess_format("ner", "x.char.bmes") == "columns" and guess_format("cls", "a.tsv") == "table-cls"
    with pytest.raises(ValueError, match="--format"):
        guess_format("ner", "data.xyz")
    d = default_settings(30000, [100] * 100 + [300])
    assert d["epochs"] == 2 and d["max_length"] % 32 == 0 and d["max_length"] >= 102
