"""`toolkit tune`: the space file, applying values, pruning, the time budget, resume from SQLite."""
from __future__ import annotations

import json
import time

import pytest
import yaml

from toolkit.errors import ConfigError
from toolkit.train.recipe import Recipe
from toolkit.train.tune_space import apply_params, parse_space, read_space, recipe_values, set_in_yaml

optuna = pytest.importorskip("optuna")

BIO = "张\tB-PER\n三\tI-PER\n在\tO\n北\tB-LOC\n京\tI-LOC\n\n王\tB-PER\n五\tI-PER\n去\tO\n上\tB-LOC\n海\tI-LOC\n\n李\tB-PER\n四\tO\n"
SPACE = {
    "metric": "mean_dev",
    "params": {
        "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "train.batch_size": {"type": "categorical", "choices": [2, 4]},
        "tasks.ner.options.dropout": {"type": "float", "low": 0.0, "high": 0.3},
    },
    "pruner": {"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    "sampler": {"type": "tpe", "seed": 1},
}


@pytest.fixture
def files(tmp_path, tiny_encoder):
    (tmp_path / "ner.bio").write_text(BIO, encoding="utf-8")
    data = {"path": str(tmp_path / "ner.bio"), "format": "columns"}
    recipe = {"name": "tiny-tune", "encoder": str(tiny_encoder), "max_length": 16, "out": str(tmp_path / "run"),
              "tasks": {"ner": {"kind": "tagger", "train": data, "dev": data}},
              "train": {"max_steps": 4, "eval_every": 2, "batch_size": 2, "patience": None, "lr": 1e-3, "threads": 1,
                        "diag_every": 0, "tensorboard": False}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    return tmp_path


def _space_error(files, change) -> str:
    data = json.loads(json.dumps(SPACE))
    change(data)
    path = files / "bad-space.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        read_space(path, Recipe.from_yaml(files / "recipe.yaml"))
    assert "bad-space.yaml" in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("change, expected", [
    (lambda d: d.update(direction="min"), "unknown keys ['direction']"),
    (lambda d: d["params"]["train.lr"].update(scale="log"), "unknown keys ['scale']"),
    (lambda d: d["params"].update({"train.learning_rate": {"type": "float", "low": 0.1, "high": 0.2}}), "train has no field 'learning_rate'"),
    (lambda d: d["params"].update({"tasks.cls.weight": {"type": "float", "low": 0.1, "high": 0.2}}), "no task 'cls'"),
    (lambda d: d["params"].update({"tasks.ner.options.pooling": {"type": "categorical", "choices": ["cls"]}}), "no option 'pooling'"),
    (lambda d: d["params"].update({"model.lr": {"type": "float", "low": 0.1, "high": 0.2}}), "not a path into the recipe"),
    (lambda d: d["params"].update({"train.batch_size": {"type": "float", "low": 2, "high": 8}}), "is of type int; use type int or categorical"),
    (lambda d: d["params"].update({"train.batch_size": {"type": "categorical", "choices": [2, "big"]}}), "batch_size: choices must be a int, got 'big'"),
    (lambda d: d["params"].update({"train.lr": {"type": "float", "low": 0.1, "high": 0.01}}), "must be below high"),
    (lambda d: d["params"].update({"train.lr": {"type": "gaussian"}}), "type: float|int|categorical"),
    (lambda d: d["params"].update({"train.epochs": {"type": "float", "low": 1, "high": 3}}), "no effect while the recipe sets train.max_steps"),
    (lambda d: d.update(metric="f1"), "neither 'mean_dev' nor a task"),
    (lambda d: d.update(pruner={"type": "hyperband"}), "type 'hyperband' is not one of"),
])
def test_space_errors_name_the_file_and_the_problem(files, change, expected):
    assert expected in _space_error(files, change)


def test_space_accepts_every_kind_of_path(files):
    recipe = Recipe.from_yaml(files / "recipe.yaml")
    space = parse_space({"params": {"train.warmup": {"type": "int", "low": 0, "high": 10},
                                    "tasks.ner.weight": {"type": "float", "low": 0.5, "high": 1.0},
                                    "max_length": {"type": "categorical", "choices": [16, 32]},
                                    "train.freeze_encoder_steps": {"type": "int", "low": 0, "high": 4}}}, recipe)
    assert space.metric == "mean_dev" and space.pruner["type"] == "median" and space.sampler["seed"] == 0
    assert recipe_values(recipe, space) == {"train.warmup": 0.06, "tasks.ner.weight": 1.0, "max_length": 16, "train.freeze_encoder_steps": 0}


def test_apply_params_changes_a_copy(files):
    recipe = Recipe.from_yaml(files / "recipe.yaml")
    new = apply_params(recipe, {"train.lr": 5e-4, "tasks.ner.options.dropout": 0.2, "max_length": 32})
    assert (new.train.lr, new.tasks["ner"].options, new.max_length) == (5e-4, {"dropout": 0.2}, 32)
    assert (recipe.train.lr, recipe.tasks["ner"].options, recipe.max_length) == (1e-3, {}, 16)
    with pytest.raises(ConfigError, match="freeze_encoder keeps the encoder frozen"):
        apply_params(recipe, {"train.freeze_encoder": True, "train.freeze_encoder_steps": 3})


def test_set_in_yaml_adds_missing_sections():
    data = {"tasks": {"ner": {"kind": "tagger"}}}
    assert set_in_yaml(data, {"train.lr": 0.1, "tasks.ner.options.dropout": 0.2}) == {
        "tasks": {"ner": {"kind": "tagger", "options": {"dropout": 0.2}}}, "train": {"lr": 0.1}}
    assert data == {"tasks": {"ner": {"kind": "tagger"}}}


class FakeTrial:
    """The part of ``optuna.Trial`` the objective uses; the pruner always says stop."""

    number = 0

    def __init__(self, prune: bool) -> None:
        self.prune, self.user_attrs, self.reports = prune, {}, []

    def suggest_float(self, name, low, high, step=None, log=False):
        return low

    def suggest_categorical(self, name, choices):
        return choices[0]

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.prune


def test_pruning_callback_stops_training():
    from toolkit.train.loop import StopTraining
    from toolkit.train.tune import pruning_callback

    trial = FakeTrial(prune=False)
    pruning_callback(trial)({"step": 10, "mean": 0.5, "scores": {}})
    assert trial.reports == [(10, 0.5)]
    with pytest.raises(StopTraining, match="pruned"):
        pruning_callback(FakeTrial(prune=True), "ner")({"step": 20, "mean": 0.4, "scores": {"ner": {"main": 0.3}}})
    last = FakeTrial(prune=True)
    pruning_callback(last, "ner", last_step=20)({"step": 20, "mean": 0.4, "scores": {"ner": {"main": 0.3}}})  # training is over: no prune
    assert last.reports == [(20, 0.3)]


def test_a_pruned_trial_stops_at_its_first_evaluation_and_raises_trial_pruned(files):
    from toolkit.train.tune import _Objective

    recipe = Recipe.from_yaml(files / "recipe.yaml")
    space = read_space(files / "space.yaml", recipe)
    trial = FakeTrial(prune=True)
    with pytest.raises(optuna.TrialPruned):
        _Objective(recipe, space, files / "search", None, 1, False)(trial)
    assert trial.user_attrs["steps"] == 2 and trial.user_attrs["stopped_by"] == "callback"
    assert [s for s, _ in trial.reports] == [2]


def test_search_writes_best_recipe_and_resumes_from_sqlite(files):
    from toolkit.cli import main
    from toolkit.train.tune import tune

    out = files / "search"
    assert main(["tune", str(files / "recipe.yaml"), "--space", str(files / "space.yaml"), "--trials", "2", "--out", str(out)]) == 0
    report = json.loads((out / "trials.json").read_text(encoding="utf-8"))
    assert [r["number"] for r in report["rows"]] == [0, 1] and report["rows"][0]["baseline"]
    assert report["rows"][0]["values"] == {"train.lr": 1e-3, "train.batch_size": 2, "tasks.ner.options.dropout": None}
    best = Recipe.from_yaml(out / "best_recipe.yaml")  # what `toolkit train` reads
    assert best.train.lr == report["best"]["values"]["train.lr"] and best.out == str(files / "run")
    assert (out / "trials.png").stat().st_size > 1000 and (out / "tune.db").is_file()
    kept = [r["number"] for r in report["rows"] if r["model"]]
    assert kept == [report["best"]["number"]] and not list(out.glob("trial-*/checkpoint"))

    study = optuna.load_study(study_name="tiny-tune", storage=f"sqlite:///{out / 'tune.db'}")
    study.ask()  # a trial left RUNNING, as by a killed search
    result = tune(files / "recipe.yaml", files / "space.yaml", trials=3, out=out)
    rows = json.loads((out / "trials.json").read_text(encoding="utf-8"))["rows"]
    assert [(r["number"], r["state"]) for r in rows] == [(0, "complete"), (1, "complete"), (2, "fail"), (3, "complete")]
    assert sum(r["baseline"] for r in rows) == 1 and result["states"] == {"complete": 3, "fail": 1}


def test_a_study_refuses_another_space(files):
    from toolkit.train.tune import tune

    tune(files / "recipe.yaml", files / "space.yaml", trials=1, out=files / "search")
    other = dict(SPACE, params={"train.lr": {"type": "float", "low": 1e-5, "high": 1e-3}})
    (files / "other.yaml").write_text(yaml.safe_dump(other), encoding="utf-8")
    with pytest.raises(ConfigError, match="another search space"):
        tune(files / "recipe.yaml", files / "other.yaml", trials=2, out=files / "search")


def test_time_budget_ends_the_search(files, monkeypatch):
    import toolkit.train.tune as tune_module

    start = time.monotonic()
    result = tune_module.tune(files / "recipe.yaml", files / "space.yaml", trials=5, minutes=0.001, out=files / "none")
    assert result["trials"] == 0 and result["best_recipe"] is None and time.monotonic() - start < 10

    monkeypatch.setattr(tune_module, "MIN_TRIAL_MINUTES", 0.0)
    recipe = Recipe.from_yaml(files / "recipe.yaml")
    recipe.train.max_steps, recipe.train.eval_every = 100_000, 100_000
    start = time.monotonic()
    result = tune_module.tune(recipe, files / "space.yaml", trials=5, minutes=0.02, out=files / "short")
    assert time.monotonic() - start < 20 and result["trials"] == 1
    assert result["best"]["truncated"] and result["best"]["stopped_by"] == "time budget" and result["best"]["steps"] < 100_000
