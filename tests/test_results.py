"""Result types (toolkit.results): Label behaves as the dict it replaced, to_json_data, and real
outputs of the tiny model match docs/results.schema.json."""
from __future__ import annotations

import copy
import json
import pickle
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from toolkit import load
from toolkit.cli import main
from toolkit.kinds.decoding import LabelDecoder
from toolkit.results import Entity, Label, to_json_data

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "docs" / "results.schema.json").read_text(encoding="utf-8"))
PLAIN = {"label": "pos", "score": 0.9, "scores": {"neg": 0.1, "pos": 0.9}}
TEXTS = ["张三在北京工作。", "", "  ", "李四去了上海医院", "今天天气很好"]
PAIRS = [("头痛", "头疼"), ("发热", " "), ("北京", "上海")]


def label() -> Label:
    return Label("pos", 0.9, {"neg": 0.1, "pos": 0.9})


# --- a checker for the subset of JSON Schema that docs/results.schema.json uses ----------------------
# (jsonschema is not a dependency of the toolkit; where it is installed, test_schema_is_valid_2020_12
# checks the schema itself and that jsonschema agrees with this checker)

NOTES = {"$schema", "$defs", "title", "description"}
TYPES = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
    "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
    "null": lambda x: x is None,
}


def errors(value: Any, schema: dict, path: str = "$") -> list[str]:
    """What is wrong with ``value`` under ``schema`` ([] when it is valid)."""
    found: list[str] = []
    for key, rule in schema.items():
        if key in NOTES:
            continue
        if key == "$ref":
            assert rule.startswith("#/$defs/"), rule
            found += errors(value, SCHEMA["$defs"][rule.split("/")[-1]], path)
        elif key == "anyOf":
            if all(errors(value, option, path) for option in rule):
                found.append(f"{path}: matches none of anyOf")
        elif key == "type":
            if not any(TYPES[t](value) for t in ([rule] if isinstance(rule, str) else rule)):
                found.append(f"{path}: not of type {rule}")
        elif key in ("minimum", "maximum"):
            if TYPES["number"](value) and (value < rule if key == "minimum" else value > rule):
                found.append(f"{path}: {value} breaks {key} {rule}")
        elif key == "minLength":
            if isinstance(value, str) and len(value) < rule:
                found.append(f"{path}: shorter than {rule}")
        elif key == "minProperties":
            if isinstance(value, dict) and len(value) < rule:
                found.append(f"{path}: fewer than {rule} properties")
        elif key == "required":
            if isinstance(value, dict):
                found += [f"{path}: lacks {k!r}" for k in rule if k not in value]
        elif key == "properties":
            if isinstance(value, dict):
                for k, sub in rule.items():
                    if k in value:
                        found += errors(value[k], sub, f"{path}.{k}")
        elif key == "additionalProperties":
            if isinstance(value, dict):
                for k in value:
                    if k in schema.get("properties", {}):
                        continue
                    if rule is False:
                        found.append(f"{path}: unexpected key {k!r}")
                    elif isinstance(rule, dict):
                        found += errors(value[k], rule, f"{path}.{k}")
        elif key == "items":
            if isinstance(value, list):
                for i, item in enumerate(value):
                    found += errors(item, rule, f"{path}[{i}]")
        else:
            raise AssertionError(f"the test's checker does not know the keyword {key!r}: teach it, or use jsonschema")
    return found


def as_json(result: Any) -> Any:
    """What a client reads: the JSON text parsed back."""
    return json.loads(json.dumps(to_json_data(result), ensure_ascii=False, allow_nan=False))


# --- Label: the dict it replaced -------------------------------------------------------------------

def test_label_equals_the_plain_dict():
    assert label() == PLAIN and PLAIN == label() and label() == label()
    assert label() != {**PLAIN, "label": "neg"}


def test_label_json_is_the_plain_dicts():
    assert json.dumps(label()) == json.dumps(PLAIN)
    assert json.dumps(Label.blank()) == json.dumps({"label": None, "score": None, "scores": {}})


def test_label_keys_items_and_indexing():
    r = label()
    assert list(r) == ["label", "score", "scores"] and list(r.items()) == list(PLAIN.items())
    assert r["label"] == "pos" and r.get("score") == 0.9 and isinstance(r, dict)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_label_pickles(protocol):
    back = pickle.loads(pickle.dumps(label(), protocol=protocol))
    assert type(back) is Label and back == PLAIN and back.scores == PLAIN["scores"]


@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy])
def test_label_copies(clone):
    back = clone(label())
    assert type(back) is Label and back == PLAIN


def test_label_attributes_are_read_only():
    r = label()
    assert (r.label, r.score, r.scores) == ("pos", 0.9, {"neg": 0.1, "pos": 0.9})
    with pytest.raises(AttributeError):
        r.label = "neg"
    with pytest.raises(AttributeError):
        r.other = 1
    assert r == PLAIN


def test_label_to_dict_is_plain():
    d = label().to_dict()
    assert type(d) is dict and type(d["scores"]) is dict and d == PLAIN
    d["scores"]["pos"] = 0.0
    assert label().scores["pos"] == 0.9


def test_label_keeps_its_own_scores():
    scores = {"neg": 0.1, "pos": 0.9}
    r = Label("pos", 0.9, scores)
    scores["pos"] = 0.0
    assert r.scores["pos"] == 0.9


def test_blank_is_a_new_label_each_call():
    a, b = Label.blank(), LabelDecoder.blank()
    assert type(a) is Label and type(b) is Label and a is not b
    assert a == {"label": None, "score": None, "scores": {}} and (a.label, a.score, a.scores) == (None, None, {})


def test_label_decoder_returns_labels_with_the_same_numbers():
    logits = np.array([[0.3, -1.2], [2.0, 2.0]])
    out = LabelDecoder(["neg", "pos"]).decode(logits)
    assert all(type(r) is Label for r in out)
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert out[0] == {"label": "neg", "score": round(float(p[0]), 6), "scores": {"neg": round(float(p[0]), 6), "pos": round(float(p[1]), 6)}}
    assert out[1] == {"label": "neg", "score": 0.5, "scores": {"neg": 0.5, "pos": 0.5}}


# --- Entity ----------------------------------------------------------------------------------------

def test_entity_fields_repr_and_to_dict():
    e = Entity("北京", "LOC", 3, 5, 0.98)
    assert repr(e) == "Entity(text='北京', label='LOC', start=3, end=5, score=0.98)"
    d = e.to_dict()
    assert type(d) is dict and list(d.items()) == [("text", "北京"), ("label", "LOC"), ("start", 3), ("end", 5), ("score", 0.98)]
    with pytest.raises(FrozenInstanceError):
        e.score = 1.0  # type: ignore[misc]


# --- to_json_data ----------------------------------------------------------------------------------

def test_to_json_data_on_nested_results():
    ent = Entity("张三", "PER", 0, 2, 0.99)
    data = to_json_data([{"ner": [ent], "sentiment": label()}, {"ner": (), "sentiment": Label.blank()}])
    assert data == [{"ner": [ent.to_dict()], "sentiment": PLAIN}, {"ner": [], "sentiment": {"label": None, "score": None, "scores": {}}}]
    assert type(data[0]["sentiment"]) is dict and type(data[0]["ner"][0]) is dict and type(data[1]["ner"]) is list


@pytest.mark.parametrize("result", [[], Label.blank(), [[], []], {"t": []}, "text", 3, None])
def test_to_json_data_keeps_plain_data(result):
    assert json.dumps(to_json_data(result)) == json.dumps(result)


def test_to_json_data_is_duck_typed():
    class Other:  # e.g. an entity class defined elsewhere
        def to_dict(self) -> dict:
            return {"text": "x", "nested": label()}

    assert to_json_data({"t": [Other()]}) == {"t": [{"text": "x", "nested": PLAIN}]}
    assert type(to_json_data([Other()])[0]["nested"]) is dict


def test_to_json_data_takes_the_pipeline_entity_class_too():
    from toolkit.runtime import pipeline

    e = pipeline.Entity("北京", "LOC", 3, 5, 0.98)
    assert to_json_data([e]) == to_json_data([Entity("北京", "LOC", 3, 5, 0.98)])


# --- the schema, on real outputs -------------------------------------------------------------------

def test_schema_is_valid_2020_12():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for value in [[], PLAIN, {"ner": []}, [{"text": "", "label": "X", "start": 0, "end": 1, "score": 2}], {"label": "x"}, {}]:
        assert validator.is_valid(value) == (errors(value, SCHEMA) == []), value


@pytest.mark.parametrize("bad", [
    [{"text": "北京", "label": "LOC", "start": 0, "end": 2}],  # no score
    [{"text": "北京", "label": "LOC", "start": 0, "end": 2, "score": 1.5}],
    [{"text": "北京", "label": "LOC", "start": 0, "end": 2, "score": 0.5, "extra": 1}],
    [{"text": "北京", "label": "LOC", "start": 0.0, "end": 2, "score": 0.5}],
    {"label": "pos", "score": 0.9},  # no scores
    {"label": "pos", "score": 0.9, "scores": {"pos": "0.9"}},
    {"ner": {"label": 1}},
    {},
    "pos",
])
def test_schema_rejects_malformed_results(bad):
    assert errors(bad, SCHEMA)


@pytest.fixture(scope="module")
def outputs(tiny_folder) -> dict[str, list]:
    folder = str(tiny_folder)
    return {
        "tagger": load(folder, tasks="ner")(TEXTS),
        "classifier": load(folder, tasks="sentiment")(TEXTS),
        "matcher": load(folder, tasks="match")(PAIRS),
        "list of one task": load(folder, tasks=["sentiment"])(TEXTS),
        "text heads": load(folder, tasks=["ner", "sentiment"])(TEXTS),
        "multi-task, texts": load(folder)(TEXTS),
        "multi-task, pairs": load(folder)(PAIRS),
    }


@pytest.mark.parametrize("kind", ["tagger", "classifier", "matcher", "list of one task", "text heads", "multi-task, texts", "multi-task, pairs"])
def test_real_outputs_match_the_schema(outputs, kind):
    for result in outputs[kind]:
        assert errors(as_json(result), SCHEMA) == []


def test_real_outputs_have_the_documented_shapes(outputs):
    """docs/results.md: one task named -> the bare result; a multi-task model or a list of tasks
    (even of one) -> {task: result} per input."""
    assert any(outputs["tagger"]) and all(isinstance(r, list) for r in outputs["tagger"])
    assert all(type(r) is Label for r in outputs["classifier"] + outputs["matcher"])
    assert outputs["classifier"][1] == Label.blank() and outputs["matcher"][1] == Label.blank()
    assert all(set(r) == {"ner", "sentiment"} for r in outputs["text heads"] + outputs["multi-task, texts"])
    assert all(set(r) == {"match"} for r in outputs["multi-task, pairs"])
    assert [r["sentiment"] for r in outputs["list of one task"]] == outputs["classifier"]
    for result in outputs["tagger"]:
        assert errors(as_json(result), SCHEMA["$defs"]["taggerResult"]) == []
    for result in outputs["classifier"]:
        assert errors(as_json(result), SCHEMA["$defs"]["label"]) == []


def test_cli_lines_are_to_json_data(capsys, tiny_folder):
    texts = [t for t in TEXTS if t.strip()]
    assert main(["run", str(tiny_folder), "--tasks", "ner,sentiment", *texts]) == 0
    pipe = load(str(tiny_folder), tasks=["ner", "sentiment"])
    expected = [json.dumps({"text": t, "result": to_json_data(pipe(t))}, ensure_ascii=False) for t in texts]
    assert capsys.readouterr().out.splitlines() == expected
