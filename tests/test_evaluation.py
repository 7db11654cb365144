"""Evaluation on both runtimes: one scorer, the same scores for PyTorch and fp32 ONNX, agreement counts."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from toolkit import kinds

from toolkit.runtime.evaluation import (
    agreement,
    compare_runtimes,
    evaluate,
    evaluate_pipeline,
    runtime_spec,
)
from toolkit.runtime.pipeline import build_pipeline

# Hand-written texts (not from any corpus); the gold labels are arbitrary, the scores only need to be defined.
TEXTS = [
    "张三在北京大学医院工作",
    "李明去上海出差了",
    "王医生说患者三天前出现发热、咳嗽",
    "刘老师在广州的公司上班",
    "陈先生既往有糖尿病史",
    "赵女士来深圳银行开会",
    "今天天气很好",
    "我们都很喜欢这本书",
]
PAIRS = [("头痛怎么办", "头疼如何治疗"), ("发热咳嗽", "感冒发热"), ("北京医院", "上海银行"), ("胃痛", "肠胃炎症")]
KINDS = {"ner": "tagger", "sentiment": "classifier", "match": "matcher"}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, dict]:
    """One small data file per task, as ``{"path", "format"}`` references."""
    root = tmp_path_factory.mktemp("eval-data")
    ner = [{"text": t, "spans": [{"start": 0, "end": 2, "label": "PER"}]} for t in TEXTS]
    cls = [{"text": t, "label": ["neg", "pos"][i % 2]} for i, t in enumerate(TEXTS)]
    pair = [{"text1": a, "text2": b, "label": str(i % 2)} for i, (a, b) in enumerate(PAIRS)]
    return {
        "ner": {"path": str(write_jsonl(root / "ner.jsonl", ner)), "format": "json-spans"},
        "sentiment": {"path": str(write_jsonl(root / "cls.jsonl", cls)), "format": "json-cls"},
        "match": {"path": str(write_jsonl(root / "pair.jsonl", pair)), "format": "json-pair"},
    }


@pytest.mark.parametrize("task", list(KINDS))
def test_evaluate_scores_a_file_on_torch(tiny_folder, data, task):
    result = evaluate(str(tiny_folder), data[task], task=task, progress=False)
    assert (result["model"], result["task"], result["runtime"], result["metric"]) == ("tiny", task, "torch", kinds.get(KINDS[task]).metric)
    assert result["n"] == (len(PAIRS) if task == "match" else len(TEXTS)) and 0 <= result["main"] <= 1


def test_own_predictions_as_gold_score_one(tiny_model, tmp_path):
    """Offsets and labels go through the scorer unchanged: the model's own output scores 1.0."""
    found = build_pipeline(tiny_model, ["ner"])(TEXTS)
    assert any(found), "the sharpened random model finds entities"
    ner = [{"text": t, "spans": [{"start": e.start, "end": e.end, "label": e.label} for e in f]} for t, f in zip(TEXTS, found)]
    result = evaluate(tiny_model, {"path": str(write_jsonl(tmp_path / "own.jsonl", ner)), "format": "json-spans"}, task="ner", progress=False)
    assert result["main"] == 1.0 and result["micro"]["support"] == sum(map(len, found))
    labels = [r["label"] for r in build_pipeline(tiny_model, ["sentiment"])(TEXTS)]
    cls = [{"text": t, "label": lab} for t, lab in zip(TEXTS, labels)]
    assert evaluate(tiny_model, {"path": str(write_jsonl(tmp_path / "own-cls.jsonl", cls)), "format": "json-cls"}, task="sentiment", progress=False)["main"] == 1.0


def test_exclude_leaves_out_texts_of_another_split(tiny_folder, data, tmp_path):
    other = {"path": str(write_jsonl(tmp_path / "train.jsonl", [{"text": t, "label": "pos"} for t in TEXTS[:3]])), "format": "json-cls"}
    result = evaluate(str(tiny_folder), data["sentiment"], task="sentiment", exclude=other, progress=False)
    assert (result["n"], result["excluded"], result["exclude"]) == (len(TEXTS) - 3, 3, other)


def test_evaluate_pipeline_is_the_same_scorer(tiny_model, data):
    from toolkit.data.refs import load_examples

    examples = load_examples(data["ner"])
    result = evaluate_pipeline(build_pipeline(tiny_model, ["ner"]), "ner", examples, keep_predictions=True)
    assert len(result["predictions"]) == len(examples) and all(p == sorted(p) for p in result["predictions"])
    direct = evaluate(tiny_model, data["ner"], task="ner", progress=False)
    assert {k: v for k, v in result.items() if k not in ("seconds", "predictions")} == {k: v for k, v in direct.items() if k in result and k != "seconds"}


def test_agreement_counts_identical_predictions():
    assert agreement([[(0, 2, "PER")], [], "pos", "neg"], [[(0, 2, "PER")], [], "pos", "neg"]) == 1.0
    assert agreement([[(0, 2, "PER")], [], "pos", "neg"], [[(0, 2, "LOC")], [(1, 2, "PER")], "pos", "neg"]) == 0.5
    assert agreement([], []) == 1.0
    with pytest.raises(ValueError, match="same examples"):
        agreement(["pos"], [])


def test_runtime_arguments_are_checked(tiny_model, tiny_folder, data):
    assert runtime_spec("onnx", "int8") == "onnx-int8"
    with pytest.raises(ValueError, match="onnx-int8"):
        evaluate(str(tiny_folder), data["sentiment"], task="sentiment", quantize="int8", progress=False)
    with pytest.raises(ValueError, match="unknown runtime"):
        evaluate(str(tiny_folder), data["sentiment"], task="sentiment", runtime="tensorrt", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="folder"):
        evaluate(tiny_model, data["sentiment"], task="sentiment", runtime="onnx", progress=False)
    with pytest.raises(ValueError, match="unknown runtime"):
        compare_runtimes(str(tiny_folder), data["sentiment"], task="sentiment", runtimes=["torch", "onnx-fp16"], progress=False)
    with pytest.raises(ValueError, match="several tasks"):
        evaluate(str(tiny_folder), data["sentiment"], progress=False)


# ------------------------------------------------------------------ ONNX Runtime
@pytest.fixture(scope="module")
def exported(tiny_folder, tmp_path_factory) -> Path:
    """A copy of ``tiny_folder`` with its fp32 and int8 exports."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from toolkit.runtime.export import export_onnx

    path = Path(shutil.copytree(tiny_folder, tmp_path_factory.mktemp("eval-onnx") / "tiny", ignore=shutil.ignore_patterns("onnx")))
    export_onnx(path, quantize="int8")
    return path


def _scores(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("seconds", "runtime")}


@pytest.mark.parametrize("task", list(KINDS))
def test_onnx_fp32_scores_equal_torch(exported, data, task):
    on_torch = evaluate(str(exported), data[task], task=task, progress=False)
    on_onnx = evaluate(str(exported), data[task], task=task, runtime="onnx", progress=False)
    assert on_onnx["runtime"] == "onnx" and _scores(on_onnx) == _scores(on_torch)


@pytest.mark.parametrize("task", list(KINDS))
def test_compare_runtimes_fp32_agrees_and_int8_runs(exported, data, task):
    out = compare_runtimes(str(exported), data[task], task=task, runtimes=["torch", "onnx", "onnx-int8"], progress=False)
    assert out["reference"] == "torch" and list(out["runtimes"]) == ["torch", "onnx", "onnx-int8"]
    assert out["agreement"]["torch"] == out["agreement"]["onnx"] == 1.0 and out["disagreements"]["onnx"] == 0
    assert _scores(out["runtimes"]["onnx"]) == _scores(out["runtimes"]["torch"])
    int8 = out["runtimes"]["onnx-int8"]
    assert int8["runtime"] == "onnx-int8" and int8["n"] == out["n"] and 0 <= int8["main"] <= 1
    assert 0 <= out["agreement"]["onnx-int8"] <= 1 and out["disagreements"]["onnx-int8"] == round((1 - out["agreement"]["onnx-int8"]) * out["n"])
