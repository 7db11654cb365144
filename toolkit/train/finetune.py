"""Fine-tune on your own corpus: ``toolkit train ner --train my.bio --dev my_dev.bio --out my-model``.

The same from Python::

    from toolkit.train.finetune import finetune
    summary = finetune("ner", "my_train.bio", "my_dev.bio", start="ner-medical", out="my-model")
    ner = toolkit.load("my-model")

``start`` (``--from``) is a base encoder (default ``zh-e5-small-adapted``; any registered base or BERT-family folder) or a trained
model (registered name or folder): its encoder is reused, its head too when the label set matches;
other tasks of a multi-task model are kept (``freeze_encoder=True`` guarantees their scores do not
move). Defaults come from the data: epochs from its size, max length from its length distribution.
Everything the user gave is accounted for: reader repairs, label sets, types present in dev but not
in train, duplicates and train/dev overlap are reported before training starts.
"""
from __future__ import annotations

import json
import logging
import math
import shlex
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import kinds
from ..data.readers import FORMATS, Kind, guess_format  # noqa: F401 (FORMATS: importable from here too)
from ..registry import DEFAULT_BASE
from .recipe import Recipe, TaskRecipe, TrainSettings

logger = logging.getLogger(__name__)

MIN_STEPS = 300  # floor on optimizer updates when the epochs come from the data


def default_batch_size(n_train: int) -> int:
    """8 below 300 training examples, 16 below 2,000, else 32: small data needs many small updates."""
    return 8 if n_train < 300 else 16 if n_train < 2000 else 32


def default_settings(n_train: int, lengths: list[int], batch_size: int | None = None) -> dict[str, Any]:
    """Batch size, epochs, total steps, evaluation interval and max length chosen from the data.

    Epochs fall with the data size, but never below what gives :data:`MIN_STEPS` updates.

    >>> default_settings(800, [30] * 800)["epochs"]
    10
    >>> {k: default_settings(60, [30] * 60)[k] for k in ("batch_size", "epochs", "steps")}
    {'batch_size': 8, 'epochs': 38, 'steps': 304}
    """
    batch_size = batch_size or default_batch_size(n_train)
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    epochs = 10 if n_train < 1000 else 6 if n_train < 5000 else 3 if n_train < 20000 else 2
    epochs = max(epochs, math.ceil(MIN_STEPS / steps_per_epoch))
    p98 = int(np.percentile(lengths, 98)) if lengths else 64
    max_length = int(min(512, max(32, 32 * int(np.ceil((p98 + 2) / 32)))))
    return {"batch_size": batch_size, "epochs": epochs, "steps": epochs * steps_per_epoch, "eval_every": max(20, steps_per_epoch // 2), "max_length": max_length}


def data_report(kind: Kind, train: list, dev: list) -> dict[str, Any]:
    """Label counts, dev-only labels, duplicates and train/dev overlap; warns about what needs a look."""
    from ..data.validation import duplicates, overlap

    head = kinds.for_data(kind)

    def labels(examples):
        return Counter(head.label_counts(examples))

    tr, dv = labels(train), labels(dev)
    report = {
        "train_examples": len(train),
        "dev_examples": len(dev),
        "train_labels": dict(tr.most_common()),
        "dev_labels": dict(dv.most_common()),
        "labels_only_in_dev": sorted(set(dv) - set(tr)),
        "duplicates_in_train": duplicates(train),
        "train_dev_overlap": overlap(train, dev) if dev else 0,
    }
    if report["labels_only_in_dev"]:
        logger.warning("labels in dev that train never shows (the model cannot predict them): %s", report["labels_only_in_dev"])
    if report["duplicates_in_train"]:
        logger.warning("%d duplicate texts in train", report["duplicates_in_train"])
    if report["train_dev_overlap"]:
        logger.warning("%d dev texts also occur in train: dev scores will be optimistic", report["train_dev_overlap"])
    return report


def _is_model(start: str) -> bool:
    from ..registry import MANIFEST, MODELS

    return start in MODELS or (Path(start) / MANIFEST).is_file()


def finetune(
    kind: Kind,
    train: str | Path,
    dev: str | Path | None = None,
    *,
    start: str = DEFAULT_BASE,
    out: str | Path = "my-model",
    format: str | None = None,
    task: str | None = None,
    head: str | None = None,
    scheme: str | None = None,
    epochs: float | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    max_length: int | None = None,
    num_layers: int | None = None,
    freeze_encoder: bool = False,
    max_minutes: float | None = None,
    holdout: int | None = None,
    progress: bool = True,
    reader_options: dict[str, Any] | None = None,
    threads: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    keep_run: bool = True,
    on_report: Callable[[dict[str, Any]], None] | None = None,
    train_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a ``kind`` head on your files and save a model folder at ``out``; returns a summary.

    Without ``dev``, ``holdout`` training examples (default: 10%, at most 1,000) select the model.
    ``reader_options`` go to the reader (e.g. ``{"text_column": "review"}`` for a table). Batch size
    and epochs default from the data (:func:`default_settings`). The run folder ``OUT.run`` holds the
    checkpoint and log: ``resume=True`` continues from it, ``keep_run=False`` deletes it after the
    model is saved; a fresh run over an earlier one needs ``overwrite=True``. ``threads`` sets
    torch's CPU threads. ``on_report`` receives the data report (:func:`data_report`, plus the
    chosen ``settings``) before training starts; the CLI prints it. ``train_settings`` overrides
    other :class:`~toolkit.train.recipe.TrainSettings` fields, e.g. ``{"early_stopping": "trend", "patience": 5}``.
    ``head`` picks the head kind for the data (``"span"`` for nested NER; default: the data's
    default kind, :func:`toolkit.kinds.for_data`).
    """
    from ..data.readers import read
    from ..registry import MANIFEST, resolve

    options = dict(reader_options or {})
    head_kind = kinds.for_data(kind, head)
    fmt = format or guess_format(kind, train)
    dev_fmt = format or (guess_format(kind, dev) if dev else None)
    train_examples, train_report = read(train, fmt, **options)
    dev_examples, dev_report = read(dev, dev_fmt, **options) if dev else ([], None)
    report = data_report(kind, train_examples, dev_examples)
    for name, rep in (("train_reader", train_report), ("dev_reader", dev_report)):
        if rep is not None and rep.problems:
            report[name] = rep.as_dict()
    continuing = _is_model(start)
    if task is None:
        task = kind
        if continuing:  # a registered name selects its task: reuse it when the kind matches
            path, selected = resolve(start)
            from ..model.manifest import Manifest

            manifest = Manifest.read(path)
            same = [t for t in (selected or manifest.tasks) if manifest.tasks[t].kind == head_kind.name]
            task = same[0] if len(same) == 1 else kind
            scheme = scheme or (manifest.tasks[task].scheme if task in manifest.tasks else None)
    n_holdout = 0
    if not dev:
        n_holdout = holdout if holdout is not None else min(1000, max(1, len(train_examples) // 10))
    texts = [ex.text for ex in train_examples] if kind != "pair" else [ex.text_a + ex.text_b for ex in train_examples]
    defaults = default_settings(max(1, len(train_examples) - n_holdout), [len(t) for t in texts], batch_size)
    out = Path(out)
    run_dir = out.parent / f"{out.name}.run"
    settings = TrainSettings(epochs=epochs or defaults["epochs"], lr=lr or 1e-4, batch_size=defaults["batch_size"], freeze_encoder=freeze_encoder,
                             max_minutes=max_minutes, patience=3, eval_every=defaults["eval_every"], threads=threads)
    settings = replace(settings, **(train_settings or {}))
    recipe = Recipe(
        name=out.name,
        encoder=start if not continuing else "",
        from_model=start if continuing else None,
        out=str(run_dir),
        model_out=str(out),
        max_length=max_length or (None if continuing else defaults["max_length"]),
        num_layers=num_layers,
        tasks={task: TaskRecipe(kind=head_kind.name, train={"path": str(train), "format": fmt, **options}, dev={"path": str(dev), "format": dev_fmt, **options} if dev else None, scheme=scheme, holdout=n_holdout, options=dict(head_kind.new_head_options))},
        train=settings,
        command=_command(kind, train, dev, start, out, format=format, task=task if task != kind else None, head=head, scheme=scheme if scheme != "BIO" else None, epochs=epochs, lr=lr,
                         batch_size=batch_size, max_length=max_length, num_layers=num_layers, freeze_encoder=freeze_encoder, max_minutes=max_minutes, option=options),
    )
    recipe.check()
    steps = math.ceil(settings.epochs * math.ceil((len(train_examples) - n_holdout) / settings.batch_size))
    report["settings"] = {"batch_size": settings.batch_size, "epochs": settings.epochs, "steps": steps, "eval_every": settings.eval_every, "max_length": recipe.max_length or "the --from model's", "lr": settings.lr,
                          "chosen_from_data": [k for k, given in (("batch_size", batch_size), ("epochs", epochs), ("max_length", max_length or continuing)) if not given]}
    logger.info("fine-tuning %s head %r from %s; data report: %s", kind, task, start, json.dumps(report, ensure_ascii=False))
    if on_report is not None:
        on_report(report)
    from .loop import folder_mb, train as run

    summary = run(recipe, resume=resume, progress=progress, overwrite=overwrite)
    best = max(summary["history"], key=lambda h: h["mean"]) if summary["history"] else {}
    result = {
        "model": str(out),
        "task": task,
        "data": report,
        "dev": best.get("scores", {}).get(task, {}),
        "steps": summary["steps"],
        "minutes": summary["minutes"],
        "stopped_by": summary["stopped_by"],
        "resumed_from": summary["resumed_from"],
        "load": f"toolkit.load({str(out)!r})",
        "run": str(run_dir),
    }
    from . import distributed

    if not distributed.is_main():  # under torchrun rank 0 writes
        return result
    (run_dir / "finetune.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    if not keep_run and (out / MANIFEST).is_file():
        shutil.rmtree(run_dir)
        logger.info("removed the run folder %s (keep_run=False)", run_dir)
        result["run"] = None
    else:
        result["run_mb"] = folder_mb(run_dir)
    return result


def _command(kind: str, train: str | Path, dev: str | Path | None, start: str, out: Path, option: dict[str, Any], **given: Any) -> str:
    """The ``toolkit train`` command line equivalent to a :func:`finetune` call (for the model card)."""
    words = ["toolkit", "train", kind, "--train", str(train)] + (["--dev", str(dev)] if dev else []) + ["--from", start, "--out", str(out)]
    for key, value in given.items():
        if value is True:
            words.append("--" + key.replace("_", "-"))
        elif value not in (None, False):
            words += ["--" + key.replace("_", "-"), str(value)]
    for key, value in option.items():
        words += ["--option", f"{key}={value}"]
    return shlex.join(words)


def format_report(report: dict[str, Any]) -> str:
    """The data report a person reads before training: counts, labels, what needs a look, settings."""
    lines = [f"data: {report['train_examples']} training examples, {report['dev_examples']} dev examples"]
    lines.append("train labels: " + (", ".join(f"{k} {v}" for k, v in report["train_labels"].items()) or "none"))
    if report["dev_examples"]:
        lines.append("dev labels:   " + (", ".join(f"{k} {v}" for k, v in report["dev_labels"].items()) or "none"))
    if report["labels_only_in_dev"]:
        lines.append(f"labels only in dev (the model cannot predict them): {', '.join(report['labels_only_in_dev'])}")
    lines.append(f"duplicate texts in train: {report['duplicates_in_train']}   dev texts also in train: {report['train_dev_overlap']}")
    for name in ("train_reader", "dev_reader"):
        rep = report.get(name)
        for title in ("repaired", "skipped") if rep else ():
            for problem, n in rep[title].items():
                where = ", ".join(rep["where"].get(problem, [])[:3])
                lines.append(f"{rep['source']}: {title} {n} x {problem}" + (f" ({where})" if where else ""))
    st = report.get("settings")
    if st:
        chosen = f" (from the data: {', '.join(st['chosen_from_data'])})" if st["chosen_from_data"] else ""
        lines.append(f"training: batch size {st['batch_size']}, {st['epochs']:g} epochs = {st['steps']} steps, evaluation every {st['eval_every']} steps, max length {st['max_length']}, lr {st['lr']:g}{chosen}")
    return "\n".join(lines)


def format_summary(result: dict[str, Any]) -> str:
    """The end-of-training summary a person reads: per-type P/R/F1, where the model and the run folder are, how to load it."""
    dev = result["dev"]
    resumed = f", resumed at step {result['resumed_from']}" if result.get("resumed_from") is not None else ""
    lines = [f"saved: {result['model']}   ({result['steps']} steps{resumed}, {result['minutes']} min, stopped by {result['stopped_by']})"]
    if "per_type" in dev:
        lines.append(f"{'type':<16}{'P':>8}{'R':>8}{'F1':>8}{'support':>9}")
        for label, s in dev["per_type"].items():
            lines.append(f"{label:<16}{100 * s['precision']:8.2f}{100 * s['recall']:8.2f}{100 * s['f1']:8.2f}{s['support']:9d}")
        m = dev["micro"]
        lines.append(f"{'micro':<16}{100 * m['precision']:8.2f}{100 * m['recall']:8.2f}{100 * m['f1']:8.2f}{m['support']:9d}")
    elif dev:
        lines.append(f"accuracy {100 * dev['accuracy']:.2f}   macro-F1 {100 * dev['macro_f1']:.2f}   (n={dev['n']})")
    lines.append(f"load it with: {result['load']}")
    if result.get("run"):
        lines.append(f"run folder: {result['run']} ({result.get('run_mb', '?')} MB: checkpoint for --resume, training log); delete it when done, or pass --no-keep-run next time")
    return "\n".join(lines)
