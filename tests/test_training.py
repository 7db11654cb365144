"""Recipe -> joint training -> saved model -> evaluation, on tiny hand-written data."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from toolkit import kinds
from toolkit.train.features import build_features, collate
from toolkit.model.manifest import TaskSpec
from toolkit.text.normalize import Normalizer
from toolkit.train.recipe import Recipe
from toolkit.text.tags import tag_set
from toolkit.text.tokenization import TextTokenizer
from toolkit.train.loop import lr_factor, train
from conftest import crash_after_first_checkpoint, write_corpora

NER = [
    {"text": "张三在北京工作", "spans": [{"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 5, "label": "LOC"}]},
    {"text": "王五去上海", "spans": [{"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 5, "label": "LOC"}]},
    {"text": "李四在广州", "spans": [{"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 5, "label": "LOC"}]},
]


@pytest.fixture
def recipe_file(tmp_path, tiny_encoder):
    ner, cls = write_corpora(tmp_path, NER)
    recipe = {
        "name": "tiny-joint",
        "encoder": str(tiny_encoder),
        "max_length": 16,
        "out": str(tmp_path / "run"),
        "tasks": {
            "ner": {"kind": "tagger", "scheme": "BIOES", "train": {"path": str(ner), "format": "json-spans"}, "dev": {"path": str(ner), "format": "json-spans"}},
            "cls": {"kind": "classifier", "train": {"path": str(cls), "format": "table-cls"}, "dev": {"path": str(cls), "format": "table-cls"}},
        },
        "train": {"max_steps": 80, "batch_size": 4, "lr": 3e-3, "head_lr": 1e-2, "eval_every": 40, "ema": 0.9, "patience": None, "warmup": 5},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def test_train_fits_tiny_data_and_saves_a_loadable_model(recipe_file):
    import toolkit

    summary = train(Recipe.from_yaml(recipe_file), progress=False)
    assert summary["steps"] == 80 and summary["history"][-1]["scores"]["ner"]["main"] == 1.0
    assert summary["history"][-1]["scores"]["cls"]["main"] == 1.0
    model = toolkit.load(summary["model"])
    out = model("张三在北京工作")
    assert [(e.text, e.label) for e in out["ner"]] == [("张三", "PER"), ("北京", "LOC")]
    card = (recipe_file.parent / "run" / "model" / "README.md").read_text(encoding="utf-8")
    assert "micro_f1" in card and "toolkit train" in card
    log = [json.loads(x) for x in (recipe_file.parent / "run" / "train_log.jsonl").read_text().splitlines()]
    assert {"step", "loss", "lr", "grad_norm"} <= set(log[0])


def test_resume_continues_from_checkpoint(recipe_file):
    recipe = Recipe.from_yaml(recipe_file)
    recipe.train.max_steps = 40
    train(recipe, progress=False)
    recipe.train.max_steps = 80
    summary = train(recipe, resume=True, progress=False)
    assert summary["steps"] == 80 and [h["step"] for h in summary["history"]] == [40, 80]
    log = [json.loads(x) for x in (recipe_file.parent / "run" / "train_log.jsonl").read_text().splitlines()]
    steps = [row["step"] for row in log if "step" in row]
    assert steps == list(range(1, 81)), "each step logged once across the restart"


def test_resuming_a_run_whose_time_budget_is_spent_says_how_to_continue(recipe_file):
    """Regression: max_minutes counts the whole run, so a resume after a time stop trained one step and
    stopped again, silently; it is now refused before any data is read, with the flag that continues."""
    from toolkit.errors import ConfigError

    recipe = Recipe.from_yaml(recipe_file)
    recipe.train.max_steps = 40
    train(recipe, progress=False)
    assert (recipe_file.parent / "run" / "checkpoint" / "state.json").is_file()
    recipe.train.max_steps, recipe.train.max_minutes = 80, 1e-6
    with pytest.raises(ConfigError, match=r"max_minutes is 1e-06, which counts the whole run across resumes: resume with .*--max-minutes \d+"):
        train(recipe, resume=True, progress=False)
    recipe.train.max_minutes = None  # a larger budget (here: none) continues
    assert train(recipe, resume=True, progress=False)["steps"] == 80


def test_unknown_recipe_keys_are_errors(tmp_path, recipe_file):
    data = yaml.safe_load(recipe_file.read_text(encoding="utf-8"))
    data["train"]["learning_rate"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown keys \\['learning_rate'\\]"):
        Recipe.from_yaml(bad)


def test_ner_features_count_what_cannot_be_learnt(tiny_encoder):
    from toolkit.data.examples import NerExample, Span
    from toolkit.train.features import FeatureReport

    tok = TextTokenizer.from_pretrained(tiny_encoder)
    tags = tag_set(["PER", "LOC"], "BIO")
    examples = [
        NerExample("張\u200b三在北京", [Span(0, 3, "PER"), Span(4, 6, "LOC"), Span(4, 5, "LOC")]),  # traditional + invisible + nested
        NerExample("CT检查", [Span(0, 1, "LOC")]),  # boundary inside the token "CT"
    ]
    report = FeatureReport()
    spec = TaskSpec.from_dict("ner", {"kind": "tagger", "labels": ["PER", "LOC"], "scheme": "BIO"})
    feats = build_features(kinds.get("tagger"), examples, spec, tok, Normalizer(), 32, report)
    assert [tags[i] for i in feats[0].target] == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    assert report.counts["nested spans flattened away"] == 1
    assert report.counts["spans with a boundary inside a token"] == 1
    batch, targets = collate(feats, tok.pad_id, kinds.get("tagger"))
    assert batch["input_ids"].shape == targets.shape and int(batch["attention_mask"][0].sum()) == 7


def test_holdout_selects_on_training_examples(recipe_file):
    from toolkit.train.recipe import prepare

    recipe = Recipe.from_yaml(recipe_file)
    recipe.tasks["cls"].dev = None
    recipe.tasks["cls"].holdout = 1
    _, data = prepare(recipe)
    assert len(data["cls"].dev) == 1 and len(data["cls"].train) == 3
    recipe.tasks["cls"].dev = recipe.tasks["ner"].dev
    with pytest.raises(ValueError, match="either dev or holdout"):
        prepare(recipe)


def test_lr_schedule():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == 0.0


def test_evaluate_can_exclude_texts_seen_in_another_split(tiny_model, tmp_path):
    from toolkit.runtime.evaluation import evaluate

    test = tmp_path / "test.tsv"
    test.write_text("text\tlabel\n服务很好\tpos\n太差了\tneg\n一般般\tneg\n", encoding="utf-8")
    train = tmp_path / "train.tsv"
    train.write_text("text\tlabel\n服务很好\tpos\n", encoding="utf-8")
    ref = {"path": str(test), "format": "table-cls"}
    full = evaluate(tiny_model, ref, task="sentiment", progress=False)
    clean = evaluate(tiny_model, ref, task="sentiment", progress=False, exclude={"path": str(train), "format": "table-cls"})
    assert full["n"] == 3 and clean["n"] == 2 and clean["excluded"] == 1


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("train", "bf16", "no", "bf16 must be a bool"),
        ("train", "batch_size", "x", "batch_size must be a int"),
        ("train", "freeze_encoder_steps", 5, "freeze_encoder keeps the encoder frozen"),
        ("task", "labels", "PER", "labels must be a list"),
    ],
)
def test_recipe_values_are_checked(tmp_path, recipe_file, section, key, value, message):
    data = yaml.safe_load(recipe_file.read_text(encoding="utf-8"))
    if section == "train":
        data["train"][key] = value
        if key == "freeze_encoder_steps":
            data["train"]["freeze_encoder"] = True
    else:
        data["tasks"]["ner"][key] = value
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        Recipe.from_yaml(bad)


def test_yaml_scientific_notation_is_a_number(tmp_path, recipe_file):
    data = yaml.safe_load(recipe_file.read_text(encoding="utf-8"))
    data["train"]["lr"] = "1e-4"  # what YAML 1.1 makes of `lr: 1e-4`
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert Recipe.from_yaml(path).train.lr == pytest.approx(1e-4)


def test_holdout_never_splits_a_duplicated_text():
    from toolkit.data.examples import TextExample
    from toolkit.train.recipe import split_holdout

    examples = [TextExample(t, "x") for t in ["a", "a", "b", "c", "c", "c", "d", "e"]]
    train, held = split_holdout(examples, 3, seed=0)
    assert len(train) + len(held) == 8 and len(held) >= 3
    assert not {ex.text for ex in train} & {ex.text for ex in held}


def test_resume_is_exact(recipe_file, tmp_path, monkeypatch):
    """A run killed right after its step-40 checkpoint and resumed ends with the same weights as an
    uninterrupted run (data order, RNG states, optimizer moments and EMA all restored)."""
    from safetensors.torch import load_file

    straight = Recipe.from_yaml(recipe_file)
    straight.out = str(tmp_path / "straight")
    train(straight, progress=False)

    crashed = Recipe.from_yaml(recipe_file)
    crashed.out = str(tmp_path / "crashed")
    crash_after_first_checkpoint(monkeypatch, crashed)
    train(crashed, resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "crashed" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
