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
    ],
    "ner-general": [
        ("张伟昨天在北京参观了清华大学。", [("张伟", "PER"), ("北京", "LOC"), ("清华大学", "ORG")]),
    ],
    "sentiment": [("这家酒店的服务非常好，房间干净，下次还会再来。", "1"), ("质量太差了，用了两天就坏了，非常失望。", "0")],
    "similarity-medical": [(("糖尿病人能吃西瓜吗", "糖尿病患者可以吃西瓜吗"), "1"), (("高血压吃什么药", "感冒了怎么办"), "0")],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS) or [pytest.param(None, marks=pytest.mark.skip(reason="no model registered yet"))])
def test_registered_model_end_to_end(name):
    assert name in CASES, f"write hand-made test cases for {name!r} in CASES"
    pipe = toolkit.load(name)
    for given, expected in CASES[name]:
        out = pipe(given)
        if isinstance(expected, list):
            found = {(e.text, e.label) for e in out}
            assert set(expected) <= found, (given, out)
            assert all(given[e.start : e.end] == e.text for e in out)
        else:
            assert out["label"] == expected, (given, out)
