"""End to end: every registered model on sentences written for these tests (not from any corpus).

Each case states what any reasonable model of that kind must find. A registered model whose folder
is missing fails here; an empty registry has nothing to check.
"""
from __future__ import annotations

import pytest

import toolkit
from toolkit.registry import MODELS

# name -> [(input, expected)]: for NER, (entity text, label) pairs that must be among the output.
CASES: dict[str, list] = {
    "ner-medical": [
        ("患者三天前出现发热、咳嗽，既往有2型糖尿病史。", [("发热", "sym"), ("咳嗽", "sym"), ("2型糖尿病", "dis")]),
        ("予阿莫西林口服治疗。", [("阿莫西林", "dru")]),
        ("患儿反复咳嗽，支气管肺炎诊断明确。", [("咳嗽", "sym"), ("反复咳嗽", "sym"), ("支气管肺炎", "dis")]),  # nested: the span head
    ],
    "ner-medical-small": [
        ("患者三天前出现发热、咳嗽，既往有2型糖尿病史。", [("发热", "sym"), ("咳嗽", "sym"), ("2型糖尿病", "dis")]),
        ("予阿莫西林口服治疗。", [("阿莫西林", "dru")]),
        ("患者诉右上腹疼痛三天。", [("右上腹", "bod"), ("右上腹疼痛", "sym")]),  # nested: the span head
    ],
    "ner-general": [
        ("张伟昨天在北京参观了清华大学。", [("张伟", "PER"), ("北京", "LOC"), ("清华大学", "ORG")]),
    ],
    "ner-general-small": [
        ("张伟昨天在北京参观了清华大学。", [("张伟", "PER"), ("北京", "LOC"), ("清华大学", "ORG")]),
    ],
    "sentiment": [("这家酒店的服务非常好，房间干净，下次还会再来。", "positive"), ("质量太差了，用了两天就坏了，非常失望。", "negative")],
    "sentiment-small": [("这家酒店的服务非常好，房间干净，下次还会再来。", "positive"), ("质量太差了，用了两天就坏了，非常失望。", "negative")],
    "similarity-medical": [(("糖尿病人能吃西瓜吗", "糖尿病患者可以吃西瓜吗"), "1"), (("高血压吃什么药", "感冒了怎么办"), "0")],
    "similarity-medical-small": [(("糖尿病人能吃西瓜吗", "糖尿病患者可以吃西瓜吗"), "1"), (("高血压吃什么药", "感冒了怎么办"), "0")],
    # every head at once: text heads on a text, the pair head on a pair ({task: expected})
    "zh-multitask": [
        ("王医生说患者的咳嗽好多了，服务也很周到，很满意。", {"ner_medical": [("咳嗽", "sym")], "sentiment": "positive"}),
        (("糖尿病人能吃西瓜吗", "糖尿病患者可以吃西瓜吗"), {"similarity_medical": "1"}),
    ],
}


def check(given, out, expected) -> None:
    """``out`` (one pipeline result) contains what ``expected`` says."""
    if isinstance(expected, dict):
        for task, want in expected.items():
            check(given, out[task], want)
    elif isinstance(expected, list):
        found = {(e.text, e.label) for e in out}
        assert set(expected) <= found, (given, out)
        assert all(given[e.start : e.end] == e.text for e in out)
    else:
        assert out["label"] == expected, (given, out)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS) or [pytest.param(None, marks=pytest.mark.skip(reason="no model registered yet"))])
def test_registered_model_end_to_end(name):
    assert name in CASES, f"write hand-made test cases for {name!r} in CASES"
    pipe = toolkit.load(name)
    for given, expected in CASES[name]:
        check(given, pipe(given), expected)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS) or [pytest.param(None, marks=pytest.mark.skip(reason="no model registered yet"))])
def test_registered_model_on_onnx_runtime(name):
    """The exported graph gives the PyTorch results (fp32), and int8 still gets every case right."""
    pytest.importorskip("onnxruntime")
    torch_pipe = toolkit.load(name)
    fp32, int8 = toolkit.load(name, runtime="onnx", export=True), toolkit.load(name, runtime="onnx", quantize="int8", export=True)  # exported once if missing
    for given, expected in CASES[name]:
        want, got = _split(torch_pipe(given)), _split(fp32(given))
        assert got[0] == want[0], given
        assert got[1] == pytest.approx(want[1], abs=1e-3), given
        check(given, int8(given), expected)


def _split(out) -> tuple[list, list[float]]:
    """A pipeline result as (what must be identical, the scores), flattened in a fixed order."""
    exact, scores = [], []
    for value in (out.values() if isinstance(out, dict) and "label" not in out else [out]):
        if isinstance(value, list):
            exact += [(e.text, e.label, e.start, e.end) for e in value]
            scores += [e.score for e in value]
        else:
            exact.append(value["label"])
            scores += [value["score"], *value["scores"].values()]
    return exact, scores
