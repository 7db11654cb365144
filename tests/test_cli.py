from __future__ import annotations

import json

from toolkit import registry
from toolkit.cli import main


def test_list(capsys, monkeypatch):
    monkeypatch.setitem(registry.MODELS, "demo", {"path": "demo", "description": "a demo"})
    assert main(["list"]) == 0
    assert "demo\ta demo" in capsys.readouterr().out


def test_info(capsys, tiny_folder):
    assert main(["info", str(tiny_folder)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tasks"]["ner"]["labels"] == ["PER", "LOC", "ORG"] and info["max_length"] == 32


def test_run_texts_to_jsonl(capsys, tiny_folder):
    assert main(["run", str(tiny_folder), "--tasks", "ner", "张三在北京", "醫院"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["张三在北京", "醫院"]
    for row in rows:
        for ent in row["result"]:
            assert row["text"][ent["start"] : ent["end"]] == ent["text"]


def test_run_file_and_pairs(tmp_path, tiny_folder):
    src = tmp_path / "in.txt"
    src.write_text("头痛\t头疼\n发热\t咳嗽\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["run", str(tiny_folder), "--tasks", "match", "--pair", "-i", str(src), "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["text_a"], r["text_b"]) for r in rows] == [("头痛", "头疼"), ("发热", "咳嗽")]
    assert rows[0]["result"]["label"] in {"0", "1"}


def test_stdin(monkeypatch, capsys, tiny_folder):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("发热\n咳嗽\n"))
    assert main(["run", str(tiny_folder), "--tasks", "sentiment", "-"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_unknown_model_exits_2(capsys):
    assert main(["run", "no-such-model", "x"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_pair_flag_mismatch_says_what_to_do(capsys, tiny_folder):
    assert main(["run", str(tiny_folder), "--tasks", "match", "头痛"]) == 2
    assert "--pair" in capsys.readouterr().err
    assert main(["run", str(tiny_folder), "--tasks", "ner", "--pair", "头痛\t头疼"]) == 2
    assert "drop --pair" in capsys.readouterr().err
