"""load(runtime="auto") (toolkit.runtime.auto) and PyTorch bf16 inference, on the tiny random model.

The CPU and the timing are mocked where a test depends on them: nothing here asserts a speed or
depends on the CPU the tests run on."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

import toolkit
from toolkit.cpu import CpuInfo
from toolkit.runtime import auto

AMX = CpuInfo("Fake Xeon with AMX", frozenset({"amx_bf16", "avx512_bf16", "avx512f", "avx2"}))
NO_BF16 = CpuInfo("Fake CPU without bf16", frozenset({"avx2", "fma"}))
TEXTS = ["张三在北京工作", "患者三天前出现发热、咳嗽。", "服务很好", "王五去上海的医院看病"]


@pytest.fixture(autouse=True)
def clean_env(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("TOOLKIT_HOME", str(tmp_path / "home"))  # a fresh runtime cache and no cached ONNX exports
    monkeypatch.delenv(auto.ENV, raising=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # load(threads=...) sets torch's process-wide number


@pytest.fixture
def folder(tiny_folder, tmp_path):
    """The tiny model folder without any ONNX export."""
    return shutil.copytree(tiny_folder, tmp_path / "tiny", ignore=shutil.ignore_patterns("onnx"))


def runtime_of(pipe) -> str:
    """Which candidate a pipeline runs (from its runner)."""
    runner = pipe.runner
    if hasattr(runner, "dtype"):
        return "torch-bf16" if runner.dtype == "bf16" else "torch"
    return "onnx-int8" if "int8" in runner.path.name else "onnx"


def fake_measure(monkeypatch, speeds: dict[str, float], change=None) -> list[str]:
    """Replace the timing: real answers on the probe (``change(name, outputs)`` may alter them), ``speeds`` chars/s."""
    calls: list[str] = []

    def measure(pipes, *args, **kwargs):
        assert list(pipes) == [runtime_of(p) for p in pipes.values()]
        calls.extend(pipes)
        found = {name: auto.answers(pipe) for name, pipe in pipes.items()}
        return {name: speeds[name] for name in pipes}, {name: change(name, out) if change else out for name, out in found.items()}

    monkeypatch.setattr(auto, "measure", measure)
    return calls


def as_reference():
    """A ``change`` for :func:`fake_measure`: every candidate answers what the first one measured did
    (bf16 agrees with fp32 to about 0.99 on the random model's probe answers: how closely depends on the CPU)."""
    first: list = []

    def change(name, outputs):
        first.extend([] if first else [outputs])
        return first[0]

    return change


def no_measure(monkeypatch) -> None:
    monkeypatch.setattr(auto, "measure", lambda *a, **k: pytest.fail("must not measure"))


def test_environment_forces_the_choice(folder, monkeypatch):
    no_measure(monkeypatch)
    monkeypatch.setenv(auto.ENV, "torch-bf16")
    pipe = toolkit.load(str(folder), tasks="ner", runtime="auto")
    assert runtime_of(pipe) == "torch-bf16"
    assert pipe.runtime_choice["name"] == "torch-bf16" and pipe.runtime_choice["reason"] == f"${auto.ENV}=torch-bf16"
    assert auto.choose_runtime(folder) == ({"runtime": "torch", "dtype": "bf16"}, f"${auto.ENV}=torch-bf16")
    monkeypatch.setenv(auto.ENV, "tensorrt")
    with pytest.raises(ValueError, match="TOOLKIT_RUNTIME must be one of torch, torch-bf16, onnx, onnx-int8"):
        toolkit.load(str(folder), runtime="auto")


def test_the_choice_is_cached_and_reused(folder, monkeypatch, tmp_path):
    monkeypatch.setattr(auto, "cpu_info", lambda: AMX)
    calls = fake_measure(monkeypatch, {"torch": 1000.0, "torch-bf16": 3000.0}, as_reference())
    pipe = toolkit.load(str(folder), runtime="auto")  # all three heads: text and pair probes
    assert calls == ["torch", "torch-bf16"] and runtime_of(pipe) == "torch-bf16"
    choice = pipe.runtime_choice
    assert choice["name"] == "torch-bf16" and not choice["cached"] and choice["chars_per_s"] == {"torch": 1000.0, "torch-bf16": 3000.0}
    assert choice["agreement"] == {"torch-bf16": 1.0} and pipe.text.runtime_choice == choice
    files = list((tmp_path / "home" / "runtime").glob("*.json"))
    assert files == [auto.cache_file(AMX)]
    data = json.loads(files[0].read_text(encoding="utf-8"))
    assert data["cpu"] == AMX.model and "amx_bf16" in data["flags"] and set(data["versions"]) == {"torch", "onnxruntime"}
    assert [e["choice"] for e in data["entries"].values()] == ["torch-bf16"]

    no_measure(monkeypatch)
    again = toolkit.load(str(folder), runtime="auto")
    assert again.runtime_choice["name"] == "torch-bf16" and again.runtime_choice["cached"] and runtime_of(again) == "torch-bf16"
    assert again.runtime_choice["chars_per_s"] == choice["chars_per_s"] and "cached measurement" in again.runtime_choice["reason"]
    assert again(("头痛", "头疼"))["match"]["label"] in ("0", "1")

    calls = fake_measure(monkeypatch, {"torch": 1000.0, "torch-bf16": 1050.0}, as_reference())
    other = toolkit.load(str(folder), runtime="auto", threads=1)  # other settings: measured again; 1.05x is not enough
    assert calls == ["torch", "torch-bf16"] and other.runtime_choice["name"] == "torch"
    assert auto.choose_runtime(folder, cache=False)[0] == {"runtime": "torch"}


def test_missing_exports_are_not_candidates_and_nothing_is_exported(folder, monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(auto, "cpu_info", lambda: NO_BF16)
    no_measure(monkeypatch)
    with caplog.at_level(logging.INFO, logger="toolkit.runtime.auto"):
        assert auto.candidates(folder, NO_BF16) == ["torch"]
        pipe = toolkit.load(str(folder), tasks="ner", runtime="auto")  # one candidate: nothing to measure
    assert pipe.runtime_choice["name"] == "torch" and "only runtime" in pipe.runtime_choice["reason"]
    if auto._installed("onnxruntime"):
        assert f"toolkit export {folder} --quantize int8" in caplog.text and f"toolkit export {folder}`" in caplog.text
    assert not (folder / "onnx").exists() and not (tmp_path / "home" / "onnx").exists()


def test_a_candidate_that_disagrees_is_rejected(folder, monkeypatch, caplog):
    monkeypatch.setattr(auto, "cpu_info", lambda: AMX)

    def flip(name, outputs):  # bf16 "answers" every sentiment with the other label
        if name == "torch-bf16":
            outputs["sentiment"] = [{**r, "label": "pos" if r["label"] == "neg" else "neg"} for r in outputs["sentiment"]]
        return outputs

    fake_measure(monkeypatch, {"torch": 1000.0, "torch-bf16": 5000.0}, flip)
    with caplog.at_level(logging.INFO, logger="toolkit.runtime.auto"):
        pipe = toolkit.load(str(folder), runtime="auto")
    choice = pipe.runtime_choice
    assert choice["name"] == "torch" and runtime_of(pipe) == "torch"
    assert choice["agreement"]["torch-bf16"] < auto.MIN_AGREEMENT and "rejected" in choice["reason"] and "rejects torch-bf16" in caplog.text


def test_agreement_uses_the_kinds_own_scores(tiny_folder):
    kinds = toolkit.load(str(tiny_folder), tasks=["ner", "sentiment"]).kinds
    ref = {"ner": [[], []], "sentiment": [{"label": "pos"}, {"label": "neg"}]}
    assert auto.agreement(kinds, ref, ref) == 1.0  # no entity anywhere: identical, not an F1 of 0
    half = {"ner": [[], []], "sentiment": [{"label": "pos"}, {"label": "pos"}]}
    assert auto.agreement(kinds, ref, half) == 0.5


def test_every_candidate_is_measured_when_the_exports_exist(folder, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from toolkit.runtime.export import export_onnx

    export_onnx(folder)
    export_onnx(folder, quantize="int8")
    monkeypatch.setattr(auto, "cpu_info", lambda: NO_BF16)
    assert auto.candidates(folder, NO_BF16) == ["torch", "onnx", "onnx-int8"]
    pipe = auto.load_auto(str(folder), tasks="ner", threads=1, cache=False)
    choice = pipe.runtime_choice
    assert set(choice["chars_per_s"]) == {"torch", "onnx", "onnx-int8"} and set(choice["agreement"]) == {"onnx", "onnx-int8"}
    assert runtime_of(pipe) == choice["name"] and choice["load"] == {"torch": {"runtime": "torch"}, "onnx": {"runtime": "onnx"},
                                                                       "onnx-int8": {"runtime": "onnx", "quantize": "int8"}}[choice["name"]]
    assert choice["agreement"]["onnx"] == 1.0  # fp32 ONNX answers what PyTorch answers
    assert isinstance(pipe(TEXTS[0]), list)


def test_bf16_gives_the_labels_of_fp32(tiny_folder):
    fp32 = toolkit.load(str(tiny_folder), tasks=["ner", "sentiment"])
    bf16 = toolkit.load(str(tiny_folder), tasks=["ner", "sentiment"], dtype="bf16")
    assert bf16.runner.dtype == "bf16"
    a, b = fp32(TEXTS), bf16(TEXTS)
    assert [sorted((e.start, e.end, e.label) for e in r["ner"]) for r in a] == [sorted((e.start, e.end, e.label) for e in r["ner"]) for r in b]
    assert [r["sentiment"]["label"] for r in a] == [r["sentiment"]["label"] for r in b]
    batch = {"input_ids": np.array([[2, 300, 301, 3]]), "attention_mask": np.ones((1, 4), dtype=np.int64)}
    out = bf16.runner.run(batch, ["ner"])["ner"]
    assert out.dtype == np.float32  # decoding (the CRF's Viterbi) gets fp32 whatever the runtime's dtype


@pytest.mark.parametrize("options, match", [
    ({"runtime": "onnx", "dtype": "bf16"}, "runtime='torch'"),
    ({"runtime": "torch", "dtype": "fp16"}, "dtype must be"),
    ({"runtime": "auto", "quantize": "int8"}, "chooses the runtime"),
    ({"runtime": "auto", "dtype": "bf16"}, "chooses the runtime"),
])
def test_contradictory_options_are_refused(tiny_folder, options, match):
    with pytest.raises(ValueError, match=match):
        toolkit.load(str(tiny_folder), **options)


def test_the_cli_accepts_auto_everywhere(folder, monkeypatch, capsys, tmp_path):
    from toolkit.cli import build_parser, main

    parser = build_parser()
    for argv in (["run", "m", "x"], ["eval", "m", "cmeee:dev"], ["batch", "m", "-i", "a.txt", "-o", "out"], ["serve", "m"]):
        assert parser.parse_args(argv + ["--runtime", "auto"]).runtime == "auto"
        # bulk jobs measure (it repays itself); one-off runs, scores and the server stay on PyTorch fp32
        assert parser.parse_args(argv).runtime == ("auto" if argv[0] == "batch" else "torch")
    monkeypatch.setenv(auto.ENV, "torch")
    assert main(["run", str(folder), "--tasks", "ner", "--runtime", "auto", "张三在北京"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "张三在北京"
    data = tmp_path / "test.jsonl"
    data.write_text('{"text": "张三在北京工作", "spans": [{"start": 0, "end": 2, "label": "PER"}]}\n', encoding="utf-8")
    monkeypatch.setenv(auto.ENV, "torch-bf16")
    assert main(["eval", str(folder), str(data), "--task", "ner", "--runtime", "auto"]) == 0
    assert json.loads(capsys.readouterr().out)["runtime"] == "torch-bf16"  # eval reports what auto chose
    assert main(["run", str(folder), "--runtime", "auto", "--quantize", "int8", "张三"]) == 2
    assert "--runtime onnx" in capsys.readouterr().err


def test_auto_without_torch_chooses_among_the_exports(folder, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from test_without_torch import run_without_torch
    from toolkit.runtime.export import export_onnx

    export_onnx(folder)  # made here, with torch; the int8 graph is missing
    out = run_without_torch(f"""
        import json, toolkit
        pipe = toolkit.load({str(folder)!r}, tasks="ner", runtime="auto")
        print(json.dumps({{"choice": pipe.runtime_choice, "n": len(pipe("张三在北京工作")), "torch": "torch" in sys.modules}}))
    """, tmp_path)
    assert out["choice"]["name"] == "onnx" and "only runtime" in out["choice"]["reason"] and out["torch"] is False


def test_candidates_are_timed_in_interleaved_rounds_and_keep_their_fastest_pass(tiny_folder, monkeypatch):
    """Regression (issue 15, runtime_auto.md): each candidate was timed alone on one batch of the probe,
    mostly padding, so a busy moment or a cold start decided the pick. Now: rounds, every candidate once
    per round, each pass over PROBE_COPIES copies of the probe; the fastest pass counts."""
    pipe = toolkit.load(str(tiny_folder), tasks="ner")
    order: list[str] = []
    seconds = {"a": iter([2.0, 1.0, 4.0]), "b": iter([1.0, 3.0, 1.0])}

    def fake_pass(p):
        order.append(p.name)
        return 600, next(seconds[p.name])

    monkeypatch.setattr(auto, "time_pass", fake_pass)
    a, b = pipe.with_runner(pipe.runner), pipe.with_runner(pipe.runner)
    a.name, b.name = "a", "b"
    speeds, outputs = auto.measure({"a": a, "b": b}, rounds=3, budget_s=100.0)
    assert order == ["a", "b", "a", "b", "a", "b"] and speeds == {"a": 600.0, "b": 600.0}
    assert outputs["a"] == outputs["b"] and len(outputs["a"]["ner"]) == len(auto.PROBE_TEXTS)
    order.clear()
    seconds = {"a": iter([2.0, 1.0]), "b": iter([1.0, 3.0])}
    auto.measure({"a": a, "b": b}, rounds=3, budget_s=1.0)  # the budget is spent: two rounds, no third
    assert order == ["a", "b", "a", "b"]


def test_a_timed_pass_runs_copies_of_the_probe(tiny_folder, monkeypatch):
    pipe = toolkit.load(str(tiny_folder), tasks="ner")
    seen: list[int] = []
    real = pipe.run
    monkeypatch.setattr(pipe, "run", lambda inputs, *a, **k: seen.append(len(inputs)) or real(inputs, *a, **k))
    chars, took = auto.time_pass(pipe)
    assert seen == [auto.PROBE_COPIES * len(auto.PROBE_TEXTS)] and chars == auto.PROBE_COPIES * sum(map(len, auto.PROBE_TEXTS)) and took > 0
