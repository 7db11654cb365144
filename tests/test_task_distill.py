"""Distillation during ``toolkit train`` (recipe ``teacher:``): each head kind's distillation loss,
a tiny run with a deeper and wider teacher, the checks on the teacher, unlabeled text, exact resume."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml

from conftest import build_tiny_encoder, crash_after_first_checkpoint, write_corpora
from toolkit import kinds
from toolkit.errors import ConfigError
from toolkit.heads.base import Head
from toolkit.model.multitask import MultiTaskModel
from toolkit.train.loop import train
from toolkit.train.recipe import Recipe
from toolkit.train.teacher import Teacher

NER = [
    {"text": "张三在北京工作", "spans": [{"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 5, "label": "LOC"}]},
    {"text": "王五去上海", "spans": [{"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 5, "label": "LOC"}]},
    {"text": "李四在广州", "spans": [{"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 5, "label": "LOC"}]},
]
TEACHER_TASKS = {
    "ner": {"kind": "tagger", "labels": ["LOC", "PER"], "scheme": "BIO"},
    "cls": {"kind": "classifier", "labels": ["pos", "neg"]},  # not the order the student would infer
    "nested": {"kind": "span", "labels": ["LOC", "PER"], "options": {"head_size": 8, "max_span": 6}},
}


# ---------------------------------------------------------------- each kind's distillation loss
def head_and_batch(kind: str):
    torch.manual_seed(0)
    options = {"span": {"head_size": 8, "max_span": 3}, "tagger": {"scheme": "BIO"}}.get(kind, {})
    head = kinds.head_class(kind)(16, ["A", "B"], **options).eval()
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    batch = {"attention_mask": mask, "segments": torch.tensor([[0, 1, 1, 0, 2, 0], [0, 1, 0, 2, 0, 0]])}
    return head, batch, torch.randn(2, 6, 16)


@pytest.mark.parametrize("kind", ["tagger", "classifier", "matcher", "span"])
def test_distill_loss_is_zero_when_the_student_agrees_and_positive_otherwise(kind):
    head, batch, hidden = head_and_batch(kind)
    with torch.no_grad():
        out = head(hidden, batch)
        other = head(torch.randn_like(hidden), batch)
    assert float(head.distill_loss(out, out.clone(), batch, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(head.distill_loss(out, other, batch, 2.0)) > 1e-4


@pytest.mark.parametrize("kind", ["tagger", "span"])
def test_distill_loss_ignores_padding_and_cells_that_are_no_span(kind):
    head, batch, hidden = head_and_batch(kind)
    with torch.no_grad():
        out = head(hidden, batch)
    noise = out + 5 * torch.randn_like(out)
    if kind == "tagger":  # [CLS], [SEP] and padding of row 1 (4 real tokens: [CLS] w w [SEP])
        teacher = out.clone()
        teacher[1, 3:] = noise[1, 3:]
        teacher[:, 0] = noise[:, 0]
    else:
        pos = torch.arange(6, dtype=torch.float32)
        teacher = torch.where(head.cells(pos, batch["attention_mask"]), out, noise)
    assert float(head.distill_loss(out, teacher, batch, 1.0)) == pytest.approx(0.0, abs=1e-6)


def test_distill_loss_gives_gradients_towards_the_teacher():
    head, batch, hidden = head_and_batch("classifier")
    out = head(hidden, batch)
    target = (out.detach() * 3).flip(-1)
    head.distill_loss(out, target, batch, 2.0).backward()
    assert head.proj.weight.grad is not None and float(head.proj.weight.grad.abs().sum()) > 0


def test_a_kind_without_a_distillation_loss_says_so():
    class Plain(Head):
        kind = "plain"

    with pytest.raises(NotImplementedError, match="plain head has no distillation loss"):
        Plain(4, ["a"]).distill_loss(torch.zeros(1, 1), torch.zeros(1, 1), {}, 2.0)


def test_a_teacher_output_of_another_shape_is_refused():
    head, batch, hidden = head_and_batch("classifier")
    with pytest.raises(ValueError, match="same labels"):
        head.distill_loss(torch.zeros(2, 2), torch.zeros(2, 3), batch, 2.0)


# ---------------------------------------------------------------- recipe runs
@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A random teacher deeper and wider than the student (3 layers, width 48), same vocabulary."""
    return build_teacher(tmp_path_factory.mktemp("teacher"), layers=3, hidden=48, seed=5)


def build_teacher(root: Path, layers: int, hidden: int, seed: int) -> Path:
    """A random model folder with the teacher's heads, on a tiny encoder of the given size."""
    encoder = build_tiny_encoder(root / "encoder", layers=layers, hidden=hidden, seed=seed)
    torch.manual_seed(seed)
    return MultiTaskModel.build(encoder, TEACHER_TASKS, max_length=32, name="teacher").save(root / "model", dtype=torch.float32)


def write_recipe(tmp_path: Path, encoder: Path, teacher: Path | None, out: str = "run", tasks: dict | None = None, **train) -> Path:
    ner, cls = write_corpora(tmp_path, NER)
    ner_ref, cls_ref = {"path": str(ner), "format": "json-spans"}, {"path": str(cls), "format": "table-cls"}
    data = {
        "name": "student", "encoder": str(encoder), "max_length": 16, "out": str(tmp_path / out),
        "tasks": tasks or {
            "ner": {"kind": "tagger", "scheme": "BIO", "train": ner_ref, "dev": ner_ref},
            "cls": {"kind": "classifier", "train": cls_ref, "dev": cls_ref},
            "nested": {"kind": "span", "train": ner_ref, "dev": ner_ref, "options": {"head_size": 8, "max_span": 6}},
            "other": {"kind": "classifier", "train": cls_ref, "dev": cls_ref},  # the teacher has no head for it
        },
        "train": {"max_steps": 6, "batch_size": 2, "lr": 1e-3, "head_lr": 1e-2, "eval_every": 100, "patience": None, "warmup": 1,
                  "dtype": "fp32", "seed": 0, "diag_every": 0, "tensorboard": False, **train},
    }
    if teacher is not None:
        data["teacher"] = str(teacher)
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def step_losses(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_a_recipe_with_a_teacher_trains_and_saves_the_student(tmp_path, tiny_encoder, teacher, caplog):
    with caplog.at_level(logging.WARNING, logger="toolkit.train.teacher"):
        summary = train(Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, teacher)), progress=False)
    assert summary["steps"] == 6 and Path(summary["model"], "toolkit.yaml").is_file()
    assert any("task other: the teacher" in r.getMessage() and "gold labels only" in r.getMessage() for r in caplog.records)
    student = MultiTaskModel.load(summary["model"])
    assert student.encoder.num_layers == 2 and student.encoder.hidden_size == 32, "the student keeps its own size"
    assert student.heads["cls"].labels == ["pos", "neg"], "a task without labels takes the teacher's, in its order"
    assert student.heads["other"].labels == ["neg", "pos"]
    assert "Distilled from the model" in Path(summary["model"], "README.md").read_text(encoding="utf-8")


def test_the_loss_follows_distill_weight(tmp_path, tiny_encoder, teacher):
    runs = {}
    for name, weight in (("gold", None), ("w0", 0.0), ("w1", 1.0)):
        extra = {"distill_weight": weight} if weight is not None else {}
        student = Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, teacher if weight is not None else None, name, **extra))
        student.tasks["cls"].labels = ["pos", "neg"]  # the teacher's order, also without a teacher: the same heads
        train(student, progress=False)
        runs[name] = step_losses(tmp_path / name)
    assert runs["w0"] == runs["gold"], "distill_weight 0 is training on gold alone"
    taught = [(a, b) for a, b in zip(runs["gold"], runs["w1"]) if set(a) & {"ner", "cls", "nested"}]
    assert taught and taught[0][0] != taught[0][1]


def test_the_teacher_runs_without_gradients_under_the_students_autocast(tmp_path, tiny_encoder, teacher, monkeypatch):
    seen = []
    real = Teacher.load

    def load(ref, tasks):
        loaded = real(ref, tasks)
        loaded.model.encoder.register_forward_hook(lambda m, i, o: seen.append((torch.is_autocast_enabled("cpu"), torch.is_grad_enabled(), loaded.model.training)))
        return loaded

    monkeypatch.setattr(Teacher, "load", load)
    summary = train(Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, teacher, max_steps=3, dtype="bf16")), progress=False)
    assert summary["dtype"] == "bf16" and seen and set(seen) == {(True, False, False)}


def test_a_teacher_with_another_vocabulary_is_refused(tmp_path, tiny_encoder, monkeypatch):
    import conftest

    monkeypatch.setattr(conftest, "tiny_vocab", lambda vocab=conftest.tiny_vocab(): vocab[:-3])
    other = build_tiny_encoder(tmp_path / "other-encoder")
    MultiTaskModel.build(other, TEACHER_TASKS, max_length=32).save(tmp_path / "other", dtype=torch.float32)
    with pytest.raises(ConfigError, match="another vocabulary than the student.*same tokenizer"):
        train(Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, tmp_path / "other")), progress=False)


@pytest.mark.parametrize("task, message", [
    ({"kind": "classifier", "labels": ["neg", "pos", "mid"]}, r"teacher's head is a classifier with labels \['pos', 'neg'\].*same labels"),
    ({"kind": "classifier", "labels": ["neg", "pos"]}, "same labels in the same order"),
])
def test_a_teacher_head_with_other_labels_is_refused(tmp_path, tiny_encoder, teacher, task, message):
    _, cls = write_corpora(tmp_path, NER)
    ref = {"path": str(cls), "format": "table-cls"}
    tasks = {"cls": {**task, "train": ref, "dev": ref}}
    with pytest.raises(ConfigError, match=message):
        train(Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, teacher, tasks=tasks)), progress=False)


def test_a_teacher_head_of_another_kind_is_refused(tmp_path, tiny_encoder, teacher):
    ner, _ = write_corpora(tmp_path, NER)
    ref = {"path": str(ner), "format": "json-spans"}
    tasks = {"ner": {"kind": "span", "train": ref, "dev": ref}}
    with pytest.raises(ConfigError, match="teacher's head is a tagger.*the student's a span"):
        train(Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, teacher, tasks=tasks)), progress=False)


def test_a_teacher_without_any_of_the_tasks_is_refused(tmp_path, tiny_encoder, teacher):
    _, cls = write_corpora(tmp_path, NER)
    ref = {"path": str(cls), "format": "table-cls"}
    with pytest.raises(ConfigError, match="none of the recipe's tasks"):
        train(Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, teacher, tasks={"x": {"kind": "classifier", "train": ref}})), progress=False)


# ---------------------------------------------------------------- unlabeled text and resume
def unlabeled_tasks(tmp_path: Path) -> dict:
    ner, _ = write_corpora(tmp_path, NER)
    raw = tmp_path / "raw.txt"
    raw.write_text("张三在北京工作\n\n赵六去深圳\n刘七在上海开会\n陈八去广州\n王五在北京\n李四去深圳\n", encoding="utf-8")  # the first is a dev text
    ref = {"path": str(ner), "format": "json-spans"}
    return {"ner": {"kind": "tagger", "train": ref, "dev": ref, "unlabeled": str(raw), "unlabeled_ratio": 0.5},
            "nested": {"kind": "span", "train": ref, "dev": ref, "options": {"head_size": 8, "max_span": 6}, "unlabeled": [str(raw)], "unlabeled_limit": 3}}


def test_unlabeled_text_trains_on_the_teacher_alone_and_leaves_dev_texts_out(tmp_path, tiny_encoder, teacher, caplog):
    with caplog.at_level(logging.INFO, logger="toolkit.train.teacher"):
        train(Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, teacher, tasks=unlabeled_tasks(tmp_path), max_steps=10)), progress=False)
    assert any("+unlabeled" in key for losses in step_losses(tmp_path / "run") for key in losses)
    assert any("task ner: 5 unlabeled texts (1 equal to dev texts left out)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("change, message", [
    ({"teacher": None}, "add `teacher:`"),
    ({"unlabeled_ratio": 1.0}, "unlabeled_ratio must be between 0 and 1"),
    ({"kind": "matcher"}, "reads pairs"),
])
def test_unlabeled_settings_are_checked(tmp_path, tiny_encoder, teacher, change, message):
    tasks = {"ner": {**unlabeled_tasks(tmp_path)["ner"], **{k: v for k, v in change.items() if k != "teacher"}}}
    with pytest.raises(ValueError, match=message):
        Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, None if "teacher" in change else teacher, tasks=tasks))


def test_resume_with_a_teacher_and_unlabeled_text_is_exact(tmp_path, tiny_encoder, teacher, monkeypatch):
    assert_resume_is_exact(tmp_path, tiny_encoder, teacher, monkeypatch, ema=0.9)


def assert_resume_is_exact(tmp_path: Path, encoder: Path, teacher: Path, monkeypatch, **train_settings) -> None:
    """A run stopped after its first checkpoint and resumed ends with the weights and losses of a straight run."""
    from safetensors.torch import load_file

    settings = {"tasks": unlabeled_tasks(tmp_path), "max_steps": 8, "checkpoint_every": 4, **train_settings}
    train(Recipe.from_yaml(write_recipe(tmp_path, encoder, teacher, "straight", **settings)), progress=False)
    crashed = Recipe.from_yaml(write_recipe(tmp_path, encoder, teacher, "crashed", **settings))
    crash_after_first_checkpoint(monkeypatch, crashed)
    assert train(crashed, resume=True, progress=False)["resumed_from"] == 4
    a = load_file(str(tmp_path / "straight" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "crashed" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert step_losses(tmp_path / "straight") == step_losses(tmp_path / "crashed")


# ---------------------------------------------------------------- hidden-state distillation
@pytest.fixture(scope="module")
def deep_teacher(tmp_path_factory) -> Path:
    """A random teacher as wide as the student (32) and twice as deep (4 layers)."""
    return build_teacher(tmp_path_factory.mktemp("deep_teacher"), layers=4, hidden=32, seed=9)


def hidden_distance(student: Path, teacher: Path) -> float:
    """The hidden-state loss of the student against the teacher on the training texts."""
    from toolkit.text.encode import pad_batch
    from toolkit.train.teacher import Distillation

    s, t = MultiTaskModel.load(student).eval(), Teacher.load(str(teacher), ["ner"])
    probe = Distillation(t, hidden=1.0, taps=Distillation._taps(t, s))
    ids = [s.tokenizer.hf(x["text"])["input_ids"] for x in NER]
    batch = {k: torch.from_numpy(v) for k, v in pad_batch(ids, s.tokenizer.pad_id).arrays.items()}
    with torch.no_grad():
        s(batch, ["ner"]), t.model(batch, ["ner"])
        return float(probe.hidden_loss(batch["attention_mask"]))


def test_layer_tap_keeps_each_chosen_layers_output(tiny_encoder):
    from toolkit.model.encoder import Encoder
    from toolkit.train.teacher import LayerTap

    enc = Encoder.from_pretrained(tiny_encoder).eval()
    tap = LayerTap(enc, [1, 2])
    ids = torch.tensor([[2, 5, 6, 3]])
    with torch.no_grad():
        last = enc(ids, torch.ones_like(ids))
    assert set(tap.states) == {1, 2} and tap.states[1].shape == last.shape
    assert torch.equal(tap.states[2], last), "the last layer's output is the encoder's output"
    assert not torch.equal(tap.states[1], last)
    tap.remove()
    with torch.no_grad():
        enc(ids, torch.ones_like(ids))
    assert tap.states == {}, "a removed tap keeps nothing"


def test_hidden_state_distillation_pulls_each_student_layer_towards_its_teacher_layer(tmp_path, tiny_encoder, deep_teacher, caplog):
    tasks = {"ner": {"kind": "tagger", "scheme": "BIO", "train": None, "dev": None}}
    ner, _ = write_corpora(tmp_path, NER)
    tasks["ner"]["train"] = tasks["ner"]["dev"] = {"path": str(ner), "format": "json-spans"}
    runs = {}
    for name, weight in (("plain", 0.0), ("hidden", 5.0)):
        with caplog.at_level(logging.INFO, logger="toolkit.train.teacher"):
            summary = train(Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, deep_teacher, name, tasks=tasks, max_steps=15,
                                                          distill_hidden=weight)), progress=False)
        runs[name] = hidden_distance(Path(summary["model"]), deep_teacher)
    assert any("(teacher, student) layers [(2, 1), (4, 2)]" in r.getMessage() for r in caplog.records)
    assert runs["hidden"] < 0.85 * runs["plain"], runs  # 15 steps: 2.40 -> 1.80
    assert "hidden-state weight 5.0" in (tmp_path / "hidden" / "model" / "README.md").read_text(encoding="utf-8")


def test_hidden_state_distillation_is_checked(tmp_path, tiny_encoder, teacher):
    with pytest.raises(ConfigError, match="the teacher .* is 48 wide, the student 32"):
        train(Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, teacher, distill_hidden=1.0)), progress=False)
    with pytest.raises(ValueError, match="add `teacher:`"):
        Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, None, distill_hidden=1.0))
    with pytest.raises(ValueError, match="distill_hidden must be 0"):
        Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, teacher, distill_hidden=-1.0))


def test_resume_with_hidden_state_distillation_is_exact(tmp_path, tiny_encoder, deep_teacher, monkeypatch):
    assert_resume_is_exact(tmp_path, tiny_encoder, deep_teacher, monkeypatch, distill_hidden=1.0)


# ---------------------------------------------------------------- pseudo-labels on unlabeled text
@pytest.mark.parametrize("kind", ["tagger", "classifier", "matcher", "span"])
def test_pseudo_targets_are_the_targets_the_heads_own_loss_likes_best(kind):
    head, batch, hidden = head_and_batch(kind)
    with torch.no_grad():
        out = head(hidden, batch)
        mine = head.pseudo_targets(out, batch)
        best = float(head.loss(out, batch, mine))
        gen = torch.Generator().manual_seed(0)
        for _ in range(20):  # no other targets give a lower loss (the CRF's best path, the argmax, the spans over 0.5)
            if kind == "span":
                other = mine.clone()
                cells = head.cells(torch.arange(6, dtype=torch.float32), batch["attention_mask"]).expand_as(mine)
                flip = cells & (torch.rand(mine.shape, generator=gen) < 0.2)
                other[flip] = 1 - other[flip]
            else:
                other = torch.randint(0, int(out.shape[-1]), mine.shape, generator=gen)
            assert float(head.loss(out, batch, other)) >= best - 1e-5


def test_pseudo_labels_train_the_student_on_the_teachers_decisions(tmp_path, tiny_encoder, teacher, caplog):
    runs = {}
    for name, pseudo in (("soft", False), ("pseudo", True)):
        tasks = unlabeled_tasks(tmp_path)
        for t in tasks.values():
            t["pseudo_labels"] = pseudo
        with caplog.at_level(logging.INFO, logger="toolkit.train.teacher"):
            summary = train(Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, teacher, name, tasks=tasks, max_steps=10)), progress=False)
        runs[name] = [(k, v) for losses in step_losses(tmp_path / name) for k, v in losses.items()]
    assert any("unlabeled batches also train on the teacher's decisions" in r.getMessage() for r in caplog.records)
    first = [i for i, (k, _) in enumerate(runs["soft"]) if k.endswith("+unlabeled")][0]
    assert runs["soft"][:first] == runs["pseudo"][:first], "labelled batches train as before"
    assert runs["pseudo"][first][1] > runs["soft"][first][1], "an unlabeled batch adds the gold loss on the teacher's decisions"
    assert "with the teacher's pseudo-labels" in Path(summary["model"], "README.md").read_text(encoding="utf-8")


def test_pseudo_labels_need_unlabeled_text(tmp_path, tiny_encoder, teacher):
    ner, _ = write_corpora(tmp_path, NER)
    ref = {"path": str(ner), "format": "json-spans"}
    with pytest.raises(ValueError, match="add `unlabeled:`"):
        Recipe.from_yaml(write_recipe(tmp_path, tiny_encoder, teacher, tasks={"ner": {"kind": "tagger", "train": ref, "pseudo_labels": True}}))
