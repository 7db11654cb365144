"""benchmarks/speed.py's plain-data parts: which model runs on which dataset, agreement, the students' ratios."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import speed  # noqa: E402
import speed_report  # noqa: E402

DATA = {
    "msra:test": {"data": "ner", "input": "text"},
    "chnsenticorp:test": {"data": "cls", "input": "text"},
    "chip-sts:dev": {"data": "pair", "input": "pair"},
}


def model(label: str, kind: str, data: str, inputs: str = "text") -> dict:
    return {"label": label, "name": label, "kind": kind, "data": data, "input": inputs, "output": "entities" if data == "ner" else "label"}


@pytest.mark.parametrize("answers, reference, entities, expected", [
    ([[(0, 2, "PER")], []], [[(0, 2, "PER")], [(1, 3, "LOC")]], True, 100 * 2 / 3),
    (["pos", "neg", None], ["pos", "pos", None], False, 100 * 2 / 3),
])
def test_agreement(answers, reference, entities, expected):
    assert speed_report.agreement(answers, reference, entities) == pytest.approx(expected)


def test_each_model_gets_the_datasets_of_its_input_and_data():
    models = [model("ner", "tagger", "ner"), model("sentiment", "classifier", "cls"), model("sts", "matcher", "pair", "pair")]
    speed.assign_datasets(models, DATA, every_text=False)
    assert [m["datasets"] for m in models] == [["msra:test"], ["chnsenticorp:test"], ["chip-sts:dev"]]
    assert [n for n, _ in models[2]["skipped"]] == ["msra:test", "chnsenticorp:test"]
    speed.assign_datasets(models, DATA, every_text=True)
    assert models[1]["datasets"] == ["msra:test", "chnsenticorp:test"] and models[2]["datasets"] == ["chip-sts:dev"]


def test_student_ratio_divides_by_the_hf_pipeline_on_the_teacher():
    models = [model("teacher", "span", "ner"), model("student", "tagger", "ner")]
    for m in models:
        m["datasets"] = ["msra:test"]
    rows = [
        {"model": "teacher", "dataset": "msra:test", "config": "hf-pipeline", "chars_per_s": 1000},
        {"model": "student", "dataset": "msra:test", "config": "hf-pipeline", "chars_per_s": 4000},
        {"model": "student", "dataset": "msra:test", "config": "onnx-int8", "chars_per_s": 31000},
    ]
    pairs = speed_report.pair_report(rows, {}, models, speed.parse_pairs(["student=teacher"], models))
    assert pairs[0]["x_hf_pipeline_on_teacher"] == 31.0 and pairs[0]["agreement_with_teacher_fp32"] is None
    bars = speed_report.check_bars(rows, models, pairs, 30_000)
    assert [(b["value"], b["met"]) for b in bars] == [(31.0, True), (31000, True)]


def test_a_pair_names_models_of_the_run():
    with pytest.raises(SystemExit, match="none of the models"):
        speed.parse_pairs(["small=big"], [model("big", "tagger", "ner")])
