"""What a training run shows besides its loss: the diagnostics behind ``toolkit report``.

Every ``diag_every`` steps :class:`Diagnostics` adds to the step's row of ``train_log.jsonl``:
``grad_layers`` (gradient L2 norm per encoder layer, ``emb``, ``L1``..``Ln``, ``top`` for weights
above the layers, and per head ``head:TASK``; measured after backward and before clipping),
``lr_groups`` (learning rate per parameter group, named by the layers it holds) and
``label_entropy`` (entropy in bits of the gold labels of the step's batch, per task: a batch of one
label has 0). The existing keys (``loss`` per task, ``lr``, ``grad_norm``) stay. At each evaluation,
the evaluation record gains ``diagnostics`` (per task: per-class P/R/F1 and
:func:`toolkit.kinds.metrics.calibration` of the dev confidences) and ``confidence_gap`` (the mean over
tasks of mean-confidence-correct minus mean-confidence-wrong), which the ``trend`` early-stopping
rule (:func:`should_stop`) reads. With the ``tensorboard`` package installed the same numbers go to
TensorBoard event files under ``RUN/tensorboard`` (``tensorboard --logdir RUN/tensorboard``).

Nothing here draws random numbers or writes to a parameter or gradient: a run with diagnostics
trains bit for bit like one without.

Example:
    >>> should_stop("trend", [{"mean": 0.8, "confidence_gap": 0.3}, {"mean": 0.7, "confidence_gap": 0.2}], patience=1)
    True
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

EarlyStopping = Literal["patience", "trend"]


def layer_name(name: str, n_layers: int) -> str:
    """The group a parameter's gradient norm is logged under: ``emb``, ``L1``..``Ln``, ``top``, ``head:TASK``.

    >>> layer_name("encoder.model.encoder.layer.0.attention.self.query.weight", 2), layer_name("heads.ner.proj.weight", 2)
    ('L1', 'head:ner')
    """
    from ..model.encoder import layer_depth

    if name.startswith("heads."):
        return "head:" + name.split(".")[1]
    depth = layer_depth(name, n_layers)
    return "emb" if depth == 0 else "top" if depth > n_layers else f"L{depth}"


def grad_norms(named: list[tuple[str, torch.nn.Parameter]]) -> dict[str, float]:
    """Gradient L2 norm per group of ``(group, parameter)`` pairs; groups without a gradient are left out."""
    import torch

    norms: dict[str, list[torch.Tensor]] = {}
    for group, p in named:
        if p.grad is not None:
            norms.setdefault(group, []).append(torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float32))
    return {g: round(float(torch.linalg.vector_norm(torch.stack(s))), 6) for g, s in norms.items()}


def label_entropy(targets: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Entropy in bits of the label ids in ``targets`` (only where ``mask`` is set; negative ids ignored).

    >>> import torch
    >>> label_entropy(torch.tensor([0, 1, 0, 1])), label_entropy(torch.tensor([2, 2]))
    (1.0, 0.0)
    """
    import torch

    values = targets[mask.bool()] if mask is not None and targets.dim() == mask.dim() else targets.reshape(-1)
    _, found = torch.unique(values[values >= 0], return_counts=True)  # no Python loop: span targets are [B, C, L, L]
    counts = found.tolist()
    n = sum(counts)
    return round(-sum(c / n * math.log2(c / n) for c in counts) + 0.0, 4) if n else 0.0


def group_names(optimizer: torch.optim.Optimizer, named: dict[int, str]) -> list[str]:
    """A readable name per optimizer group: the layer groups its parameters belong to, e.g. ``L2+top``."""
    order = ["emb"] + [f"L{i}" for i in range(1, 100)] + ["top"]
    names = []
    for g in optimizer.param_groups:
        members = sorted({named[id(p)] for p in g["params"]}, key=lambda x: (x.startswith("head:"), order.index(x) if x in order else 0, x))
        heads = [m for m in members if m.startswith("head:")]
        names.append("+".join([m for m in members if not m.startswith("head:")] + (["heads"] if heads else [])))
    return names


def should_stop(rule: EarlyStopping, history: list[dict[str, Any]], patience: int | None) -> bool:
    """Whether to stop after the last of the evaluation records ``history`` (each with ``mean``,
    optionally ``confidence_gap``).

    ``patience``: the mean dev score has not improved (strictly) for ``patience`` evaluations, i.e.
    none of the last ``patience`` records beats the best one before them.
    ``trend``: that, AND the confidence gap has shrunk over those evaluations: the last record's gap
    is smaller than the gap of the record ``patience`` evaluations earlier. When either gap is
    unknown (no correct or no wrong dev predictions) the trend rule acts as the patience rule.
    ``patience`` None or 0 never stops.

    >>> h = [{"mean": 0.8, "confidence_gap": 0.3}, {"mean": 0.7, "confidence_gap": 0.35}]
    >>> should_stop("patience", h, 1), should_stop("trend", h, 1)
    (True, False)
    """
    if rule not in ("patience", "trend"):
        raise ConfigError(f"early_stopping: {rule!r} is not a rule; use 'patience' or 'trend'")
    if not patience or len(history) <= patience:
        return False
    means = [h["mean"] for h in history]
    if max(means[-patience:]) > max(means[:-patience]):
        return False
    if rule == "patience":
        return True
    before, now = history[-patience - 1].get("confidence_gap"), history[-1].get("confidence_gap")
    return before is None or now is None or now < before


def eval_diagnostics(scores: dict[str, dict]) -> tuple[dict[str, dict], float | None]:
    """Pop the ``confidence`` part out of each task's evaluation result: ``({task: {per_class,
    calibration}}, mean gap over tasks or None)``; the scores are left as training always saved them."""
    diag = {t: s.pop("confidence") for t, s in scores.items() if "confidence" in s}
    gaps = [d["calibration"]["gap"] for d in diag.values() if d["calibration"]["gap"] is not None]
    return diag, (round(sum(gaps) / len(gaps), 4) if gaps else None)


class Diagnostics:
    """Per-step and per-evaluation diagnostics of one run (see the module docstring).

    ``every``: log the step diagnostics every this many steps (0: never). ``tensorboard``: ``True``
    writes event files (needs the ``tensorboard`` package), ``"auto"`` when it is installed, ``False`` never.
    """

    def __init__(self, model, optimizer: torch.optim.Optimizer, every: int, out: Path, tensorboard: bool | str = "auto", start_step: int = 0) -> None:
        n_layers = model.encoder.num_layers
        self.every = every
        self.named = [(layer_name(n, n_layers), p) for n, p in model.named_parameters()]
        self.groups = group_names(optimizer, {id(p): g for g, p in self.named})
        self.entropy: dict[str, float] = {}
        self.writer = _writer(out / "tensorboard", tensorboard, start_step)

    def due(self, step: int) -> bool:
        """Whether step ``step`` (0-based, before the update) is logged with diagnostics."""
        return bool(self.every) and (step + 1) % self.every == 0

    def batch(self, task: str, batch: dict[str, torch.Tensor], targets: torch.Tensor) -> None:
        """Note the label entropy of a batch of ``task`` (call only on due steps)."""
        self.entropy[task] = label_entropy(targets, batch.get("attention_mask"))

    def step(self, row: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Add the diagnostics to a due step's log ``row`` (gradients still unclipped); returns it."""
        lrs: dict[str, float] = {}
        for name, g in zip(self.groups, optimizer.param_groups):
            lrs.setdefault(name, g["lr"])
        row.update({"grad_layers": grad_norms(self.named), "lr_groups": lrs, "label_entropy": dict(self.entropy)})
        self.entropy.clear()
        return row

    def log_step(self, row: dict[str, Any]) -> None:
        """Send a step's log row to TensorBoard."""
        if self.writer is None:
            return
        step = row["step"]
        self.writer.add_scalar("train/grad_norm", row["grad_norm"], step)
        for prefix, values in (("loss", row["loss"]), ("grad_norm", row.get("grad_layers", {})), ("lr", row.get("lr_groups", {})),
                               ("label_entropy", row.get("label_entropy", {}))):
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def log_eval(self, record: dict[str, Any]) -> None:
        """Send an evaluation record to TensorBoard: main scores, gap, ECE, confidence histograms."""
        if self.writer is None:
            return
        import numpy as np

        step = record["step"]
        self.writer.add_scalar("dev/mean", record["mean"], step)
        for task, s in record["scores"].items():
            self.writer.add_scalar(f"dev/{task}", s["main"], step)
        for task, d in record.get("diagnostics", {}).items():
            cal = d["calibration"]
            for key in ("gap", "ece"):
                if cal[key] is not None:
                    self.writer.add_scalar(f"confidence/{task}_{key}", cal[key], step)
            if cal["n"]:
                bins = len(cal["hist"])
                limits = [(b + 1) / bins for b in range(bins)]
                centres = np.repeat([(b + 0.5) / bins for b in range(bins)], cal["hist"])
                self.writer.add_histogram_raw(f"confidence/{task}", min=0.0, max=1.0, num=cal["n"], sum=float(centres.sum()),
                                              sum_squares=float((centres**2).sum()), bucket_limits=limits, bucket_counts=cal["hist"], global_step=step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _writer(folder: Path, tensorboard: bool | str, start_step: int):
    """A TensorBoard ``SummaryWriter`` or None; ``purge_step`` drops events a resumed run redoes."""
    if tensorboard is False or tensorboard == "false":
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        if tensorboard == "auto":
            return None
        raise ImportError('tensorboard: true needs the tensorboard package: pip install -e ".[tensorboard]" (or set tensorboard: auto)') from err
    return SummaryWriter(str(folder), purge_step=start_step or None)


def add_train_arguments(p) -> None:
    """The ``toolkit train`` flags of the diagnostics and early stopping (recipes and ner|cls|pair).

    Example:
        >>> import argparse; p = argparse.ArgumentParser(); add_train_arguments(p)
        >>> train_settings(p.parse_args(["--early-stopping", "trend", "--patience", "4"]))
        {'early_stopping': 'trend', 'patience': 4}
    """
    from ..cli_io import positive_int

    p.add_argument("--early-stopping", choices=["patience", "trend"], help="patience (default): stop when the mean dev score has not improved for "
                   "--patience evaluations; trend: only when, besides, the dev confidence gap (correct minus wrong) has shrunk over them")
    p.add_argument("--patience", type=positive_int, help="evaluations without a better dev score before early stopping (default 3)")
    p.add_argument("--diag-every", type=int, help="log per-layer gradient norms, LR per group and batch label entropy every N steps (default 10, 0: never)")
    p.add_argument("--tensorboard", choices=["auto", "true", "false"], help="TensorBoard event files in the run folder's tensorboard/ (default auto: when tensorboard is installed)")


def train_settings(args) -> dict[str, Any]:
    """The :class:`~toolkit.train.recipe.TrainSettings` values given by :func:`add_train_arguments`' flags."""
    given = {"early_stopping": args.early_stopping, "patience": args.patience, "diag_every": args.diag_every,
             "tensorboard": {"true": True, "false": False}.get(args.tensorboard, args.tensorboard),
             "dtype": getattr(args, "dtype", None), "max_tokens": getattr(args, "max_tokens", None)}  # the last two: flags of toolkit.cli
    settings = {k: v for k, v in given.items() if v is not None}
    if "dtype" in settings:
        settings["bf16"] = None  # --dtype replaces a recipe's deprecated bf16
    return settings
