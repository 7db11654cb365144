"""Training diagnostics (toolkit.train.diagnostics), the on_eval hook, trend early stopping and `toolkit report`."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from toolkit.train.diagnostics import label_entropy, should_stop
from toolkit.kinds.metrics import calibration, per_class_prf
from toolkit.train.recipe import Recipe
from toolkit.train.loop import StopTraining, train
from conftest import write_corpora

NER = [
    {"text": "张三在北京工作", "spans": [{"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 5, "label": "LOC"}]},
    {"text": "王五去上海", "spans": [{"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 5, "label": "LOC"}]},
]


@pytest.fixture
def recipe(tmp_path, tiny_encoder):
    ner, cls = write_corpora(tmp_path, NER)
    spec = {
        "name": "diag", "encoder": str(tiny_encoder), "max_length": 16, "out": str(tmp_path / "run"),
        "tasks": {
            "ner": {"kind": "tagger", "train": {"path": str(ner), "format": "json-spans"}, "dev": {"path": str(ner), "format": "json-spans"}},
            "cls": {"kind": "classifier", "train": {"path": str(cls), "format": "table-cls"}, "dev": {"path": str(cls), "format": "table-cls"}},
        },
        "train": {"max_steps": 12, "batch_size": 2, "lr": 3e-3, "head_lr": 1e-2, "eval_every": 6, "patience": None, "warmup": 2,
                  "diag_every": 3, "tensorboard": False},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return Recipe.from_yaml(path)


def _log(recipe: Recipe) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(x) for x in (Path(recipe.out) / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if "step" in r], [r["eval"] for r in rows if "eval" in r]


def test_step_rows_carry_diagnostics_every_diag_every_steps(recipe):
    train(recipe, progress=False)
    steps, _ = _log(recipe)
    with_diag = [r["step"] for r in steps if "grad_layers" in r]
    assert with_diag == [3, 6, 9, 12]
    row = next(r for r in steps if "grad_layers" in r)
    assert {"step", "loss", "lr", "grad_norm"} <= set(row), "the old keys stay"
    assert {"emb", "L1", "L2"} <= set(row["grad_layers"]) and any(k.startswith("head:") for k in row["grad_layers"])
    assert all(v >= 0 for v in row["grad_layers"].values())
    assert set(row["lr_groups"]) == {"emb", "L1", "L2", "heads"}
    assert row["lr_groups"]["heads"] > row["lr_groups"]["L2"] > row["lr_groups"]["L1"] > row["lr_groups"]["emb"], "layer decay shows"
    assert set(row["label_entropy"]) == set(row["loss"]) and all(v >= 0 for v in row["label_entropy"].values())


def test_evaluation_rows_carry_per_class_and_calibration(recipe):
    summary = train(recipe, progress=False)
    _, evals = _log(recipe)
    assert [e["step"] for e in evals] == [6, 12]
    for e in evals:
        assert set(e["diagnostics"]) == {"ner", "cls"} and "confidence_gap" in e
        cal = e["diagnostics"]["cls"]["calibration"]
        assert sum(cal["hist"]) == cal["n"] == 4 and len(cal["hist"]) == 10 and 0 <= cal["ece"] <= 1
        assert set(e["diagnostics"]["cls"]["per_class"]) == {"neg", "pos"}
        assert "confidence" not in e["scores"]["cls"], "the scores keep their keys"
    assert set(e["diagnostics"]["ner"]["per_class"]) <= {"PER", "LOC"}
    model_metrics = (Path(summary["model"]) / "toolkit.yaml").read_text(encoding="utf-8")
    assert "calibration" not in model_metrics, "diagnostics stay out of the model folder"


def test_calibration_on_a_hand_made_example():
    # bins: 0.95, 0.9 -> bin 9 (2 correct, mean conf 0.925); 0.6 -> bin 6 (wrong); 0.3 -> bin 3 (wrong)
    cal = calibration([0.95, 0.9, 0.6, 0.3], [True, True, False, False])
    assert cal["ece"] == pytest.approx((abs(2 - 1.85) + 0.6 + 0.3) / 4, abs=1e-4)
    assert cal["gap"] == pytest.approx(0.925 - 0.45, abs=1e-4)
    assert cal["hist_correct"][9] == 2 and cal["hist_wrong"][6] == cal["hist_wrong"][3] == 1
    perfect = calibration([1.0, 1.0], [True, True])
    assert perfect["ece"] == 0.0 and perfect["gap"] is None and perfect["hist"][9] == 2


def test_per_class_prf():
    scores = per_class_prf(["a", "a", "b", "c"], ["a", "b", "b", "b"])
    assert scores["a"] == {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1}
    assert scores["b"]["recall"] == pytest.approx(1 / 3, abs=1e-4) and scores["c"]["support"] == 0


def test_label_entropy_ignores_padding():
    targets, mask = torch.tensor([[0, 1, 0], [1, 0, 0]]), torch.tensor([[1, 1, 0], [1, 1, 0]])
    assert label_entropy(targets, mask) == 1.0
    assert label_entropy(torch.tensor([3, 3, 3])) == 0.0


def _h(means, gaps):
    return [{"mean": m, "confidence_gap": g} for m, g in zip(means, gaps)]


@pytest.mark.parametrize("means, gaps, rule, stop", [
    ([0.5, 0.6, 0.6, 0.55], [0.3, 0.4, 0.3, 0.2], "patience", True),   # no better score for 2 evaluations
    ([0.5, 0.6, 0.6, 0.55], [0.3, 0.4, 0.3, 0.2], "trend", True),      # ... and the gap shrank 0.4 -> 0.2
    ([0.5, 0.6, 0.6, 0.55], [0.3, 0.4, 0.3, 0.45], "trend", False),    # ... but the gap grew: keep going
    ([0.5, 0.6, 0.6, 0.55], [0.3, 0.4, 0.3, 0.4], "trend", False),     # equal gap is not shrinking
    ([0.5, 0.6, 0.55, 0.61], [0.3, 0.4, 0.3, 0.1], "trend", False),    # improved: never stop
    ([0.5, 0.6, 0.55, 0.61], [0.3, 0.4, 0.3, 0.1], "patience", False),
    ([0.5, 0.6, 0.6], [0.3, 0.4, 0.1], "trend", False),                # only 1 evaluation without progress
    ([0.5, 0.6, 0.6, 0.55], [0.3, None, 0.3, 0.2], "trend", True),     # unknown gap: the patience rule
])
def test_early_stopping_rules(means, gaps, rule, stop):
    assert should_stop(rule, _h(means, gaps), patience=2) is stop


def test_early_stopping_off_without_patience():
    assert not should_stop("trend", _h([0.9, 0.1, 0.1], [0.5, 0.1, 0.0]), patience=None)


def test_on_eval_sees_each_evaluation_and_can_stop_the_run(recipe):
    seen = []

    def stop_at_first(record):
        seen.append(record)
        raise StopTraining("pruned")

    summary = train(recipe, progress=False, on_eval=stop_at_first)
    assert summary["stopped_by"] == "callback" and summary["steps"] == 6
    assert [r["step"] for r in seen] == [6] and {"step", "elapsed", "scores", "mean"} <= set(seen[0])
    assert Path(summary["model"], "toolkit.yaml").is_file(), "the best model was saved before the callback stopped the run"


def test_on_eval_errors_propagate(recipe):
    def broken(record):
        raise RuntimeError("bug in the callback")

    with pytest.raises(RuntimeError, match="bug in the callback"):
        train(recipe, progress=False, on_eval=broken)


def test_resume_is_exact_with_diagnostics(recipe, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import toolkit.train.loop as training

    recipe = replace(recipe, train=replace(recipe.train, diag_every=1))
    straight = replace(recipe, out=str(tmp_path / "straight"))
    train(straight, progress=False)
    real_save = training.save_checkpoint

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    crashed = replace(recipe, out=str(tmp_path / "crashed"))
    monkeypatch.setattr(training, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(crashed, progress=False)
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    train(crashed, resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "crashed" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_diagnostics_do_not_change_training(recipe, tmp_path):
    from safetensors.torch import load_file

    runs = []
    for every in (0, 1):
        train(replace(recipe, out=str(tmp_path / f"d{every}"), train=replace(recipe.train, diag_every=every)), progress=False)
        runs.append(load_file(str(tmp_path / f"d{every}" / "checkpoint" / "model.safetensors")))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_tensorboard_event_files(recipe):
    pytest.importorskip("tensorboard")
    recipe.train.tensorboard = True
    train(recipe, progress=False)
    assert list((Path(recipe.out) / "tensorboard").glob("events.out.tfevents.*"))


def test_report_writes_html_with_the_sections(recipe, tmp_path):
    pytest.importorskip("matplotlib")
    from toolkit.cli import main

    train(recipe, progress=False)
    out = tmp_path / "r.html"
    assert main(["report", recipe.out, "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    for section in ("Findings", "Loss per task", "Learning rate", "Gradient norm per layer", "Dev metric, confidence gap and calibration",
                    "Dev confidence histograms", "Per-class precision, recall, F1"):
        assert section in page
    assert page.count("data:image/png;base64,") >= 6 and "src='http" not in page


def test_report_findings_name_quiet_layers_and_spikes():
    from toolkit.train.report import findings

    rows = [{"step": i, "grad_norm": 1.0, "loss": {"ner": 1.0}, "grad_layers": {"emb": 1.0, "L1": 1.0, "L2": 1e-5}} for i in range(1, 20)]
    rows[12]["grad_norm"] = 40.0
    notes = findings(rows, [])
    assert any(n.startswith("layer L2") and "not learning" in n for n in notes)
    assert any(n.startswith("step 13: gradient spike") for n in notes)
    assert not any("layer emb" in n or "layer L1" in n for n in notes)


def test_report_refuses_a_folder_without_a_log(tmp_path):
    from toolkit.errors import InputError
    from toolkit.train.report import write_report

    with pytest.raises(InputError, match="no train_log.jsonl"):
        write_report(tmp_path)
