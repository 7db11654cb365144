"""Training recipes: one YAML file per model, read strictly into dataclasses.

Example recipe::

    name: zh-medical-ner
    encoder: zh-e5-small-adapted     # a base name (see registry.BASES; this one is the default) or an encoder folder
    init: pretrained                 # or "random": same architecture, random weights (a baseline)
    num_layers: null                 # keep only the first N layers
    teacher: null                    # a trained model to distil from (toolkit.train.teacher)
    max_length: 128
    out: runs/zh-medical-ner
    tasks:
      ner_medical:
        kind: tagger
        scheme: BIO
        train: cmeee:train           # a catalogue id, or {path: my.bio, format: columns}
        dev: cmeee:dev
        dev_limit: 1000
    train:
      epochs: 2
      lr: 1.0e-4
      max_minutes: 60
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..config import from_dict, read_yaml
from ..data.refs import load_examples
from ..data.examples import NerExample, PairExample, TextExample
from ..model.encoder import Encoder
from ..registry import DEFAULT_BASE
from .. import kinds
from .features import FeatureReport, build_features
from ..model.manifest import TaskSpec
from ..model.multitask import MultiTaskModel
from ..text.normalize import NormalizationConfig, Normalizer
from ..text.tokenization import TextTokenizer

logger = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Optimisation settings; every technique can be switched off."""

    epochs: float = 3.0
    max_steps: int | None = None
    max_minutes: float | None = None  # the run's time budget, counted across resumes: it stops evaluated and checkpointed
    batch_size: int = 32
    eval_batch_size: int = 64
    grad_accum: int = 1
    lr: float = 5e-5
    head_lr: float = 1e-3
    layer_decay: float = 0.9
    weight_decay: float = 0.01
    warmup: float = 0.06  # fraction of steps (< 1) or a step count
    clip: float | None = 1.0
    ema: float | None = None  # e.g. 0.999
    patience: int | None = 3
    eval_every: int = 500
    checkpoint_every: int = 500  # also checkpointed at every evaluation
    temperature: float = 0.8
    dtype: str = "auto"  # "fp32", "bf16" (autocast; weights, losses and optimizer stay fp32) or "auto": measured at the start (toolkit.train.precision), kept on resume
    bf16: bool | None = None  # deprecated: true means dtype bf16, false dtype fp32
    device: str = "cpu"  # "cuda" on a GPU machine
    freeze_encoder: bool = False  # train only the heads (other tasks' scores then cannot move)
    freeze_encoder_steps: int = 0
    unfreeze_steps: int = 0
    max_tokens: int | None = None  # token budget: a batch holds at most batch_size length-sorted sequences AND at most this many padded tokens (longest x count); a longer sequence trains alone
    length_pool: int = 50  # sequences are shuffled, then sorted by length inside pools of length_pool x batch_size (less padding); 0: no sorting
    seed: int = 42
    threads: int | None = None  # torch CPU threads for the run (default: torch's); 1-2 when sharing the CPU
    early_stopping: str = "patience"  # "patience": no better dev score for `patience` evaluations; "trend": that AND a shrinking confidence gap
    diag_every: int = 10  # log per-layer gradient norms, LR per group and label entropy every N steps (0: never)
    tensorboard: bool | str = "auto"  # TensorBoard event files in OUT/tensorboard: true, false, or auto (when tensorboard is installed)
    distill_weight: float = 0.5  # with a recipe `teacher`: loss = (1 - w) * gold loss + w * distillation loss
    distill_temperature: float = 2.0  # softens the teacher's and the student's distributions (toolkit.train.teacher)
    distill_hidden: float = 0.0  # with a recipe `teacher`: + this x MSE of each student layer's output to the proportional teacher layer's

    def precision(self) -> str:
        """The dtype setting, ``"auto"``, ``"fp32"`` or ``"bf16"``, with the deprecated ``bf16`` folded in.

        >>> TrainSettings(bf16=True).precision(), TrainSettings(dtype="fp32").precision()
        ('bf16', 'fp32')
        """
        if self.dtype not in ("auto", "fp32", "bf16"):
            raise ValueError(f"dtype must be auto, fp32 or bf16, got {self.dtype!r}")
        if self.bf16 is None:
            return self.dtype
        alias = "bf16" if self.bf16 else "fp32"
        if self.dtype not in ("auto", alias):
            raise ValueError(f"bf16: {str(self.bf16).lower()} contradicts dtype: {self.dtype}; drop bf16 (deprecated) and keep dtype")
        return alias


@dataclass
class TaskRecipe:
    """One task: head kind, data, labels (inferred from train when absent), loss weight."""

    kind: str
    train: Any
    dev: Any = None
    labels: list[str] | None = None
    scheme: str | None = None
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)
    flatten: str = "longest"
    train_limit: int | None = None
    dev_limit: int | None = None
    holdout: int = 0  # when > 0 and no dev is given: this many training examples (seeded shuffle) select the model
    unlabeled: Any = None  # with a recipe `teacher`: a text file (one text a line; a path, else under the data root) or a list; distillation loss only
    unlabeled_ratio: float = 0.25  # the fraction of this task's batches that come from `unlabeled`
    unlabeled_limit: int | None = None  # at most this many unlabeled texts (a seeded sample)
    pseudo_labels: bool = False  # unlabeled batches also train on the teacher's decisions as gold (mixed as labelled ones, by distill_weight)


@dataclass
class Recipe:
    name: str
    tasks: dict[str, TaskRecipe]
    encoder: str = ""  # a base name or encoder folder; empty: registry.DEFAULT_BASE (ignored with from_model)
    out: str = "runs/model"
    model_out: str | None = None  # where the best model folder goes (default: OUT/model)
    from_model: str | None = None  # continue from a trained model folder or registered name
    keep_heads: bool = True  # with from_model: keep its other heads (false: the new folder holds only the recipe's tasks)
    teacher: str | None = None  # a trained model folder or registered name to distil from (same vocabulary; heads of the same kind and labels)
    init: str = "pretrained"
    num_layers: int | None = None
    max_length: int | None = None  # default 128, or the from_model's
    normalization: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    licence: str | None = None  # the model's licence; unset: the card says the training data's licences apply
    train: TrainSettings = field(default_factory=TrainSettings)
    source: str | None = None
    command: str | None = None  # the command that reproduces the run (set by finetune; else `toolkit train SOURCE`)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Recipe":
        data = read_yaml(path)  # limits and file:line syntax errors (toolkit.config)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a YAML mapping")
        data["tasks"] = {n: from_dict(TaskRecipe, t, f"{path}: task {n!r}") for n, t in (data.get("tasks") or {}).items()}
        if not data["tasks"]:
            raise ValueError(f"{path}: the recipe has no tasks")
        data["train"] = from_dict(TrainSettings, data.get("train"), f"{path}: train")
        recipe = from_dict(cls, data, str(path))
        recipe.source = str(path)
        recipe.check()
        return recipe

    def check(self) -> None:
        """Refuse settings that contradict each other."""
        t = self.train
        if t.freeze_encoder and (t.freeze_encoder_steps or t.unfreeze_steps):
            raise ValueError("freeze_encoder keeps the encoder frozen throughout; drop freeze_encoder_steps/unfreeze_steps, or freeze_encoder")
        if t.ema is not None and not 0 < t.ema < 1:
            raise ValueError(f"ema must be between 0 and 1 (e.g. 0.999), got {t.ema}")
        if t.threads is not None and t.threads < 1:
            raise ValueError(f"threads must be at least 1 (the number of CPU threads torch may use), got {t.threads}")
        if t.early_stopping not in ("patience", "trend"):
            raise ValueError(f"early_stopping must be 'patience' or 'trend', got {t.early_stopping!r}")
        if t.diag_every < 0:
            raise ValueError(f"diag_every must be 0 (no step diagnostics) or a number of steps, got {t.diag_every}")
        t.precision()  # dtype and the deprecated bf16 agree
        if t.bf16 is not None:
            logger.warning("train.bf16 is deprecated: write dtype: %s (or dtype: auto, chosen by a measurement on each machine)", t.precision())
        if t.max_tokens is not None and t.max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive number of padded tokens per batch (or unset), got {t.max_tokens}")
        if t.length_pool < 0:
            raise ValueError(f"length_pool must be 0 (no length sorting) or a number of batches, got {t.length_pool}")
        if t.tensorboard not in (True, False, "auto"):
            raise ValueError(f"tensorboard must be true, false or auto, got {t.tensorboard!r}")
        if not self.encoder and not self.from_model:
            self.encoder = DEFAULT_BASE
        if not 0 <= t.distill_weight <= 1 or t.distill_temperature <= 0:
            raise ValueError(f"distill_weight must be between 0 and 1 and distill_temperature positive, got {t.distill_weight} and {t.distill_temperature}")
        if t.distill_hidden < 0:
            raise ValueError(f"distill_hidden must be 0 (off) or a positive weight of the hidden-state loss, got {t.distill_hidden}")
        if t.distill_hidden and not self.teacher:
            raise ValueError("distill_hidden matches the student's layers to a teacher's: add `teacher:` (a trained model) or drop distill_hidden")
        for name, task in self.tasks.items():
            if task.pseudo_labels and task.unlabeled is None:
                raise ValueError(f"task {name!r}: pseudo_labels are the teacher's decisions on unlabeled text: add `unlabeled:` (and `teacher:`) or drop pseudo_labels")
            if task.unlabeled is None:
                continue
            if not self.teacher:
                raise ValueError(f"task {name!r}: unlabeled text trains on the teacher's outputs alone: add `teacher:` (a trained model) or drop `unlabeled`")
            if kinds.get(task.kind).input != "text":
                raise ValueError(f"task {name!r}: unlabeled text works for tasks on one text; a {task.kind} head reads pairs")
            if not 0 < task.unlabeled_ratio < 1:
                raise ValueError(f"task {name!r}: unlabeled_ratio must be between 0 and 1 (the fraction of its batches from unlabeled text), got {task.unlabeled_ratio}")
        if self.from_model and self.num_layers is not None:
            raise ValueError("num_layers cannot change a model that is continued (from_model); truncate when training from a base encoder")

    def card(self, scores: dict[str, dict], data: dict[str, TaskData] | None = None) -> str:
        """Model card: start point, data files (sha256, example counts), selection split, metric and
        value, licence, the command that reproduces the run, date and toolkit version."""
        from datetime import date

        from ..version import __version__

        start = f"the model `{self.from_model}`" if self.from_model else f"`{self.encoder}` ({self.init} init)"
        lines = [f"# {self.name}", "", f"Fine-tuned from {start} by toolkit {__version__} on {date.today().isoformat()}; max length {self.max_length}.", ""]
        if self.teacher:
            extra = [f"{_ref(t.unlabeled)} for {n}{' (with the teacher' + chr(39) + 's pseudo-labels)' if t.pseudo_labels else ''}"
                     for n, t in self.tasks.items() if t.unlabeled is not None]
            hidden = f", hidden-state weight {self.train.distill_hidden}" if self.train.distill_hidden else ""
            lines += [f"Distilled from the model `{self.teacher}` (distill_weight {self.train.distill_weight}, temperature "
                      f"{self.train.distill_temperature}{hidden}{'; unlabeled text: ' + ', '.join(extra) if extra else ''}).", ""]
        lines += ["| task | kind | labels | trained on | model selected on | metric | value |", "|---|---|---|---|---|---|---|"]
        files: list[str] = []
        for t, spec in self.tasks.items():
            s, d = scores.get(t, {}), (data or {}).get(t)
            train = _ref(spec.train) + (f" ({d.examples} examples)" if d else "")
            if spec.holdout:
                dev = f"{len(d.dev) if d else spec.holdout} examples held out from the training data (seed {self.train.seed})"
            elif spec.dev is None:
                dev = "no dev data: the model of the last step"
            else:
                dev = _ref(spec.dev) + (f" (first {spec.dev_limit})" if spec.dev_limit else "") + (f" ({len(d.dev)} examples)" if d else "")
            metric, value = (s["metric"], f"{s['main']:.4f}") if "main" in s else ("none", "not evaluated")
            lines.append(f"| {t} | {spec.kind} | {', '.join(d.labels) if d else '-'} | {train} | {dev} | {metric} | {value} |")
            files += [f for f in _paths(spec.train) + _paths(spec.dev) if f not in files]
        if files:
            lines += ["", "Data files:", ""] + [f"- `{f}`: {_digest(f)}" for f in files]
        data_names = ", ".join(_ref(spec.train) for spec in self.tasks.values())
        licence = self.licence or f"not stated; the licence of the training data ({data_names}) applies"
        command = self.command or (f"toolkit train {self.source}" if self.source else None)
        lines += ["", f"Licence: {licence}.", "", "Reproduce:", ""]
        if command:
            lines += ["```bash", command, "```", ""]
        else:  # built in Python: the recipe itself reproduces it
            from dataclasses import asdict

            lines += ["```yaml", yaml.safe_dump(asdict(self), allow_unicode=True, sort_keys=False).rstrip(), "```", "", "(save as recipe.yaml; run `toolkit train recipe.yaml`)", ""]
        return "\n".join(lines)


def _paths(ref: Any) -> list[str]:
    """The files a data reference names (catalogue ids name none: the catalogue records their sha256)."""
    if isinstance(ref, list):
        return [p for r in ref for p in _paths(r)]
    return [str(ref["path"])] if isinstance(ref, dict) and "path" in ref else []


def _digest(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:
        return f"not readable when the card was written ({err.strerror})"
    return f"sha256 {digest.hexdigest()}"


def _ref(ref: Any) -> str:
    if ref is None:
        return "-"
    if isinstance(ref, dict):
        return str(ref.get("path"))
    if isinstance(ref, list):
        return " + ".join(_ref(r) for r in ref)
    return str(ref)


@dataclass
class TaskData:
    """One task's training features, dev examples, loss weight, and for the card: how many training
    examples the features came from and the head's labels."""

    train: list
    dev: list
    weight: float = 1.0
    examples: int = 0
    labels: list[str] = field(default_factory=list)


def split_holdout(examples: list, n: int, seed: int) -> tuple[list, list]:
    """``(train, holdout)``: about ``n`` examples held out by distinct text (seeded), so no text is in both."""
    from ..data.validation import example_key

    keys = sorted({example_key(ex) for ex in examples}, key=str)
    order = np.random.default_rng(seed).permutation(len(keys))
    held: set = set()
    count = Counter(example_key(ex) for ex in examples)
    total = 0
    for i in order:
        if total >= n:
            break
        held.add(keys[i])
        total += count[keys[i]]
    train = [ex for ex in examples if example_key(ex) not in held]
    dev = [ex for ex in examples if example_key(ex) in held]
    return train, dev


def build_encoder(recipe: Recipe) -> tuple[Encoder, TextTokenizer]:
    from ..registry import base_path

    if recipe.init not in ("pretrained", "random"):
        raise ValueError(f"init must be 'pretrained' or 'random', got {recipe.init!r}")
    path = base_path(recipe.encoder)
    encoder = Encoder.from_pretrained(path, num_layers=recipe.num_layers, random_init=recipe.init == "random")
    if recipe.init == "random":
        logger.info("encoder initialised randomly (baseline)")
    return encoder, TextTokenizer.from_pretrained(path)


def _start(recipe: Recipe) -> tuple[Encoder, TextTokenizer, dict, NormalizationConfig, int, dict]:
    """Encoder, tokenizer, inherited heads, normalisation, max length and metrics the recipe starts from."""
    if recipe.from_model:
        from ..registry import resolve

        path, _ = resolve(recipe.from_model)
        if recipe.num_layers is not None:
            raise ValueError("num_layers cannot change a model that is continued (its other heads were trained on every layer); truncate when training from a base encoder")
        source = MultiTaskModel.load(path)
        if recipe.normalization and NormalizationConfig.from_dict(recipe.normalization) != source.normalization:
            raise ValueError("a model continued with from_model keeps its normalisation; remove 'normalization' from the recipe")
        logger.info("continuing from %s (tasks %s)", path, source.tasks)
        heads = dict(source.heads) if recipe.keep_heads else {t: h for t, h in source.heads.items() if t in recipe.tasks}
        metrics = source.metrics if recipe.keep_heads else {t: m for t, m in source.metrics.items() if t in recipe.tasks}
        return source.encoder, source.tokenizer, heads, source.normalization, recipe.max_length or source.max_length, metrics
    encoder, tokenizer = build_encoder(recipe)
    return encoder, tokenizer, {}, NormalizationConfig.from_dict(recipe.normalization), recipe.max_length or 128, {}


def prepare(recipe: Recipe, teacher_heads: dict[str, Any] | None = None) -> tuple[MultiTaskModel, dict[str, TaskData]]:
    """Build the model and the training features / dev examples of every task.

    With ``recipe.from_model`` the encoder, tokenizer, normalisation and the other heads come from
    that model; a task's head is reused when its kind, labels and scheme match, else made anew.
    ``teacher_heads`` (a teacher's heads by task): a task without ``labels`` takes its teacher
    head's labels, in their order, when the data's labels are among them.
    """
    encoder, tokenizer, heads, normalization, max_length, metrics = _start(recipe)
    if max_length > encoder.max_positions:
        logger.warning("max_length %d is more than the encoder's %d positions; using %d", max_length, encoder.max_positions, encoder.max_positions)
        max_length = encoder.max_positions
    recipe.max_length = max_length
    normalizer = Normalizer(normalization)
    data = {}
    for name, t in recipe.tasks.items():
        train = load_examples(t.train, recipe.data_root, t.train_limit)
        dev = load_examples(t.dev, recipe.data_root, t.dev_limit)
        if t.holdout:
            if dev:
                raise ValueError(f"task {name!r}: give either dev or holdout, not both")
            train, dev = split_holdout(train, t.holdout, recipe.train.seed)
            logger.info("task %s: %d training examples held out for model selection", name, len(dev))
        if not train:
            raise ValueError(f"task {name!r}: no training examples from {t.train!r}")
        kind = kinds.get(t.kind)
        old = heads.get(name)
        labels = t.labels or kind.infer_labels(train)
        if not t.labels and old is not None and old.kind == t.kind and set(labels) <= set(old.labels):
            labels = list(old.labels)  # keep the trained head's label order (and labels this data lacks)
        taught = (teacher_heads or {}).get(name)
        if not t.labels and taught is not None and taught.kind == t.kind and set(labels) <= set(taught.labels):
            labels = list(taught.labels)  # the teacher's labels in its order: its outputs line up with the student's
        spec = TaskSpec.from_dict(name, {"kind": t.kind, "labels": labels, "scheme": t.scheme, "options": t.options})
        kind.spec_defaults(spec)
        head = None
        if old is not None:  # a continued model: keep its head unless the recipe asks for another one
            before, wanted = _untuned(kind, old.spec()), _untuned(kind, spec.build_head(encoder.hidden_size).spec())
            if before == wanted:
                head = old
                logger.info("task %s: reusing the head of the model it continues from", name)
            else:
                differs = {k: (before.get(k), wanted.get(k)) for k in before.keys() | wanted.keys() if before.get(k) != wanted.get(k)}
                logger.warning("task %s: the previous head differs from the recipe's (%s); training a new head (give the task the "
                               "previous head's labels and options to keep it)", name, differs)
                metrics.pop(name, None)  # the old head's scores do not describe the new one
        heads[name] = head if head is not None else spec.build_head(encoder.hidden_size)
        report = FeatureReport()
        options = {"flatten": t.flatten} if "flatten" in kind.feature_options else {}
        feats = build_features(kind, train, spec, tokenizer, normalizer, recipe.max_length, report, **options)
        report.log(f"{name} train")
        data[name] = TaskData(feats, dev, t.weight, len(train), list(labels))
        logger.info("task %s: %d training sequences, %d dev examples, labels %s", name, len(feats), len(dev), labels)
    model = MultiTaskModel(encoder, tokenizer, heads, normalization, max_length, metrics, name=recipe.name)
    return model, data


__all__ = ["Recipe", "TaskRecipe", "TrainSettings", "TaskData", "prepare", "load_examples", "NerExample", "TextExample", "PairExample"]


def _untuned(kind: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """A head's spec without the options its kind tunes on dev (a span head's threshold): what must
    match for a continued model to keep its trained head."""
    return {**spec, "options": {k: v for k, v in spec.get("options", {}).items() if k not in kind.tuned_options}}
