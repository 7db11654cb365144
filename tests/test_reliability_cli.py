"""Issue #11, the command line: nothing lost, nothing silent (items 7, 8, 11, 13, 15, 17)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import toolkit
from toolkit import registry
from toolkit.cli import main
from toolkit.errors import InputError, RuntimeUnavailableError


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture()
def broken_pipeline(monkeypatch):
    """Make every pipeline call raise ``error`` (set ``broken_pipeline.error``)."""
    from toolkit.runtime.pipeline import TextPipeline

    class Holder:
        error: BaseException = RuntimeError("boom")

    def fail(self, *args, **kwargs):
        raise Holder.error

    monkeypatch.setattr(TextPipeline, "__call__", fail)
    return Holder


# ------------------------------------------------------------------ 7: -o never loses data
def test_failed_run_leaves_existing_output(tmp_path, tiny_folder, broken_pipeline, capsys):
    out = tmp_path / "out.jsonl"
    out.write_text("old results\n", encoding="utf-8")
    assert main(["run", str(tiny_folder), "--tasks", "ner", "-o", str(out), "张三"]) == 2
    assert out.read_text(encoding="utf-8") == "old results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temporary file left
    assert "boom" in capsys.readouterr().err


def test_ctrl_c_leaves_existing_output(tmp_path, tiny_folder, broken_pipeline, capsys):
    broken_pipeline.error = KeyboardInterrupt()
    out = tmp_path / "out.jsonl"
    out.write_text("old results\n", encoding="utf-8")
    assert main(["run", str(tiny_folder), "--tasks", "ner", "-o", str(out), "张三"]) == 130
    assert out.read_text(encoding="utf-8") == "old results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_output_equal_to_input_is_refused(tmp_path, tiny_folder, capsys, monkeypatch):
    src = tmp_path / "texts.txt"
    src.write_text("张三在北京\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(tiny_folder), "--tasks", "ner", "-i", str(src), "-o", "./texts.txt"]) == 2
    assert src.read_text(encoding="utf-8") == "张三在北京\n"
    assert "is the input file" in capsys.readouterr().err


def test_successful_run_replaces_output(tmp_path, tiny_folder):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n", encoding="utf-8")
    assert main(["run", str(tiny_folder), "--tasks", "ner", "-o", str(out), "张三", "北京"]) == 0
    assert [r["text"] for r in _rows(out.read_text(encoding="utf-8"))] == ["张三", "北京"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


# ------------------------------------------------------------------ 8: numeric options
@pytest.mark.parametrize("argv", [
    ["run", "M", "--batch-size", "0", "x"],
    ["run", "M", "--batch-size", "-1", "x"],
    ["run", "M", "--threads", "0", "x"],
    ["run", "M", "--batch-size", "two", "x"],
    ["eval", "M", "cmeee:dev", "--batch-size", "-1"],
    ["eval", "M", "cmeee:dev", "--limit", "0"],
    ["eval", "M", "cmeee:dev", "--threads", "-2"],
    ["vocab", "extend", "M", "--terms", "t.txt", "--out", "o", "--min-count", "0"],
    ["vocab", "extend", "M", "--terms", "t.txt", "--out", "o", "--max-new", "-5"],
    ["vocab", "extend", "M", "--terms", "t.txt", "--out", "o", "--min-term-count", "0"],
    ["vocab", "extend", "M", "--terms", "t.txt", "--out", "o", "--max-terms", "0"],
])
def test_numeric_options_are_validated(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --" in err and ("at least 1" in err or "expected" in err)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": -1}, {"threads": 0}, {"batch_size": 2.5}, {"threads": True}])
def test_load_validates_numbers(kwargs, tiny_folder):
    with pytest.raises(InputError, match="positive integer"):
        toolkit.load(str(tiny_folder), tasks="ner", **kwargs)


# ------------------------------------------------------------------ 11: one line, exit 2; devices; pipes; NaN
def test_cuda_on_cpu_build_is_one_line(tiny_folder, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert main(["run", str(tiny_folder), "--tasks", "ner", "--device", "cuda", "张三"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cpu" in err and "Traceback" not in err


@pytest.mark.parametrize("device", ["gpu", "cuda:x"])
def test_invalid_device(device, tiny_folder):
    with pytest.raises(RuntimeUnavailableError, match="use 'cpu'"):
        toolkit.load(str(tiny_folder), tasks="ner", device=device)


def test_errors_are_one_line_even_when_the_message_is_not(tiny_folder, broken_pipeline, capsys):
    from toolkit.errors import DataError

    broken_pipeline.error = DataError("a.txt:3: no tag\n    line: '中'\n    expected: '<char> <TAG>'")
    assert main(["run", str(tiny_folder), "--tasks", "ner", "张三"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a.txt:3: no tag; line:" in err


def test_closed_pipe_is_quiet(tiny_folder):
    proc = subprocess.Popen([sys.executable, "-m", "toolkit.cli", "info", str(tiny_folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes (like `| head` that exits)
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert err == ""


def test_nan_output_is_an_error_not_json(tiny_folder, capsys, monkeypatch):
    from toolkit.runtime.pipeline import TextPipeline

    monkeypatch.setattr(TextPipeline, "__call__", lambda self, texts, **kw: [{"label": "pos", "score": float("nan")} for _ in texts])
    assert main(["run", str(tiny_folder), "--tasks", "sentiment", "好"]) == 2
    captured = capsys.readouterr()
    assert "NaN" not in captured.out and "argument:1" in captured.err and "NaN or Infinity" in captured.err


# ------------------------------------------------------------------ 13: BOM, texts with -i
def test_bom_is_stripped_from_input_file(tmp_path, tiny_folder, capsys):
    src = tmp_path / "in.txt"
    src.write_bytes("\ufeff张三\n北京\n".encode("utf-8"))
    assert main(["run", str(tiny_folder), "--tasks", "ner", "-i", str(src)]) == 0
    assert [r["text"] for r in _rows(capsys.readouterr().out)] == ["张三", "北京"]


def test_bom_is_stripped_from_stdin(monkeypatch, tiny_folder, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("\ufeff张三\n"))
    assert main(["run", str(tiny_folder), "--tasks", "ner"]) == 0
    assert _rows(capsys.readouterr().out)[0]["text"] == "张三"


def test_texts_with_input_file_is_an_error(tmp_path, tiny_folder, capsys):
    src = tmp_path / "in.txt"
    src.write_text("张三\n", encoding="utf-8")
    assert main(["run", str(tiny_folder), "--tasks", "ner", "-i", str(src), "北京"]) == 2
    assert "not both" in capsys.readouterr().err


# ------------------------------------------------------------------ 15: threads
def test_threads_option_sets_torch_threads(tiny_folder, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["run", str(tiny_folder), "--tasks", "ner", "--threads", "1", "张三"]) == 0
        assert torch.get_num_threads() == 1
        torch.set_num_threads(3)
        toolkit.load(str(tiny_folder), tasks="ner", threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_load_without_threads_leaves_torch_alone(tiny_folder):
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        toolkit.load(str(tiny_folder), tasks="ner")
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ 17: gaps
def test_run_onnx_int8(tmp_path, tiny_folder, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import shutil

    folder = shutil.copytree(tiny_folder, tmp_path / "tiny")  # the export goes into the folder
    assert main(["run", str(folder), "--tasks", "ner", "--runtime", "onnx", "--quantize", "int8", "--export", "--threads", "1", "张三在北京"]) == 0
    row = _rows(capsys.readouterr().out)[0]
    assert row["text"] == "张三在北京" and isinstance(row["result"], list)


def test_quantize_without_onnx_runtime_says_so(tiny_folder, capsys):
    assert main(["run", str(tiny_folder), "--tasks", "ner", "--quantize", "int8", "张三"]) == 2
    assert "--runtime onnx" in capsys.readouterr().err


def test_eval_on_a_user_file(tmp_path, tiny_folder, capsys):
    gold = tmp_path / "test.txt"
    gold.write_text("张 B-PER\n三 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n\n医 B-ORG\n院 I-ORG\n", encoding="utf-8")
    out = tmp_path / "scores.json"
    assert main(["eval", str(tiny_folder), str(gold), "--task", "ner", "--format", "columns", "--option", "scheme=BIO", "--threads", "1", "-o", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 2 and result["metric"] == "micro_f1" and result["micro"]["support"] == 3
    assert result["dataset"] == {"path": str(gold), "format": "columns", "scheme": "BIO"}
    assert json.loads(out.read_text(encoding="utf-8")) == result


def test_eval_guesses_the_format_from_the_extension(tmp_path, tiny_folder, capsys):
    gold = tmp_path / "test.bio"
    gold.write_text("张 B-PER\n三 I-PER\n", encoding="utf-8")
    assert main(["eval", str(tiny_folder), str(gold), "--task", "ner"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"]["format"] == "columns"


def test_eval_options_need_a_file(tiny_folder, capsys):
    assert main(["eval", str(tiny_folder), "cmeee:dev", "--task", "ner", "--option", "scheme=BIO"]) == 2
    assert "apply to a file" in capsys.readouterr().err


@pytest.fixture()
def tiny_names(monkeypatch, tiny_folder):
    """Registered names over the tiny folder, as ``ner-medical`` is over ``zh-multitask``."""
    monkeypatch.setitem(registry.MODELS, "tiny-ner", {"path": str(tiny_folder), "tasks": ["ner"]})
    monkeypatch.setitem(registry.MODELS, "tiny-all", {"path": str(tiny_folder), "tasks": None})
    return tiny_folder


@pytest.mark.parametrize("spec", ["tiny-ner, sentiment", " tiny_ner ,sentiment ", "ner,sentiment"])
def test_tasks_accepts_registered_names_and_spaces(spec, tiny_names, capsys):
    assert main(["run", str(tiny_names), "--tasks", spec, "张三"]) == 0
    assert sorted(_rows(capsys.readouterr().out)[0]["result"]) == ["ner", "sentiment"]


def test_unknown_task_lists_the_valid_names(tiny_names, capsys):
    assert main(["run", str(tiny_names), "--tasks", "tiny-nerr", "张三"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'tiny_ner'" in err and "ner, sentiment, match" in err and "tiny-ner" in err


def test_vocab_extend_keeps_a_names_selection(tmp_path, tiny_names, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("𠮷野家\n𠮷\n", encoding="utf-8")
    out = tmp_path / "ext"
    assert main(["vocab", "extend", "tiny-ner", "--from-corpus", str(corpus), "--out", str(out), "--min-count", "1"]) == 0
    pipe = toolkit.load(str(out))
    assert pipe.tasks == ["ner"] and sorted(p.name for p in (out / "heads").iterdir()) == ["ner.safetensors"]


def test_info_shows_glossary_and_score_splits(tiny_folder, capsys):
    assert main(["info", str(tiny_folder)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tasks"]["ner"]["glossary"]["labels"]["ORG"] == "机构名 organisation"
    assert "glossary" not in info["tasks"]["sentiment"]  # labels neg/pos: no known label set
    assert "split" in info["about_scores"] and info["benchmark"] == []


def test_glossary_matches_the_model_cards():
    root = Path(registry.__file__).resolve().parent.parent / "pretrained"
    cards = {"cmeee": ["zh-multitask/cards/ner-medical.md", "ner-medical-small/README.md"],
             "msra": ["zh-multitask/cards/ner-general.md", "ner-general/README.md"], "chnsenticorp": ["zh-multitask/cards/sentiment.md", "sentiment/README.md"],
             "chip-sts": ["zh-multitask/cards/similarity-medical.md", "similarity-medical/README.md"]}
    for key, paths in cards.items():
        for path in paths:
            if not (root / path).is_file():
                pytest.skip(f"{path} is not in this checkout")
            text = (root / path).read_text(encoding="utf-8")
            for label, meaning in registry.GLOSSARY[key]["labels"].items():
                assert f"| {label} | {meaning} |" in text, (path, label)



@pytest.mark.slow
@pytest.mark.parametrize("name", ["zh-multitask", "ner-medical-small"])
def test_info_quotes_the_readme_numbers(name, capsys):
    from toolkit.cli import BENCHMARK_FILE

    readme = BENCHMARK_FILE.parent.parent.parent / "README.md"
    if not (BENCHMARK_FILE.is_file() and readme.is_file()) or name not in registry.MODELS:
        pytest.skip("needs the repository's README and benchmarks/results/accuracy.json")
    assert main(["info", name]) == 0
    rows = json.loads(capsys.readouterr().out)["benchmark"]
    assert rows and all(r["split"] and r["metric"] for r in rows)
    text = readme.read_text(encoding="utf-8")
    for row in rows:
        assert f"{row['scores']['torch']:.2f}" in text, row
