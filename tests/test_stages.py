"""The three pipeline stages are public and pass plain picklable data, so they can run in
different processes (a tokenising front end, a model worker, a postprocessing step)."""
from __future__ import annotations

import pickle

import toolkit

TEXTS = ["张三在北京工作。", "", "患者三天前出现发热、咳嗽。" * 20]
PAIRS = [("头痛怎么办", "头疼怎么治"), ("", "发热")]


def test_text_stages_round_trip_through_pickle(tiny_folder):
    pipe = toolkit.load(str(tiny_folder), tasks=["ner", "sentiment"])
    prepared = pickle.loads(pickle.dumps(pipe.preprocess(TEXTS)))
    found = pickle.loads(pickle.dumps(pipe.forward(prepared)))
    assert pipe.postprocess(prepared, found) == pipe(TEXTS)  # a list of tasks: {task: result} per text


def test_a_model_with_text_and_pair_heads_exposes_the_stages_of_each(tiny_folder):
    pipe = toolkit.load(str(tiny_folder))  # ner, sentiment (text) and match (pair)
    prepared = pipe.text.preprocess(TEXTS[:1])
    assert pipe.text.postprocess(prepared, pipe.text.forward(prepared)) == [pipe(TEXTS[0])]


def test_pair_stages_round_trip_through_pickle(tiny_folder):
    pipe = toolkit.load(str(tiny_folder), tasks="match")
    prepared = pickle.loads(pickle.dumps(pipe.preprocess(PAIRS)))
    found = pickle.loads(pickle.dumps(pipe.forward(prepared)))
    staged = [r["match"] for r in pipe.postprocess(prepared, found)]
    assert staged == pipe(PAIRS) and staged[1] == {"label": None, "score": None, "scores": {}}


def test_one_task_name_is_bare_and_a_list_is_keyed(tiny_folder):
    assert isinstance(toolkit.load(str(tiny_folder), tasks="ner")("张三"), list)
    assert set(toolkit.load(str(tiny_folder), tasks=["ner"])("张三")) == {"ner"}
