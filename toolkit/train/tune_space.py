"""The search space of ``toolkit tune``: a YAML file read strictly, checked against a recipe.

Example space::

    metric: mean_dev          # maximise the mean dev score training selects on (or a task's name)
    params:                   # dotted paths into the recipe
      train.lr: {type: float, low: 3.0e-5, high: 3.0e-4, log: true}
      train.layer_decay: {type: float, low: 0.7, high: 1.0}
      train.batch_size: {type: categorical, choices: [8, 16, 32]}
      train.freeze_encoder_steps: {type: int, low: 0, high: 200}
      tasks.ner.options.dropout: {type: float, low: 0.0, high: 0.3}
    pruner: {type: median, n_startup_trials: 3, n_warmup_steps: 100}   # steps are training steps
    sampler: {type: tpe, seed: 0}

A path is ``train.FIELD`` (:class:`~toolkit.train.recipe.TrainSettings`), ``tasks.NAME.FIELD``
(:class:`~toolkit.train.recipe.TaskRecipe`), ``tasks.NAME.options.KEY`` (an argument of the task's
head, e.g. ``dropout``) or a top-level recipe field (``max_length``, ``num_layers``). Each value
the space can produce is checked against the field's type here, so a typo or a float for an int
field fails before any trial runs. Nothing in this module needs Optuna: :func:`suggest` only calls
the ``suggest_*`` methods of the trial it is given.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import check_keys, coerce, read_yaml
from ..errors import ConfigError

if TYPE_CHECKING:  # the recipe module imports torch: only the functions that need it import it
    from .recipe import Recipe, TaskRecipe

PARAM_KEYS = {"float": ("type", "low", "high", "log", "step"), "int": ("type", "low", "high", "log", "step"),
              "categorical": ("type", "choices")}
PRUNERS = {"median": ("n_startup_trials", "n_warmup_steps", "interval_steps"),
           "percentile": ("percentile", "n_startup_trials", "n_warmup_steps", "interval_steps"),
           "none": ()}
SAMPLERS = {"tpe": ("seed", "n_startup_trials"), "random": ("seed",)}
TOP_LEVEL = ("max_length", "num_layers", "init")  # recipe fields a search may change besides train/tasks
TASK_FIELDS = ("weight", "flatten", "train_limit", "dev_limit", "holdout", "scheme")


@dataclass
class Param:
    """One searched value: its dotted path, distribution and bounds (or choices)."""

    path: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list[Any] | None = None

    def contains(self, value: Any) -> bool:
        """Whether the distribution can produce ``value`` (used to enqueue the recipe's own values)."""
        if self.type == "categorical":
            return value in (self.choices or [])
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high and (self.type == "float" or float(value).is_integer())


@dataclass
class Space:
    """A parsed search space (see the module docstring for the YAML)."""

    params: dict[str, Param]
    metric: str = "mean_dev"
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "median"})
    sampler: dict[str, Any] = field(default_factory=lambda: {"type": "tpe", "seed": 0})
    source: str | None = None


def read_space(path: str | Path, recipe: Recipe) -> Space:
    """Read a space YAML and check it against ``recipe``; every error is a ``ConfigError`` naming the file.

    Example:
        >>> space = read_space("recipes/tune/resume-ner-space.yaml", Recipe.from_yaml("recipes/tune/resume-ner.yaml"))  # doctest: +SKIP
        >>> sorted(space.params)[:2]  # doctest: +SKIP
        ['tasks.ner.options.dropout', 'train.batch_size']
    """
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping with 'params' (and optionally metric, pruner, sampler)")
    return parse_space(data, recipe, str(path))


def parse_space(data: dict[str, Any], recipe: Recipe, where: str = "space") -> Space:
    """:func:`read_space` for a dict already read (``where`` names it in errors)."""
    check_keys(where, data, ("metric", "params", "pruner", "sampler"))
    raw = data.get("params")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: 'params' must map recipe paths (e.g. train.lr) to distributions; it is {raw!r}")
    params = {str(p): _param(str(p), spec, recipe, f"{where}: params.{p}") for p, spec in raw.items()}
    metric = str(data.get("metric") or "mean_dev")
    if metric != "mean_dev" and metric not in recipe.tasks:
        raise ConfigError(f"{where}: metric {metric!r} is neither 'mean_dev' nor a task of the recipe ({', '.join(recipe.tasks)})")
    pruner = _options(data.get("pruner"), PRUNERS, "median", f"{where}: pruner")
    sampler = _options(data.get("sampler"), SAMPLERS, "tpe", f"{where}: sampler")
    sampler.setdefault("seed", 0)
    if "train.epochs" in params and recipe.train.max_steps is not None:
        raise ConfigError(f"{where}: params.train.epochs has no effect while the recipe sets train.max_steps "
                          f"({recipe.train.max_steps}); remove max_steps from the recipe or train.epochs from the space")
    return Space(params, metric, pruner, sampler, where)


def _options(data: Any, kinds: dict[str, tuple[str, ...]], default: str, where: str) -> dict[str, Any]:
    data = dict(data or {"type": default})
    kind = str(data.get("type", default))
    if kind not in kinds:
        raise ConfigError(f"{where}: type {kind!r} is not one of {sorted(kinds)}")
    check_keys(where, data, ("type",) + kinds[kind])
    for key, value in data.items():
        if key != "type":
            data[key] = coerce(where, key, value, "float" if key == "percentile" else "int")
    return {**data, "type": kind}


def _param(path: str, spec: Any, recipe: Recipe, where: str) -> Param:
    if not isinstance(spec, dict) or spec.get("type") not in PARAM_KEYS:
        raise ConfigError(f"{where}: expected {{type: float|int|categorical, ...}}, got {spec!r}")
    check_keys(where, spec, PARAM_KEYS[spec["type"]])
    annotation = _annotation(path, recipe, where)
    if spec["type"] == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: a categorical parameter needs a non-empty list 'choices'")
        param = Param(path, "categorical", choices=[coerce(where, "choices", c, annotation) for c in choices])
    else:
        number = spec["type"]
        kinds = str(annotation).split(" | ")
        if number not in kinds and not (number == "int" and "float" in kinds) and "Any" not in kinds:
            raise ConfigError(f"{where}: {path} is of type {annotation}; use type {_hint(annotation)}")
        if "low" not in spec or "high" not in spec:
            raise ConfigError(f"{where}: a {number} parameter needs 'low' and 'high'")
        low, high = (coerce(where, k, spec[k], number) for k in ("low", "high"))
        step = coerce(where, "step", spec["step"], number) if spec.get("step") is not None else None
        log = coerce(where, "log", spec.get("log", False), "bool")
        if not low < high:
            raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
        if log and (low <= 0 or step is not None):
            raise ConfigError(f"{where}: log: true needs low > 0 and no step")
        param = Param(path, number, low, high, log, step)
    return param


def _hint(annotation: str) -> str:
    kinds = [k for k in ("int", "float") if k in str(annotation).split(" | ")]
    return " or ".join(kinds + ["categorical"]) if kinds else "categorical"


def _annotation(path: str, recipe: Recipe, where: str) -> str:
    """The type annotation of the recipe field at ``path`` (a ``ConfigError`` when there is none)."""
    from .recipe import Recipe, TaskRecipe, TrainSettings

    parts = path.split(".")
    types = {f.name: str(f.type) for f in fields(Recipe)}
    if parts[0] == "train" and len(parts) == 2:
        found = {f.name: str(f.type) for f in fields(TrainSettings)}.get(parts[1])
        if found is None:
            raise ConfigError(f"{where}: train has no field {parts[1]!r}; fields: {', '.join(f.name for f in fields(TrainSettings))}")
        return found
    if parts[0] == "tasks" and len(parts) >= 3:
        task = recipe.tasks.get(parts[1])
        if task is None:
            raise ConfigError(f"{where}: the recipe has no task {parts[1]!r}; its tasks: {', '.join(recipe.tasks)}")
        if len(parts) == 4 and parts[2] == "options":
            return _option_annotation(task, parts[3], where)
        if len(parts) == 3 and parts[2] in TASK_FIELDS:
            return {f.name: str(f.type) for f in fields(TaskRecipe)}[parts[2]]
        raise ConfigError(f"{where}: a task path is tasks.{parts[1]}.FIELD ({', '.join(TASK_FIELDS)}) or tasks.{parts[1]}.options.KEY")
    if len(parts) == 1 and parts[0] in TOP_LEVEL:
        return types[parts[0]]
    raise ConfigError(f"{where}: {path!r} is not a path into the recipe; use train.FIELD, tasks.NAME.FIELD, "
                      f"tasks.NAME.options.KEY or one of {', '.join(TOP_LEVEL)}")


def _option_annotation(task: "TaskRecipe", key: str, where: str) -> str:
    from ..kinds import head_class

    signature = inspect.signature(head_class(task.kind).__init__).parameters
    allowed = [k for k in signature if k not in ("self", "hidden_size", "labels", "scheme")]
    if key not in allowed:
        raise ConfigError(f"{where}: a {task.kind} head has no option {key!r}; its options: {', '.join(allowed)}")
    annotation = signature[key].annotation
    return "Any" if annotation is inspect.Parameter.empty else str(annotation)


def suggest(trial: Any, space: Space, only: set[str] | None = None) -> dict[str, Any]:
    """Values for ``space``'s parameters from an Optuna ``trial`` (``only``: just these paths).

    Example:
        >>> suggest(optuna.trial.FixedTrial({"train.lr": 1e-4}), space)  # doctest: +SKIP
        {'train.lr': 0.0001}
    """
    values = {}
    for path, p in space.params.items():
        if only is not None and path not in only:
            continue
        if p.type == "categorical":
            values[path] = trial.suggest_categorical(path, p.choices)
        elif p.type == "int":
            values[path] = trial.suggest_int(path, p.low, p.high, step=p.step or 1, log=p.log)
        else:
            values[path] = trial.suggest_float(path, p.low, p.high, step=p.step, log=p.log)
    return values


def recipe_values(recipe: Recipe, space: Space) -> dict[str, Any]:
    """The recipe's own value at each path of ``space`` (``None`` where unset, e.g. an option left at the head's default)."""
    return {path: _get(recipe, path) for path in space.params}


def _get(recipe: Recipe, path: str) -> Any:
    parts = path.split(".")
    if parts[0] == "train":
        return getattr(recipe.train, parts[1])
    if parts[0] == "tasks":
        task = recipe.tasks[parts[1]]
        return task.options.get(parts[3]) if parts[2] == "options" else getattr(task, parts[2])
    return getattr(recipe, parts[0])


def apply_params(recipe: Recipe, values: dict[str, Any]) -> Recipe:
    """A copy of ``recipe`` with ``values`` (dotted path -> value) set; the recipe itself is unchanged.

    Raises ``ConfigError`` when the combination contradicts itself (see ``Recipe.check``).

    Example:
        >>> apply_params(recipe, {"train.lr": 1e-4, "tasks.ner.options.dropout": 0.2}).train.lr  # doctest: +SKIP
        0.0001
    """
    new = copy.deepcopy(recipe)
    for path, value in values.items():
        parts = path.split(".")
        if parts[0] == "train":
            setattr(new.train, parts[1], value)
        elif parts[0] == "tasks" and parts[2] == "options":
            new.tasks[parts[1]].options[parts[3]] = value
        elif parts[0] == "tasks":
            setattr(new.tasks[parts[1]], parts[2], value)
        else:
            setattr(new, parts[0], value)
    try:
        new.check()
    except ValueError as err:
        raise ConfigError(f"the values {values} contradict each other or the recipe: {err}") from err
    return new


def set_in_yaml(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of a recipe's YAML mapping with ``values`` written at their dotted paths (missing sections are added)."""
    data = copy.deepcopy(data)
    for path, value in values.items():
        *parents, last = path.split(".")
        node = data
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[last] = value
    return data


__all__ = ["Param", "Space", "read_space", "parse_space", "suggest", "recipe_values", "apply_params", "set_in_yaml"]
