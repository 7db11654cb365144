"""Continued masked-language-model pretraining of a char-level encoder, with whole-word masking.

Texts (files with one text per line, and/or the texts of catalogue training splits, never their
labels) are normalised like the pipeline does, tokenised with the encoder's own tokenizer and
segmented with jieba; token ids and word ids are cached as int32 arrays in ``RUN/data`` and packed
into sequences ``[CLS] ... [SEP]`` of ``max_length`` tokens (texts separated by ``[SEP]``): all of
that is :mod:`toolkit.train.mlm_data`. This module holds the model (an LM head tied to the
embeddings), its checkpointed state and the training run; ``toolkit pretrain`` is
:mod:`toolkit.train.pretrain_cli`.

Everything a step uses is a function of ``(seed, step)``: which sequences (a permutation per epoch),
which words are masked (:func:`mask_batch`), dropout (torch is reseeded per step) and the learning
rate (linear warm-up and decay over ``max_steps``). A checkpoint therefore only needs the weights,
the optimizer moments and the step, and ``--resume`` continues bit-identically (on the CPU).

``--device cuda`` trains on a GPU (bf16 autocast, fp32 loss; the next batch is prepared in a thread);
:mod:`toolkit.train.gpu_job` packs a run for a lent GPU machine; ``--distill-weight`` adds
distillation from the original e5 (:mod:`toolkit.train.distill`).

Run folder::

    RUN/data/        ids.npy, words.npy, meta.json   (the tokenised, segmented corpus)
    RUN/checkpoint/  model + optimizer (safetensors) + state.json (toolkit.train.state)
    RUN/log.jsonl    one line per --log-every steps
    RUN/encoder/     the encoder without the LM head + tokenizer (a Hugging Face folder)

Example:
    >>> pretrain("zh-e5-small-base", ["medical.txt"], "runs/mlm", max_steps=2000)  # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .mlm_data import IGNORE, Packed, data_sources, mask_batch, prepare_data, read_texts, same_sources
from .optim import adamw, recorded

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- model and state

def load_mlm(folder: str | Path, seed: int, num_layers: int | None = None):
    """``BertForMaskedLM`` over an encoder folder; a missing LM head is created (seeded) and its
    decoder is tied to the word embeddings; ``num_layers`` keeps only the first layers."""
    import torch
    from transformers import BertForMaskedLM

    from ..model.encoder import Encoder, _quiet_loading

    torch.manual_seed(seed)
    with _quiet_loading():
        model = BertForMaskedLM.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
    if num_layers is not None:
        Encoder(model.bert).truncate(num_layers)  # model.bert.config is model.config: both say num_layers
    model.config.tie_word_embeddings = True
    model.tie_weights()
    if model.cls.predictions.decoder.weight is not model.bert.embeddings.word_embeddings.weight:
        raise RuntimeError(f"the LM decoder of {folder} is not tied to the word embeddings")
    return model


class _Unshared:
    """The model as :mod:`toolkit.train.state` sees it: a state dict without the tied copies
    (safetensors refuses shared tensors), loaded back non-strictly."""

    def __init__(self, model) -> None:
        self.model = model

    def state_dict(self) -> dict:
        seen, out = set(), {}
        for k, v in self.model.state_dict().items():
            if v.data_ptr() not in seen:
                seen.add(v.data_ptr())
                out[k] = v
        return out

    def load_state_dict(self, state: dict) -> None:
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        tied = set(self.model.state_dict()) - set(self.state_dict())
        if unexpected or set(missing) - tied:
            raise ValueError(f"checkpoint does not match the model: missing {missing}, unexpected {unexpected}")

    def parameters(self):
        return self.model.parameters()


def export_encoder(model, tokenizer, out: Path, progress: dict | None = None) -> None:
    """The encoder (no LM head, float32) + tokenizer as a Hugging Face folder, swapped in atomically;
    ``progress`` (step, tokens) is written beside them as ``pretrain.json``."""
    from ..model.encoder import Encoder, _quiet_loading
    from ..model.folder import replace_folder

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with _quiet_loading():
        Encoder(model.bert).save(tmp, dtype=next(model.parameters()).dtype)
    tokenizer.save(tmp)
    if progress is not None:
        (tmp / "pretrain.json").write_text(json.dumps(progress) + "\n", encoding="utf-8")
    replace_folder(tmp, out)


def prior_tokens(encoder: Path) -> int:
    """Tokens the start ``encoder`` was already pretrained on: its ``pretrain.json`` (``tokens_total``,
    else ``tokens``) when an earlier run exported it, else 0."""
    meta = Path(encoder) / "pretrain.json"
    if not meta.is_file():
        return 0
    record = json.loads(meta.read_text(encoding="utf-8"))
    return int(record.get("tokens_total", record.get("tokens", 0)))


def progress_record(step: int, tokens: int, before: int) -> dict[str, int]:
    """What an export records: this run's step and tokens, and ``tokens_total`` with the start
    encoder's own (``prior_tokens``), so a run continuing another plots at the right place.

    >>> progress_record(500, 2048000, 2662400)
    {'step': 500, 'tokens': 2048000, 'tokens_total': 4710400}
    """
    return {"step": step, "tokens": tokens, "tokens_total": before + tokens}


def lr_at(step: int, base: float, max_steps: int, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * max(0.0, (max_steps - step) / max(1, max_steps - warmup))


# ---------------------------------------------------------------- training

def _on(a: np.ndarray, dev):
    """``a`` as an int64 tensor on ``dev`` (on CUDA: copied from pinned memory, without blocking)."""
    import torch

    t = torch.from_numpy(a.astype(np.int64))
    return t.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else t


def pretrain(encoder: str | Path, text_files: Sequence[str | Path] = (), out: str | Path = "mlm-run", *,
             splits: Sequence[str] = (), data_root: str | Path | None = None, max_steps: int = 10000,
             max_minutes: float | None = None, batch_size: int = 32, max_length: int = 128, lr: float = 5e-5,
             warmup: float = 0.06, weight_decay: float = 0.01, clip: float = 1.0, seed: int = 0,
             threads: int | None = None, log_every: int = 50, save_every: int = 500, export_every: int = 0,
             resume: bool = False, on_step: Callable[[int], None] | None = None, dtype: str = "auto",
             device: str = "cpu", corpus: tuple[np.ndarray, np.ndarray, dict] | None = None,
             distill_weight: float = 0.0, teacher: str | Path = "auto", distill_loss: str = "mse",
             mlm_weight: float = 1.0, num_layers: int | None = None) -> dict[str, Any]:
    """Continue MLM pretraining of ``encoder``; returns the last log record.

    ``on_step(step)`` is called after each completed step (and its checkpoint); tests use it to
    simulate a kill. Without ``resume``, a ``RUN`` holding a checkpoint is refused. ``dtype``: ``"fp32"``,
    ``"bf16"`` (autocast over the forward pass; the loss, weights and optimizer stay fp32) or ``"auto"``
    (:func:`toolkit.train.precision.choose_dtype`); the checkpoint records it and ``--resume`` with
    ``"auto"`` keeps it. ``device``: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (on CUDA a resume continues
    the same data and schedule, but GPU kernels are not bit-reproducible). ``corpus``: ``(ids, words,
    sources)`` already tokenised and segmented (:mod:`toolkit.train.gpu_job`), instead of ``RUN/data``.
    ``max_minutes`` counts the run across resumes (a resume with the budget spent is refused).
    ``distill_weight`` > 0 adds :mod:`toolkit.train.distill` from ``teacher`` to ``mlm_weight`` * MLM.
    ``num_layers``: keep only the encoder's first ``num_layers`` layers and pretrain that truncated
    encoder (the start of a small student; the distillation pairs proportional layers, e.g. a
    6-layer student's 2, 4, 6 with e5's 4, 8, 12); the export has ``num_layers`` layers.
    """
    import torch

    from ..registry import base_path
    from ..text.tokenization import TextTokenizer
    from .precision import autocast, choose_dtype
    from .state import check_time_left, load_checkpoint, recover_checkpoint, save_checkpoint, trainer_state

    run = Path(out)
    if threads:
        torch.set_num_threads(threads)
    ckpt_path = run / "checkpoint"
    found = recover_checkpoint(ckpt_path)
    if found and not resume:
        raise FileExistsError(f"{run} holds a checkpoint of an earlier run: pass --resume to continue it, or choose another --out")
    resumed = trainer_state(found) if found else None
    if resumed is not None:  # before the data: max_minutes counts the run across resumes
        check_time_left(max_minutes, resumed)
    folder = base_path(encoder)
    tokenizer = TextTokenizer.from_pretrained(folder)
    before = prior_tokens(folder)  # an encoder exported by an earlier run: its tokens count towards what this one saw
    sources = corpus[2] if corpus is not None else data_sources(text_files, splits, tokenizer)

    texts = partial(read_texts, text_files, splits, data_root)

    run.mkdir(parents=True, exist_ok=True)
    arrays = corpus[:2] if corpus is not None else prepare_data(run, texts, sources, tokenizer)
    data = Packed(*arrays, max_length=max_length, tokenizer=tokenizer)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device}: torch sees no CUDA GPU here (torch {torch.__version__}); use --device cpu")
    model = load_mlm(folder, seed, num_layers).to(dev)
    distiller = None
    if distill_weight:
        from .distill import Distiller

        distiller = Distiller.for_model(teacher, tokenizer, model, loss=distill_loss)  # before the optimizer: its map trains
    if max_length > model.config.max_position_embeddings:
        raise ValueError(f"max_length {max_length} exceeds the encoder's {model.config.max_position_embeddings} positions")
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer, optimizer_kind = adamw([{"params": decay, "weight_decay": weight_decay},  # a resumed run keeps its kernel
                                       {"params": no_decay, "weight_decay": 0.0}], recorded(resumed), lr=lr)
    config = {"encoder": str(encoder), "max_steps": max_steps, "batch_size": batch_size, "max_length": max_length,
              "lr": lr, "warmup": warmup, "weight_decay": weight_decay, "clip": clip, "seed": seed, "data": sources}
    if num_layers is not None:  # not in older checkpoints' configs: they resume unchanged
        config["num_layers"] = num_layers
    if distiller is not None:
        config["distill"] = {"weight": distill_weight, "mlm_weight": mlm_weight, "teacher": str(teacher),
                             "loss": distill_loss, "layers": [list(x) for x in distiller.pairs]}
    step, tokens, elapsed = 0, 0, 0.0
    recorded_dtype = None  # the dtype of the checkpoint resumed
    log_path = run / "log.jsonl"
    if found:
        saved = resumed["config"]
        changed = sorted(k for k in config.keys() | saved.keys() if saved.get(k) != config.get(k)
                         and not (k == "data" and same_sources(saved.get(k) or {}, config[k])))
        if changed:  # before the weights, which would fail less clearly (e.g. another num_layers)
            raise ValueError(f"--resume with different settings than the checkpoint in {found}: {', '.join(changed)}")
        state = load_checkpoint(found, _Unshared(model), optimizer, None, np.random.default_rng(0))
        step, tokens, elapsed = state["step"], state["tokens"], state["elapsed"]
        recorded_dtype = state.get("dtype", "fp32")  # checkpoints from before the option trained in fp32
        if log_path.is_file():  # drop lines written after the checkpoint
            keep = [ln for ln in log_path.read_text(encoding="utf-8").splitlines() if ln and json.loads(ln)["step"] <= step]
            log_path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")
        logger.info("resuming %s at step %d", run, step)
    elif log_path.exists():
        log_path.unlink()

    if recorded_dtype is not None and dtype == "auto":
        run_dtype = recorded_dtype
        logger.info("training dtype %s: recorded in the checkpoint", run_dtype)
    else:
        run_dtype, _ = choose_dtype(dtype, str(next(model.parameters()).device), model.config.hidden_size)
    warmup_steps = max(1, int(round(warmup * max_steps))) if warmup < 1 else int(warmup)
    specials = tokenizer.hf.all_special_ids
    mask_id = tokenizer.hf.mask_token_id
    vocab_size = model.config.vocab_size
    start_time, start_elapsed = time.perf_counter(), elapsed
    window = {"loss": 0.0, "correct": 0, "masked": 0, "steps": 0}
    record: dict[str, Any] = {"step": step}
    model.train()

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, _Unshared(model), optimizer, None, np.random.default_rng(0),
                        {"step": step, "tokens": tokens, "elapsed": elapsed, "config": config, "dtype": run_dtype,
                         "optimizer": optimizer_kind})

    def batch_of(s: int) -> tuple[np.ndarray, ...]:
        ids, words, attn = data.batch(seed, s, batch_size)
        return (ids, attn, *mask_batch(ids, words, np.random.default_rng([seed, s, 2]), vocab_size, mask_id, specials))

    pool = ThreadPoolExecutor(1) if dev.type == "cuda" else None  # CUDA: the next batch is made while the GPU works
    ahead = pool.submit(batch_of, step) if pool else None
    while step < max_steps:
        if pool is None:
            ids, attn, inputs, labels = batch_of(step)
        else:
            ids, attn, inputs, labels = ahead.result()
            ahead = pool.submit(batch_of, step + 1)
        torch.manual_seed(seed * 1_000_003 + step)  # dropout of this step
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, lr, max_steps, warmup_steps)
        x, y, a = (_on(v, dev) for v in (inputs, labels, attn))
        with autocast(run_dtype, str(x.device)):  # bf16: the forward pass; the loss is fp32
            fwd = model.bert(input_ids=x, attention_mask=a, output_hidden_states=distiller is not None)
            picked = y != IGNORE
            logits = model.cls(fwd.last_hidden_state[picked])  # the vocabulary projection only where something is predicted
        loss = torch.nn.functional.cross_entropy(logits.float(), y[picked])
        total = loss if distiller is None else (
            mlm_weight * loss + distill_weight * distiller(fwd.hidden_states, ids, labels != IGNORE, run_dtype))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        step += 1
        tokens += int(attn.sum())
        elapsed = start_elapsed + time.perf_counter() - start_time
        window["loss"] += float(loss.detach())
        window["correct"] += int((logits.argmax(-1) == y[picked]).sum())
        window["masked"] += int(picked.sum())
        window["steps"] += 1
        out_of_time = max_minutes is not None and elapsed >= 60 * max_minutes
        if step % log_every == 0 or step == max_steps or out_of_time:
            record = {"step": step, "loss": round(window["loss"] / window["steps"], 5),
                      "mlm_acc": round(window["correct"] / max(1, window["masked"]), 5),
                      "lr": optimizer.param_groups[0]["lr"], "tokens": tokens, "elapsed_s": round(elapsed, 2)}
            if distiller is not None:
                record["distill"] = distiller.flush()
                dropped = distiller.flush_dropped()  # teacher pieces a pruned teacher lacks (GPU jobs): fed as <unk>, not distilled
                if dropped:
                    record["distill_dropped"] = dropped
            with log_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            logger.info("%s", record)
            window = {"loss": 0.0, "correct": 0, "masked": 0, "steps": 0}
        if step % save_every == 0 or step == max_steps or out_of_time:
            checkpoint()
        if export_every and step % export_every == 0:
            export_encoder(model, tokenizer, run / "encoder", progress_record(step, tokens, before))
        if on_step is not None:
            on_step(step)
        if out_of_time:
            logger.info("stopping at step %d: --max-minutes reached (resume with --resume)", step)
            break
    if pool is not None:
        pool.shutdown(wait=True)
    export_encoder(model, tokenizer, run / "encoder", progress_record(step, tokens, before))
    return record | {"dtype": run_dtype}
