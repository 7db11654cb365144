"""Joint multi-task fine-tuning: one shared encoder, batches sampled per task by size^T.

``toolkit train RECIPE.yaml`` reads a :class:`~toolkit.train.recipe.Recipe` and runs :func:`train`.
Every technique is switchable in the recipe: AdamW; layer-wise learning-rate decay and a larger
learning rate for the heads; linear warm-up and decay; gradient clipping; gradient accumulation;
early stopping on the dev metric; EMA weights for evaluation and saving; freezing then gradual
unfreezing of the encoder; length-bucketed dynamic padding with an optional token budget per batch; fp32 or bf16 autocast
(``dtype: auto`` measures which is faster here, :mod:`toolkit.train.precision`); fixed seeds; checkpoint
and resume (safetensors + JSON, no pickle); a tqdm bar and a JSONL log with per-layer gradient
norms, LR per group, batch label entropy and dev confidence/calibration (:mod:`toolkit.train.diagnostics`;
``toolkit report RUN`` draws them); early stopping on patience or on the trend
(:func:`toolkit.train.diagnostics.should_stop`); an ``on_eval`` callback that may stop the run; data-parallel
runs under ``torchrun`` (:mod:`toolkit.train.distributed`: ``batch_size`` is the global batch, rank 0 writes);
distillation from a trained model named by the recipe's ``teacher`` (:mod:`toolkit.train.teacher`).
"""
from __future__ import annotations

import copy
import json
from dataclasses import replace
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import distributed as dist
from .diagnostics import Diagnostics, eval_diagnostics, should_stop
from ..model.encoder import layer_depth
from ..errors import InputError
from .. import kinds
from ..model.multitask import MultiTaskModel
from .precision import autocast, choose_dtype
from .recipe import Recipe, TaskData, prepare
from .batching import TaskStream
from .selection import evaluate_dev as _evaluate, save_best as _save_best
from .optim import adamw, recorded
from .state import EMA, check_time_left, load_checkpoint, recover_checkpoint, save_checkpoint, trainer_state
from .teacher import Distillation, Teacher

logger = logging.getLogger(__name__)

# What a run folder (``recipe.out``) holds besides the model.
CHECKPOINT, LOG, SUMMARY = "checkpoint", "train_log.jsonl", "summary.json"


class StopTraining(Exception):
    """Raised by an ``on_eval`` callback of :func:`train` to end the run cleanly after that evaluation."""


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


def train(recipe: Recipe, resume: bool = False, progress: bool = True, overwrite: bool = False,
          on_eval: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Fine-tune the recipe's tasks jointly; saves the best model (by mean dev score) to
    ``recipe.model_out`` (default ``recipe.out / "model"``).

    ``resume=True`` continues from ``out/checkpoint`` (the step, the best dev score so far, data
    order, RNG, optimizer and EMA state), keeping the log up to that step; without a checkpoint it
    says so and starts from step 0. A fresh run refuses an ``out`` (or model folder) that already
    holds a run, unless ``overwrite=True``. ``recipe.train.threads`` sets torch's CPU threads for
    the run. ``on_eval`` is called after each evaluation (once its best model and checkpoint are
    saved) with the evaluation record ``{"step", "elapsed", "scores", "mean", ...}``; raising
    :class:`StopTraining` from it ends the run cleanly (``stopped_by: "callback"``), any other
    exception propagates. Returns the summary written to ``out/summary.json``.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the run is data-parallel (:mod:`toolkit.train.distributed`):
    gloo on CPU, NCCL with ``device: cuda`` (one GPU per process); ``batch_size`` stays the global
    batch, each process takes its share of it and uses ``cores // processes`` threads unless
    ``threads`` is set; rank 0 evaluates and writes, and every rank stops at the same step.

    Example:
        >>> summary = train(Recipe.from_yaml("recipes/ner-medical-small.yaml"))   # doctest: +SKIP
    """
    threads = torch.get_num_threads()
    if recipe.train.threads or dist.launched():
        torch.set_num_threads(recipe.train.threads or dist.default_threads())
    device = dist.device_for(recipe.train.device)
    if device != recipe.train.device:
        recipe = copy.copy(recipe)
        recipe.train = replace(recipe.train, device=device)
    created = dist.init(device)
    logger.info("training on %s with %d CPU threads", device, torch.get_num_threads())
    try:
        return _train(recipe, resume, progress, overwrite, on_eval)
    finally:
        torch.set_num_threads(threads)
        if created:
            dist.teardown()


def _train(recipe: Recipe, resume: bool, progress: bool, overwrite: bool, on_eval: Callable[[dict], None] | None) -> dict[str, Any]:
    cfg = recipe.train
    out = Path(recipe.out)
    model_dir = Path(recipe.model_out) if recipe.model_out else out / "model"
    log_path = out / LOG
    checkpoint = dist.on_main(lambda: _find_checkpoint(out, model_dir, resume, overwrite))  # rank 0 alone repairs or cleans the folder
    resumed = trainer_state(checkpoint) if checkpoint is not None else None
    if resumed is not None:
        check_time_left(cfg.max_minutes, resumed)
    teacher = Teacher.load(recipe.teacher, recipe.tasks) if recipe.teacher else None  # before seeding: building it draws random numbers
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    model, data = prepare(recipe, teacher.heads if teacher else None)
    model.to(cfg.device)
    if cfg.freeze_encoder:
        model.encoder.requires_grad_(False)
        logger.info("encoder frozen: only the heads train")
    streams = {t: TaskStream(d, cfg.batch_size, rng, cfg.max_tokens, cfg.length_pool) for t, d in data.items()}
    distill = Distillation.setup(recipe, model, data, teacher, rng)
    streams.update(distill.streams)  # unlabeled text: checkpointed with the others
    kernel = recorded(resumed)  # a resumed run keeps its kernel (bit-identical)
    optimizer, optimizer_kind = adamw(param_groups(model, cfg.lr, cfg.head_lr, cfg.layer_decay, cfg.weight_decay), kernel,
                                      betas=(0.9, 0.999), eps=1e-8)
    ema = EMA(model, cfg.ema) if cfg.ema else None
    state = {"step": 0, "best": -1.0, "bad_evals": 0, "history": []}
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, ema, rng)
        for task, st in state.pop("streams", {}).items():
            streams[task].restore(st)
        state["resumed_from"] = state["step"]
        logger.info("resumed from %s at step %d (best mean dev so far %.4f)", checkpoint, state["step"], state["best"])
    state["dtype"], state["dtype_reason"] = _dtype(cfg, model, state.get("dtype"), resumed=checkpoint is not None)
    state["optimizer"] = optimizer_kind
    if dist.is_main():
        _trim_log(log_path, state["step"])  # resume: steps after the checkpoint are redone; from 0: a clean log
    with open(log_path if dist.is_main() else os.devnull, "a", encoding="utf-8") as log:
        return _loop(recipe, model, data, streams, optimizer, ema, rng, state, log, model_dir, progress, on_eval, distill)


def _dtype(cfg, model: MultiTaskModel, recorded: str | None, resumed: bool) -> tuple[str, str]:
    """The run's dtype and why: a resumed run keeps the one its checkpoint recorded (``auto`` is not
    measured again, so the resumed run trains bit for bit like an uninterrupted one); a setting of
    fp32 or bf16 wins over it, with a warning. Rank 0 chooses for every rank."""
    setting = cfg.precision()
    if resumed and setting == "auto":
        dtype = recorded or "fp32"  # checkpoints from before the option ran in fp32 (or were given bf16, then explicit)
        reason = "recorded in the checkpoint" if recorded else "checkpoint without a recorded dtype: fp32, as such runs trained"
        logger.info("training dtype %s: %s", dtype, reason)
        return dtype, reason
    dtype, reason = dist.on_main(lambda: choose_dtype(setting, cfg.device, model.encoder.hidden_size))
    if resumed and recorded and dtype != recorded:
        logger.warning("--resume with dtype %s, but the checkpoint trained in %s: the run goes on in %s and is no longer bit-identical to an uninterrupted one", dtype, recorded, dtype)
    return dtype, reason


def _find_checkpoint(out: Path, model_dir: Path, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint to resume from (recovered after a kill), or None after clearing the way for a fresh run."""
    checkpoint = recover_checkpoint(out / CHECKPOINT) if resume else None
    if resume and checkpoint is None:
        logger.warning("--resume: no checkpoint in %s (the run stopped before its first one, or never started); starting from step 0", out)
    if checkpoint is None:
        _start_fresh(out, model_dir, overwrite, resuming=resume)
    return checkpoint


def _start_fresh(out: Path, model_dir: Path, overwrite: bool, resuming: bool) -> None:
    """Refuse to start over an earlier run (its log, checkpoint or model) unless ``overwrite``.

    ``resuming`` (``--resume`` found no checkpoint): only an earlier model is protected; the log of
    a run killed before its first checkpoint is simply started again.
    """
    from ..registry import MANIFEST

    model = model_dir / MANIFEST
    old = [p for p in ((model,) if resuming else (out / CHECKPOINT, out / LOG, out / SUMMARY, model)) if p.exists()]
    if old and not overwrite:
        if resuming:
            raise InputError(f"there is no checkpoint in {out} to resume, and {model_dir} holds a model from an earlier run: "
                             "pass --overwrite (overwrite=True) to train from scratch and replace it, or choose another --out")
        raise InputError(f"{old[0]} is from an earlier run: pass --resume (resume=True) to continue it, --overwrite "
                         "(overwrite=True) to start over and replace it, or choose another --out")
    if old:
        logger.warning("--overwrite: starting over; the earlier run's checkpoint and log in %s are removed, its model is replaced at the first evaluation", out)
    shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    for path in (out / LOG, out / SUMMARY):
        path.unlink(missing_ok=True)


def _trim_log(path: Path, step: int) -> None:
    """Keep the log lines up to ``step`` (the checkpoint's): later ones are redone. A line torn by a
    kill (not valid JSON) is dropped with a warning instead of failing the resume."""
    if not path.exists():
        return
    keep = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("%s:%d: dropped a torn log line (the run was killed while writing it): %r", path, n, line[:80])
            continue
        if row.get("step", row.get("eval", {}).get("step", 0)) <= step:
            keep.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(x + "\n" for x in keep), encoding="utf-8")
    os.replace(tmp, path)


def _checkpoint(out: Path, model: MultiTaskModel, optimizer, ema, rng, state: dict, streams: dict[str, TaskStream], log, elapsed: float) -> None:
    """Flush and fsync the log, then checkpoint: every logged step up to the checkpoint survives a kill."""
    log.flush()
    os.fsync(log.fileno())
    state["elapsed"] = elapsed
    save_checkpoint(out / CHECKPOINT, model, optimizer, ema, rng, {**state, "streams": {t: st.state() for t, st in streams.items()}})


def folder_mb(path: str | Path) -> float:
    """Size of the files under ``path`` in MB (a run folder is mostly its checkpoint); 0 on ranks other than 0 of a torchrun run."""
    return round(sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20, 1) if dist.is_main() else 0.0


def drop_checkpoint(run: str | Path, model: str | Path) -> bool:
    """Delete ``run``'s checkpoint once ``model`` is a saved model folder (the run can then not be
    resumed); returns whether it did."""
    from ..registry import MANIFEST

    if not dist.is_main():  # rank 0 deletes it
        return True
    if not (Path(model) / MANIFEST).is_file():
        logger.warning("kept %s: no saved model in %s", Path(run) / CHECKPOINT, model)
        return False
    shutil.rmtree(Path(run) / CHECKPOINT, ignore_errors=True)
    return True


def _loop(recipe: Recipe, model: MultiTaskModel, data: dict[str, TaskData], streams: dict[str, TaskStream], optimizer, ema, rng, state: dict, log, model_dir: Path,
          progress: bool, on_eval: Callable[[dict], None] | None = None, distill: Distillation | None = None) -> dict[str, Any]:
    cfg = recipe.train
    distill = distill or Distillation()
    out = Path(recipe.out)
    tasks = list(data)
    sizes = np.array([len(d.train) for d in data.values()], dtype=float)
    probs = sizes**cfg.temperature / (sizes**cfg.temperature).sum()
    steps_per_epoch = int(sum(distill.per_epoch(t, streams[t].batches_per_epoch()) for t in tasks) / cfg.grad_accum)
    total = cfg.max_steps or max(1, int(cfg.epochs * steps_per_epoch))
    warmup = int(cfg.warmup * total) if cfg.warmup < 1 else int(cfg.warmup)
    logger.info("training %s: %d steps (%.2f epochs) in %s, task probabilities %s", recipe.name, total, total / max(steps_per_epoch, 1), state["dtype"], dict(zip(tasks, probs.round(3).tolist())))
    start = time.monotonic() - state.get("elapsed", 0.0)
    main = dist.is_main()
    bar = None
    if progress and main:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=state["step"], desc=f"train {recipe.name}", unit="step")
    stop_reason = "steps"
    diag = Diagnostics(model, optimizer, cfg.diag_every if main else 0, out, cfg.tensorboard if main else False, state["step"])
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
            source = distill.source(task, rng)  # the task's batches, or its unlabeled text's
            rows = streams[source].next()  # the global batch; this rank trains on its shard
            mine, share = dist.shard(rows)
            kind = kinds.get(model.task_kind(task))
            batch, targets = distill.collate(mine, model.tokenizer.pad_id, kind, source == task)
            batch, targets = {k: v.to(cfg.device) for k, v in batch.items()}, targets.to(cfg.device) if targets is not None else None
            if diag.due(step) and source == task:
                diag.batch(task, *distill.collate(rows, model.tokenizer.pad_id, kind, True))
            with autocast(state["dtype"], cfg.device):  # bf16: the encoder and heads' forward; the loss below is fp32
                output = model(batch, [task])[task]
            loss = distill.loss(model.heads[task], task, output.float(), batch, targets, state["dtype"], cfg.device) * data[task].weight
            (loss * share / cfg.grad_accum).backward()
            losses[source] = round(dist.all_reduce_mean(loss.detach() * share).item(), 4)  # the global batch's loss
        dist.average_gradients(model.parameters())
        extra = diag.step({}, optimizer) if diag.due(step) else {}  # read-only, before clipping
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip if cfg.clip else float("inf")))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model)
        state["step"] += 1
        elapsed = time.monotonic() - start
        row = {"step": state["step"], "loss": losses, "lr": optimizer.param_groups[0]["lr"], "grad_norm": round(grad_norm, 4), "elapsed": round(elapsed, 1), **extra}
        log.write(json.dumps(row) + "\n")
        diag.log_step(row)
        if state["step"] % 20 == 0:
            log.flush()
        if bar is not None:
            bar.update(1)
            bar.set_postfix({t[:8]: v for t, v in losses.items()})
        out_of_time = cfg.max_minutes is not None and dist.any_rank(elapsed > cfg.max_minutes * 60, cfg.device)
        evaluating = state["step"] % cfg.eval_every == 0 or state["step"] == total or out_of_time
        if main and not evaluating and state["step"] % cfg.checkpoint_every == 0:
            _checkpoint(out, model, optimizer, ema, rng, state, streams, log, elapsed)
        if evaluating:
            stop, shared = dist.on_main(lambda: (_evaluate_step(recipe, model, data, optimizer, ema, rng, state, streams, log, model_dir, diag, elapsed, on_eval),
                                                 {k: state[k] for k in ("best", "bad_evals", "history")}))
            state.update(shared)  # every rank stops at rank 0's decision
            if stop:
                stop_reason = stop
                break
        if out_of_time:
            stop_reason = "time budget"
            break
    if bar is not None:
        bar.close()
    diag.close()
    summary = {"name": recipe.name, "steps": state["step"], "stopped_by": stop_reason, "best_mean_dev": state["best"], "minutes": round((time.monotonic() - start) / 60, 1),
               "history": state["history"], "model": str(model_dir), "run": str(out), "resumed_from": state.get("resumed_from"),
               "dtype": state["dtype"], "dtype_reason": state["dtype_reason"], "optimizer": state["optimizer"]}
    if main:
        (out / SUMMARY).write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    return summary


def _evaluate_step(recipe: Recipe, model: MultiTaskModel, data: dict[str, TaskData], optimizer, ema, rng, state: dict, streams: dict[str, TaskStream], log, model_dir: Path,
                   diag: Diagnostics, elapsed: float, on_eval: Callable[[dict], None] | None) -> str | None:
    """Evaluate, log, save the best model, checkpoint, call ``on_eval``; returns why to stop, or None (rank 0 only)."""
    cfg = recipe.train
    scores = _evaluate(model, data, ema, cfg.eval_batch_size, cfg.device)
    # without dev data the latest model is the best one
    mean = float(np.mean([s["main"] for s in scores.values()])) if scores else float(state["step"])
    diagnostics, gap = eval_diagnostics(scores)
    record = {"step": state["step"], "elapsed": round(elapsed, 1), "scores": scores, "mean": round(mean, 4), "confidence_gap": gap, "diagnostics": diagnostics}
    diag.log_eval(record)
    state["history"].append(record)
    log.write(json.dumps({"eval": record}, ensure_ascii=False) + "\n")
    log.flush()
    logger.info("step %d: dev %s", state["step"], {t: s["main"] for t, s in scores.items()})
    if mean > state["best"]:
        state["best"], state["bad_evals"] = mean, 0
        _save_best(model, ema, scores, model_dir, recipe, data)
    else:
        state["bad_evals"] += 1
    _checkpoint(Path(recipe.out), model, optimizer, ema, rng, state, streams, log, elapsed)
    model.train()
    if on_eval is not None:
        try:
            on_eval(record)
        except StopTraining as stop:
            logger.info("step %d: stopped by the on_eval callback (%s)", state["step"], stop)
            return "callback"
    if should_stop(cfg.early_stopping, state["history"], cfg.patience):
        return "early stopping" if cfg.early_stopping == "patience" else "early stopping (trend)"
    return None
