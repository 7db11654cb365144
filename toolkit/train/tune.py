"""``toolkit tune``: hyper-parameter search on a recipe with Optuna.

Each trial is a copy of the recipe with values drawn from a search space (see
:mod:`toolkit.train.tune_space`), trained by :func:`toolkit.train.loop.train` into its own run folder
``OUT/trial-NNN``. After every dev evaluation the trial reports the score to Optuna; a trial the
pruner judges hopeless is stopped there (:class:`~toolkit.train.loop.StopTraining`) and recorded as
pruned. The recipe's own values run first (trial 0, marked ``baseline``), so the search is compared
with the defaults on the same budget.

The study lives in SQLite (default ``OUT/tune.db``): running the same command again resumes it and
runs trials until ``trials`` have finished (completed or pruned) in total. A trial that a kill
interrupted is left ``RUNNING`` in the database; the next run marks it ``FAIL`` (the sampler ignores
failed trials) and starts a new one, so run one ``toolkit tune`` process per study at a time.

``minutes`` bounds the wall time of one invocation: no trial starts with less than
:data:`MIN_TRIAL_MINUTES` left, and each trial's ``train.max_minutes`` is capped to the time left
(such a trial is marked ``truncated``). At the end the search writes ``OUT/best_recipe.yaml`` (the
recipe with the best values, for ``toolkit train``), ``OUT/trials.json`` and ``OUT/trials.png``.
Only the best trial keeps its model folder (``keep_models="all"`` keeps every one); checkpoints are
always removed, logs and summaries are kept.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

import yaml

from ..config import read_yaml
from ..errors import ConfigError

if TYPE_CHECKING:  # the recipe module imports torch: `toolkit --help` must not
    from .recipe import Recipe
    from .tune_space import Space

logger = logging.getLogger(__name__)

MIN_TRIAL_MINUTES = 0.25  # no trial starts with less of the time budget left
MAX_FAILED = 10  # invalid combinations in a row before the search gives up
BEST_RECIPE, TRIALS_JSON, TRIALS_PNG, DB = "best_recipe.yaml", "trials.json", "trials.png", "tune.db"
INSTALL = 'pip install -e ".[tune]"'


class InvalidCombination(Exception):
    """Values that contradict the recipe (``Recipe.check``): the trial is recorded as failed, the search goes on."""


def _optuna():
    try:
        import optuna
    except ImportError as err:
        raise ImportError(f"toolkit tune needs Optuna: {INSTALL}") from err
    return optuna


def tune(recipe: Recipe | str | Path, space: Space | str | Path, trials: int = 20, minutes: float | None = None,
         out: str | Path | None = None, storage: str | None = None, study: str | None = None, threads: int | None = None,
         baseline: bool = True, keep_models: Literal["best", "all"] = "best", progress: bool = False,
         on_trial: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Search ``space`` on ``recipe``; returns a summary and writes best_recipe.yaml, trials.json, trials.png to ``out``.

    ``trials`` counts finished trials in the whole study (a rerun resumes up to it); ``minutes``
    bounds this call; ``storage`` is an Optuna URL (default ``sqlite:///OUT/tune.db``); ``study``
    defaults to the recipe's name; ``threads`` sets each trial's ``train.threads``; ``baseline``
    runs the recipe's own values first; ``on_trial`` gets each finished trial's row (see trials.json).

    Example:
        >>> result = tune("recipes/tune/resume-ner.yaml", "recipes/tune/resume-ner-space.yaml", trials=10, minutes=20)  # doctest: +SKIP
        >>> result["best"]["value"], result["best_recipe"]  # doctest: +SKIP
        (0.9213, 'runs/tune-resume-ner/best_recipe.yaml')
    """
    from .recipe import Recipe
    from .tune_space import Space, read_space, recipe_values

    optuna = _optuna()
    recipe = recipe if isinstance(recipe, Recipe) else Recipe.from_yaml(recipe)
    space = space if isinstance(space, Space) else read_space(space, recipe)
    for name, task in recipe.tasks.items():
        if task.dev is None and not task.holdout:
            raise ConfigError(f"task {name!r} has no dev data to select on: give it 'dev' or 'holdout' in the recipe before tuning")
    out = Path(out or f"{recipe.out}-tune")
    out.mkdir(parents=True, exist_ok=True)
    study_obj = _open_study(optuna, recipe, space, storage or f"sqlite:///{out / DB}", study or recipe.name)
    if baseline and not any(t.user_attrs.get("baseline") for t in study_obj.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED", "WAITING")):
        defaults = {p: v for p, v in recipe_values(recipe, space).items() if space.params[p].contains(v)}
        study_obj.enqueue_trial(defaults, user_attrs={"baseline": True})
    deadline = time.monotonic() + minutes * 60 if minutes is not None else None
    objective = _Objective(recipe, space, out, deadline, threads, progress)
    failed = 0
    while _finished(study_obj) < trials:
        if failed >= MAX_FAILED:
            raise ConfigError(f"{failed} trials in a row drew values that contradict the recipe (see the warnings); narrow the space {space.source}")
        left = None if deadline is None else (deadline - time.monotonic()) / 60
        if left is not None and left < MIN_TRIAL_MINUTES:
            logger.info("time budget spent: %.2f minutes left, fewer than the %.2f a trial needs", left, MIN_TRIAL_MINUTES)
            break
        study_obj.optimize(objective, n_trials=1, timeout=None if left is None else left * 60, catch=(InvalidCombination,))
        done = study_obj.trials[-1]
        failed = failed + 1 if done.state.name == "FAIL" else 0
        if keep_models == "best":
            _drop_models(study_obj, out)
        if on_trial is not None:
            on_trial(trial_row(done, out))
    return write_report(study_obj, recipe, space, out)


def _open_study(optuna, recipe: Recipe, space: Space, storage: str, name: str):
    """Create or load the study; fail trials a kill left RUNNING; refuse a study made with another space."""
    sampler_opts = {k: v for k, v in space.sampler.items() if k != "type"}
    sampler = (optuna.samplers.TPESampler if space.sampler["type"] == "tpe" else optuna.samplers.RandomSampler)(**sampler_opts)
    pruner_opts = {k: v for k, v in space.pruner.items() if k != "type"}
    pruner = {"median": lambda: optuna.pruners.MedianPruner(**pruner_opts), "none": optuna.pruners.NopPruner,
              "percentile": lambda: optuna.pruners.PercentilePruner(**pruner_opts)}[space.pruner["type"]]()
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler, pruner=pruner, load_if_exists=True)
    fingerprint = json.dumps({"metric": space.metric, "params": {p: asdict(v) for p, v in sorted(space.params.items())}}, sort_keys=True)
    if not study.user_attrs.get("space"):
        study.set_user_attr("space", fingerprint)
        study.set_user_attr("recipe", recipe.source or recipe.name)
    elif study.user_attrs["space"] != fingerprint:
        raise ConfigError(f"study {name!r} in {storage} was run with another search space or metric; "
                          "use the same space to resume it, or a new --study NAME (or --out) for a new search")
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for t in stale:  # left by a killed run (one process per study): the sampler ignores failed trials
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    if stale:
        logger.warning("marked %d trial(s) left running by an interrupted search as failed: %s", len(stale), [t.number for t in stale])
    return study


def _finished(study) -> int:
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False))


class _Objective:
    """One trial: sample, apply, train with pruning, return the selected dev score."""

    def __init__(self, recipe: Recipe, space: Space, out: Path, deadline: float | None, threads: int | None, progress: bool) -> None:
        self.recipe, self.space, self.out, self.deadline, self.threads, self.progress = recipe, space, out, deadline, threads, progress

    def __call__(self, trial) -> float:
        from .loop import drop_checkpoint, train
        from .tune_space import apply_params, recipe_values, suggest

        optuna = _optuna()
        is_baseline = bool(trial.user_attrs.get("baseline"))
        defaults = recipe_values(self.recipe, self.space)
        only = {p for p, v in defaults.items() if self.space.params[p].contains(v)} if is_baseline else None
        sampled = suggest(trial, self.space, only)
        trial.set_user_attr("values", {**(defaults if is_baseline else {}), **sampled})
        try:
            recipe = apply_params(self.recipe, sampled)
        except ConfigError as err:
            logger.warning("trial %d: %s", trial.number, err)
            raise InvalidCombination(str(err)) from err
        recipe.out, recipe.model_out = str(self.out / f"trial-{trial.number:03d}"), None
        recipe.command = None
        if self.threads:
            recipe.train.threads = self.threads
        truncated = False
        if self.deadline is not None:
            left = max((self.deadline - time.monotonic()) / 60, 0.01)
            truncated = recipe.train.max_minutes is None or left < recipe.train.max_minutes
            recipe.train.max_minutes = left if truncated else recipe.train.max_minutes
        logger.info("trial %d%s: %s", trial.number, " (baseline)" if is_baseline else "", sampled)
        summary = train(recipe, progress=self.progress, overwrite=True, on_eval=pruning_callback(trial, self.space.metric, recipe.train.max_steps))
        drop_checkpoint(summary["run"], summary["model"])
        trial.set_user_attr("run", summary["run"])
        trial.set_user_attr("steps", summary["steps"])
        trial.set_user_attr("stopped_by", summary["stopped_by"])
        trial.set_user_attr("truncated", truncated and summary["stopped_by"] == "time budget")
        if summary["stopped_by"] == "callback":
            raise optuna.TrialPruned(f"pruned at step {summary['steps']}")
        return selected_score(summary, self.space.metric)


def pruning_callback(trial: Any, metric: str = "mean_dev", last_step: int | None = None) -> Callable[[dict], None]:
    """An ``on_eval`` callback for :func:`toolkit.train.loop.train` that reports each dev score to ``trial``
    and raises :class:`~toolkit.train.loop.StopTraining` when the trial's pruner says to stop.

    At ``last_step`` (the recipe's ``max_steps``) the score is reported but the run is not pruned:
    the training is over, so stopping saves nothing and the trial counts as complete.

    Example:
        >>> train(recipe, on_eval=pruning_callback(trial))  # doctest: +SKIP
    """
    from .loop import StopTraining

    def on_eval(record: dict) -> None:
        value = record["mean"] if metric == "mean_dev" else record["scores"][metric]["main"]
        trial.report(float(value), int(record["step"]))
        if (last_step is None or record["step"] < last_step) and trial.should_prune():
            raise StopTraining(f"pruned: {metric} {value:.4f} at step {record['step']}")

    return on_eval


def selected_score(summary: dict, metric: str = "mean_dev") -> float:
    """The score of the evaluation training selected (the best mean dev), for ``metric``."""
    if metric == "mean_dev":
        return float(summary["best_mean_dev"])
    best = max(summary["history"], key=lambda r: r["mean"])
    return float(best["scores"][metric]["main"])


def _drop_models(study, out: Path) -> None:
    """Delete every trial's model folder but the best trial's (disk: a model is 20-130 MB)."""
    try:
        best = study.best_trial.number
    except ValueError:  # no completed trial yet
        best = None
    for t in study.get_trials(deepcopy=False):
        model = out / f"trial-{t.number:03d}" / "model"
        if t.number != best and model.is_dir():
            shutil.rmtree(model)


def trial_row(t, out: Path) -> dict[str, Any]:
    """One trial as a JSON-able row of trials.json."""
    duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
    value = t.value if t.value is not None else (t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
    model = out / f"trial-{t.number:03d}" / "model"
    return {"number": t.number, "state": t.state.name.lower(), "value": value, "baseline": bool(t.user_attrs.get("baseline")),
            "params": t.params, "values": t.user_attrs.get("values", t.params), "duration_s": None if duration is None else round(duration, 1),
            "steps": t.user_attrs.get("steps"), "stopped_by": t.user_attrs.get("stopped_by"), "truncated": t.user_attrs.get("truncated", False),
            "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())}, "run": t.user_attrs.get("run"),
            "model": str(model) if model.is_dir() else None}


def write_report(study, recipe: Recipe, space: Space, out: Path) -> dict[str, Any]:
    """Write trials.json, best_recipe.yaml (when a trial completed) and trials.png; return the summary."""
    rows = [trial_row(t, out) for t in study.get_trials(deepcopy=False) if t.state.name != "WAITING"]
    complete = [r for r in rows if r["state"] == "complete"]
    best = max(complete, key=lambda r: r["value"]) if complete else None
    base = next((r for r in rows if r["baseline"] and r["state"] == "complete"), None)
    result: dict[str, Any] = {"study": study.study_name, "metric": space.metric, "space": space.source, "recipe": recipe.source,
                              "trials": len(rows), "states": {s: sum(r["state"] == s for r in rows) for s in sorted({r["state"] for r in rows})},
                              "best": best, "baseline": base, "best_recipe": None, "plot": None, "trials_json": str(out / TRIALS_JSON)}
    if best is not None:
        result["best_recipe"] = str(write_best_recipe(recipe, best, space, out / BEST_RECIPE, study.study_name))
    (out / TRIALS_JSON).write_text(json.dumps({**result, "rows": rows}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if not any(r["value"] is not None for r in rows):
        return result
    try:
        from .tune_plot import plot_trials

        result["plot"] = str(plot_trials(rows, space, out / TRIALS_PNG))
    except ImportError as err:
        logger.warning("no plot: %s", err)
    return result


def write_best_recipe(recipe: Recipe, best: dict, space: Space, path: Path, study: str) -> Path:
    """The recipe (its YAML as written, else its fields) with the best trial's values, checked by loading it back."""
    data = read_yaml(recipe.source) if recipe.source and Path(recipe.source).is_file() else {
        k: v for k, v in asdict(recipe).items() if k not in ("source", "command")}
    from .recipe import Recipe
    from .tune_space import set_in_yaml

    data = set_in_yaml(data, {p: best["values"][p] for p in space.params if p in best["values"]})
    head = (f"# Best of study {study!r} (trial {best['number']}, {space.metric} {best['value']:.4f}), written by toolkit tune\n"
            f"# from {recipe.source or recipe.name} and {space.source}. Train it: toolkit train {path}\n")
    path.write_text(head + yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    Recipe.from_yaml(path)  # a recipe toolkit train accepts
    return path


# ------------------------------------------------------------------ command line
def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tune`` to the ``toolkit`` command's ``subparsers``.

    Example:
        >>> parser = argparse.ArgumentParser(prog="toolkit")
        >>> register_cli(parser.add_subparsers(dest="command", required=True))
        >>> parser.parse_args(["tune", "r.yaml", "--space", "s.yaml", "--trials", "3"]).trials
        3
    """
    from ..cli_io import positive_float, positive_int

    p = subparsers.add_parser("tune", help="hyper-parameter search on a recipe (Optuna; resumable; writes the best recipe)",
                              description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("recipe", help="the recipe YAML to tune")
    p.add_argument("--space", required=True, help="search space YAML (see recipes/tune/)")
    p.add_argument("--trials", type=positive_int, default=20, help="finished trials in the study, counting earlier runs (default 20)")
    p.add_argument("--minutes", type=positive_float, help="wall-time budget of this run; each trial's max_minutes is capped to what is left")
    p.add_argument("--out", help="search folder (default: the recipe's out + '-tune')")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///OUT/tune.db); the same URL and --study resume a search")
    p.add_argument("--study", help="study name (default: the recipe's name)")
    p.add_argument("--threads", type=positive_int, help="CPU threads each trial trains with")
    p.add_argument("--data-root", help="corpus root for catalogue ids (default: $TOOLKIT_DATA_ROOT or ../shared/corpora)")
    p.add_argument("--no-baseline", action="store_true", help="do not run the recipe's own values as trial 0")
    p.add_argument("--keep-models", action="store_true", help="keep every trial's model folder (default: only the best trial's)")
    p.add_argument("--progress", action="store_true", help="show each trial's training progress bar")
    p.set_defaults(func=_cmd_tune)


def _cmd_tune(args: argparse.Namespace) -> int:
    import sys

    from .recipe import Recipe

    optuna = _optuna()
    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    recipe = Recipe.from_yaml(args.recipe)
    if args.data_root:
        recipe.data_root = args.data_root

    def show(row: dict) -> None:
        value = "-" if row["value"] is None else f"{row['value']:.4f}"
        print(f"trial {row['number']}{' (baseline)' if row['baseline'] else ''}: {row['state']} {value} after {row['steps']} steps "
              f"{row['duration_s']} s {json.dumps(row['params'])}", file=sys.stderr, flush=True)

    result = tune(recipe, args.space, trials=args.trials, minutes=args.minutes, out=args.out, storage=args.storage, study=args.study,
                  threads=args.threads, baseline=not args.no_baseline, keep_models="all" if args.keep_models else "best",
                  progress=args.progress, on_trial=show)
    summary = {k: result[k] for k in ("study", "metric", "trials", "states", "best_recipe", "trials_json", "plot")}
    for key in ("best", "baseline"):
        row = result[key]
        summary[key] = None if row is None else {k: row[k] for k in ("number", "value", "values", "model")}
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0


__all__ = ["tune", "pruning_callback", "selected_score", "trial_row", "write_report", "write_best_recipe", "register_cli", "InvalidCombination"]
