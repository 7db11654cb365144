"""Joint multi-task fine-tuning: one shared encoder, batches sampled per task by size^T.

``toolkit train RECIPE.yaml`` reads a :class:`~toolkit.recipe.Recipe` and runs :func:`train`.
Every technique is switchable in the recipe: AdamW; layer-wise learning-rate decay and a larger
learning rate for the heads; linear warm-up and decay; gradient clipping; gradient accumulation;
early stopping on the dev metric; EMA weights for evaluation and saving; freezing then gradual
unfreezing of the encoder; length-bucketed dynamic padding; bf16 autocast; fixed seeds; checkpoint
and resume (safetensors + JSON, no pickle); a tqdm bar and a JSONL log.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .evaluation import evaluate_task
from .features import Feature, collate
from .model import MultiTaskModel
from .recipe import Recipe, TaskData, _ref, prepare
from .training_state import EMA, load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)


def length_batches(features: list[Feature], batch_size: int, rng: np.random.Generator, bucket: int = 50) -> list[list[int]]:
    """Shuffled batches of similar lengths: shuffle, sort inside chunks of ``bucket`` batches, shuffle batches."""
    order = rng.permutation(len(features))
    batches = []
    chunk = batch_size * bucket
    for i in range(0, len(order), chunk):
        part = sorted(order[i : i + chunk], key=lambda j: len(features[j].ids))
        batches += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


class TaskStream:
    """Endless length-bucketed batches of one task's training features."""

    def __init__(self, data: TaskData, batch_size: int, rng: np.random.Generator) -> None:
        self.data, self.batch_size, self.rng = data, batch_size, rng
        self.queue: list[list[int]] = []
        self.epoch = 0

    def state(self) -> dict[str, Any]:
        """JSON-able position in the data (for exact resume)."""
        return {"queue": [[int(i) for i in b] for b in self.queue], "epoch": self.epoch}

    def restore(self, state: dict[str, Any]) -> None:
        self.queue, self.epoch = [list(b) for b in state["queue"]], int(state["epoch"])

    def next(self) -> list[Feature]:
        if not self.queue:
            self.queue = length_batches(self.data.train, self.batch_size, self.rng)
            self.epoch += 1
        return [self.data.train[i] for i in self.queue.pop()]


def layer_depth(name: str, n_layers: int) -> int:
    """0 for embeddings, ``i + 1`` for transformer layer ``i``, ``n_layers + 1`` above the layers."""
    m = re.search(r"\.layers?\.(\d+)\.", name)
    if m:
        return int(m.group(1)) + 1
    return 0 if "embeddings" in name else n_layers + 1


def param_groups(model: MultiTaskModel, lr: float, head_lr: float, layer_decay: float, weight_decay: float) -> list[dict]:
    """AdamW groups: encoder layer ``i`` of ``L`` gets ``lr * layer_decay**(L - i)``, embeddings
    ``lr * layer_decay**(L + 1)``, heads ``head_lr``; no weight decay on biases and LayerNorms."""
    n_layers = model.encoder.num_layers
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if name.startswith("heads."):
            rate = head_lr
        else:
            depth = layer_depth(name, n_layers)
            rate = lr * layer_decay ** max(n_layers + 1 - depth, 0)
        decay = 0.0 if p.ndim < 2 else weight_decay
        groups.setdefault((rate, decay), []).append(p)
    return [{"params": ps, "lr": rate, "initial_lr": rate, "weight_decay": wd} for (rate, wd), ps in groups.items()]


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then linear decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    return max(0.0, (total - step) / max(total - warmup, 1))


def set_encoder_trainable(model: MultiTaskModel, step: int, freeze_steps: int, unfreeze_steps: int) -> None:
    """Frozen encoder for ``freeze_steps``, then layers unfrozen top-down over ``unfreeze_steps``."""
    if freeze_steps <= 0 and unfreeze_steps <= 0:
        return
    n = model.encoder.num_layers
    if step < freeze_steps:
        open_from = n + 1  # nothing open
    elif unfreeze_steps > 0:
        done = min(1.0, (step - freeze_steps + 1) / unfreeze_steps)
        open_from = n - math.ceil(done * (n + 1)) + 1
    else:
        open_from = 0
    for name, p in model.encoder.named_parameters():
        p.requires_grad_(layer_depth(name, n) >= open_from)


def train(recipe: Recipe, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Fine-tune the recipe's tasks jointly; saves the best model (by mean dev score) to
    ``recipe.model_out`` (default ``recipe.out / "model"``).

    Returns the summary written to ``out/summary.json``.
    """
    cfg = recipe.train
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = Path(recipe.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(recipe.model_out) if recipe.model_out else out / "model"
    model, data = prepare(recipe)
    model.to(cfg.device)
    if cfg.freeze_encoder:
        model.encoder.requires_grad_(False)
        logger.info("encoder frozen: only the heads train")
    streams = {t: TaskStream(d, cfg.batch_size, rng) for t, d in data.items()}
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.head_lr, cfg.layer_decay, cfg.weight_decay), betas=(0.9, 0.999), eps=1e-8)
    ema = EMA(model, cfg.ema) if cfg.ema else None
    state = {"step": 0, "best": -1.0, "bad_evals": 0, "history": []}
    log_path = out / "train_log.jsonl"
    if resume and (out / "checkpoint").is_dir():
        state = load_checkpoint(out / "checkpoint", model, optimizer, ema, rng)
        for task, st in state.pop("streams", {}).items():
            streams[task].restore(st)
        _trim_log(log_path, state["step"])
        logger.info("resumed from step %d", state["step"])
    elif log_path.exists():
        log_path.unlink()  # a fresh run starts a fresh log
    with open(log_path, "a", encoding="utf-8") as log:
        return _loop(recipe, model, data, streams, optimizer, ema, rng, state, log, model_dir, progress)


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they are redone)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("step", row.get("eval", {}).get("step", 0)) <= step:
            keep.append(line)
    path.write_text("".join(x + "\n" for x in keep), encoding="utf-8")


def _loop(recipe: Recipe, model: MultiTaskModel, data: dict[str, TaskData], streams: dict[str, TaskStream], optimizer, ema, rng, state: dict, log, model_dir: Path, progress: bool) -> dict[str, Any]:
    cfg = recipe.train
    out = Path(recipe.out)
    tasks = list(data)
    sizes = np.array([len(d.train) for d in data.values()], dtype=float)
    probs = sizes**cfg.temperature / (sizes**cfg.temperature).sum()
    steps_per_epoch = int(sum(math.ceil(len(d.train) / cfg.batch_size) for d in data.values()) / cfg.grad_accum)
    total = cfg.max_steps or max(1, int(cfg.epochs * steps_per_epoch))
    warmup = int(cfg.warmup * total) if cfg.warmup < 1 else int(cfg.warmup)
    logger.info("training %s: %d steps (%.2f epochs), task probabilities %s", recipe.name, total, total / max(steps_per_epoch, 1), dict(zip(tasks, probs.round(3).tolist())))
    start = time.monotonic() - state.get("elapsed", 0.0)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=state["step"], desc=f"train {recipe.name}", unit="step")
    stop_reason = "steps"
    model.train()
    while state["step"] < total:
        step = state["step"]
        set_encoder_trainable(model, step, cfg.freeze_encoder_steps, cfg.unfreeze_steps)
        factor = lr_factor(step, total, warmup)
        for g in optimizer.param_groups:
            g["lr"] = g["initial_lr"] * factor
        losses = {}
        for _ in range(cfg.grad_accum):
            task = tasks[int(rng.choice(len(tasks), p=probs))]
            batch, targets = collate(streams[task].next(), model.tokenizer.pad_id)
            batch, targets = {k: v.to(cfg.device) for k, v in batch.items()}, targets.to(cfg.device)
            with torch.autocast(torch.device(cfg.device).type, dtype=torch.bfloat16, enabled=cfg.bf16):
                output = model(batch, [task])[task]
            loss = model.heads[task].loss(output.float(), batch, targets) * data[task].weight
            (loss / cfg.grad_accum).backward()
            losses[task] = round(loss.item(), 4)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip if cfg.clip else float("inf")))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model)
        state["step"] += 1
        elapsed = time.monotonic() - start
        log.write(json.dumps({"step": state["step"], "loss": losses, "lr": optimizer.param_groups[0]["lr"], "grad_norm": round(grad_norm, 4), "elapsed": round(elapsed, 1)}) + "\n")
        if state["step"] % 20 == 0:
            log.flush()
        if bar is not None:
            bar.update(1)
            bar.set_postfix({t[:8]: v for t, v in losses.items()})
        out_of_time = cfg.max_minutes is not None and elapsed > cfg.max_minutes * 60
        evaluating = state["step"] % cfg.eval_every == 0 or state["step"] == total or out_of_time
        if not evaluating and state["step"] % cfg.checkpoint_every == 0:
            state["elapsed"] = elapsed
            save_checkpoint(out / "checkpoint", model, optimizer, ema, rng, {**state, "streams": {t: st.state() for t, st in streams.items()}})
        if evaluating:
            scores = _evaluate(model, data, ema, cfg.eval_batch_size, cfg.device)
            # without dev data the latest model is the best one
            mean = float(np.mean([s["main"] for s in scores.values()])) if scores else float(state["step"])
            record = {"step": state["step"], "elapsed": round(elapsed, 1), "scores": scores, "mean": round(mean, 4)}
            state["history"].append(record)
            log.write(json.dumps({"eval": record}, ensure_ascii=False) + "\n")
            log.flush()
            logger.info("step %d: dev %s", state["step"], {t: s["main"] for t, s in scores.items()})
            if mean > state["best"]:
                state["best"], state["bad_evals"] = mean, 0
                _save_best(model, ema, scores, model_dir, recipe)
            else:
                state["bad_evals"] += 1
            state["elapsed"] = elapsed
            save_checkpoint(out / "checkpoint", model, optimizer, ema, rng, {**state, "streams": {t: st.state() for t, st in streams.items()}})
            model.train()
            if cfg.patience and state["bad_evals"] >= cfg.patience:
                stop_reason = "early stopping"
                break
        if out_of_time:
            stop_reason = "time budget"
            break
    if bar is not None:
        bar.close()
    summary = {"name": recipe.name, "steps": state["step"], "stopped_by": stop_reason, "best_mean_dev": state["best"], "minutes": round((time.monotonic() - start) / 60, 1), "history": state["history"], "model": str(model_dir)}
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    return summary


def _evaluate(model: MultiTaskModel, data: dict[str, TaskData], ema: EMA | None, batch_size: int, device: str = "cpu") -> dict[str, dict]:
    model.eval()
    with ema.applied(model) if ema is not None else nullcontext():
        return {t: evaluate_task(model, t, d.dev, batch_size=batch_size, device=device) for t, d in data.items() if d.dev}


def _save_best(model: MultiTaskModel, ema: EMA | None, scores: dict, path: Path, recipe: Recipe) -> None:
    model.metrics = {**model.metrics, **{t: {_dev_name(recipe.tasks[t]): s} for t, s in scores.items()}}
    with ema.applied(model) if ema is not None else nullcontext():
        model.save(path, card=recipe.card(scores))


def _dev_name(task) -> str:
    return f"holdout:{task.holdout} of {_ref(task.train)}" if task.holdout else _ref(task.dev)
