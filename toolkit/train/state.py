"""Training state that must survive a restart: EMA weights and checkpoints (safetensors + JSON).

No pickle: tensors go to safetensors files, everything else to JSON.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import ConfigError

logger = logging.getLogger(__name__)


class EMA:
    """Exponential moving average of the trainable weights (``decay`` e.g. 0.999)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items() if v.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Average in the current weights; the decay warms up as ``(1 + t) / (10 + t)`` so that early
        averages are not dominated by the initial (random-head) weights."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(decay).add_(v.detach().float(), alpha=1 - decay)

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """Temporarily swap the EMA weights into ``model``."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        model.load_state_dict(self.shadow, strict=False)
        try:
            yield
        finally:
            model.load_state_dict(backup, strict=False)


def save_checkpoint(path: Path, model, optimizer: torch.optim.Optimizer, ema: EMA | None, rng: np.random.Generator, state: dict[str, Any]) -> None:
    """Model, optimizer moments, EMA, RNG states and trainer state: written to a sibling folder,
    then swapped in, so a crash never leaves a checkpoint with mismatched files (see
    :func:`recover_checkpoint` for a kill during the swap)."""
    final = path
    path = final.with_name(final.name + ".tmp")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in opt["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    tensors["__torch_rng__"] = torch.get_rng_state()
    save_file(tensors, str(path / "optimizer.safetensors"))
    if ema is not None:
        save_file({k: v.contiguous() for k, v in ema.shadow.items()}, str(path / "ema.safetensors"))
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in opt["param_groups"]]
    meta = {"trainer": state, "param_groups": groups, "scalars": scalars, "numpy_rng": rng.bit_generator.state, "ema_updates": ema.updates if ema else 0}
    (path / "state.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    path.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def recover_checkpoint(path: Path) -> Path | None:
    """``path`` if it holds a checkpoint, else ``None``. A kill in the middle of
    :func:`save_checkpoint`'s swap leaves the new checkpoint as ``.tmp`` (complete once its
    ``state.json``, written last, is there) or the previous one as ``.old``: it is renamed back."""
    if (path / "state.json").is_file():
        return path
    for sibling in (path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")):
        if (sibling / "state.json").is_file():
            logger.warning("recovering the checkpoint %s (a run was killed while saving it)", sibling)
            if path.exists():
                shutil.rmtree(path)
            sibling.rename(path)
            return path
    return None


def trainer_state(path: Path) -> dict[str, Any]:
    """The trainer state a checkpoint recorded (its ``state.json``), without loading any tensor:
    what a resumed run must decide before it builds what :func:`load_checkpoint` fills."""
    return json.loads((Path(path) / "state.json").read_text(encoding="utf-8"))["trainer"]


def check_time_left(max_minutes: float | None, trainer: dict[str, Any]) -> None:
    """Refuse, before any data is read, to resume a run whose whole time budget is spent.

    ``max_minutes`` counts a run across resumes (``trainer["elapsed"]``, in seconds, is what the
    checkpoint recorded), so where the run stops never changes what it learns. Used by ``toolkit
    train`` and ``toolkit pretrain`` alike.

    >>> check_time_left(60, {"elapsed": 600.0})       # 10 of 60 minutes used: fine
    >>> check_time_left(None, {"elapsed": 1e9})       # no budget: fine
    """
    used = trainer.get("elapsed", 0.0) / 60
    if max_minutes is not None and used >= max_minutes:
        raise ConfigError(
            f"this run has already trained {used:.1f} minutes and max_minutes is {max_minutes:g}, which counts the whole "
            f"run across resumes: resume with a larger budget, e.g. --max-minutes {math.ceil(used) + 60} for about another hour")


def load_checkpoint(path: Path, model, optimizer: torch.optim.Optimizer, ema: EMA | None, rng: np.random.Generator) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote; returns the trainer state."""
    meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    tensors = load_file(str(path / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("__torch_rng__"))
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, _, name = key.partition(".")
        state.setdefault(int(idx), {})[name] = value
    for key, value in meta["scalars"].items():
        idx, _, name = key.partition(".")
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if ema is not None and (path / "ema.safetensors").is_file():
        device = str(next(model.parameters()).device)
        ema.shadow = load_file(str(path / "ema.safetensors"), device=device)
        ema.updates = int(meta.get("ema_updates", 0))
    rng.bit_generator.state = meta["numpy_rng"]
    return meta["trainer"]
