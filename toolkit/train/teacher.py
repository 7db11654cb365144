"""Task distillation in ``toolkit train``: a trained model (the teacher) teaches the recipe's model.

A recipe names the teacher at its top level; the student is whatever the recipe builds, typically
the lower layers of an adapted base (``encoder`` + ``num_layers``)::

    name: sentiment-small
    teacher: runs/sentiment/model         # a model folder or a registered name
    encoder: pretrained/zh-multitask/encoder
    num_layers: 2
    tasks:
      sentiment:
        kind: classifier
        train: chnsenticorp:train
        unlabeled: raw/general_zh.txt     # optional (tasks on one text): teacher's outputs only
        unlabeled_ratio: 0.25             # the fraction of this task's batches drawn from it
    train:
      distill_weight: 0.5                 # loss = (1 - w) * gold loss + w * distillation loss
      distill_temperature: 2.0

* **The teacher** (:class:`Teacher`) is loaded once with only the recipe's tasks, in eval mode
  without gradients, and runs on each student batch under the same autocast (bf16 where the run
  trains in bf16). It may be deeper or wider than the student, but it must read the same token ids
  (same vocabulary: checked) and have, for each task it teaches, a head of the same kind with the
  same labels in the same order (a task without ``labels`` in the recipe takes the teacher's). A
  task the teacher has no head for trains on its gold labels alone, with a warning.
* **The loss** is each head's own: :meth:`toolkit.heads.base.Head.distill_loss` (classifier and
  matcher: KL of the softened label distributions; tagger: per-token KL of the softmax of the
  emissions, the CRF transitions learn from gold; span: binary KL per span cell). A head kind
  without one cannot be distilled (a clear error before training starts).
* **Unlabeled text** (``unlabeled``: a text file, one text a line, found as given or under the data
  root, e.g. ``raw/medical_zh.txt``; or a list of files): ``unlabeled_ratio`` of the task's batches
  come from it and train on the distillation loss alone. Texts equal to one of the task's dev (or
  held-out) texts are left out, so model selection stays clean. ``unlabeled_limit`` keeps a seeded
  sample. Epochs count the labelled data: the unlabeled batches come on top. With
  ``pseudo_labels: true`` an unlabeled batch also trains on the teacher's decisions as gold
  (:meth:`toolkit.heads.base.Head.pseudo_targets`: a tagger's CRF path, a span head's spans over its
  threshold, a classifier's label), mixed with the distillation loss as a labelled batch is: the
  student's CRF transitions then learn from the teacher too.

Resume stays exact: the teacher draws no random numbers (eval mode, no dropout) and the unlabeled
batch streams are checkpointed with the others.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .. import kinds
from ..errors import ConfigError
from ..heads.base import Head
from ..kinds import Feature, HeadKind
from ..model.encoder import Encoder
from ..model.multitask import MultiTaskModel
from ..text.encode import encode_texts, pad_batch
from ..text.normalize import Normalizer
from ..text.tokenization import TextTokenizer
from .batching import TaskStream
from .features import collate
from .precision import autocast
from .recipe import Recipe, TaskData

logger = logging.getLogger(__name__)

UNLABELED = "+unlabeled"  # a task's unlabeled stream is "<task>+unlabeled" (in the checkpoint and the log's losses)


class Teacher:
    """A trained :class:`~toolkit.model.multitask.MultiTaskModel` that gives soft targets, frozen."""

    def __init__(self, model: MultiTaskModel, source: str = "") -> None:
        self.model = model.eval().requires_grad_(False)
        self.source = source or model.name

    @classmethod
    def load(cls, ref: str, tasks: Iterable[str]) -> "Teacher":
        """The teacher ``ref`` (a model folder or registered name) with its heads for ``tasks``; a task
        it has no head for is warned about (it trains on gold alone)."""
        from ..model.manifest import Manifest
        from ..registry import resolve

        path, _ = resolve(ref)
        have = Manifest.read(path).tasks
        tasks = list(tasks)
        taught = [t for t in tasks if t in have]
        for t in tasks:
            if t not in have:
                logger.warning("task %s: the teacher %s has no head for it (its tasks: %s); it trains on its gold labels only", t, ref, ", ".join(have))
        if not taught:
            raise ConfigError(f"the teacher {ref} has none of the recipe's tasks ({', '.join(tasks)}); its tasks: {', '.join(have)}. "
                              "Name the recipe's tasks as the teacher does, or drop `teacher`")
        logger.info("teacher %s for tasks %s", path, taught)
        return cls(MultiTaskModel.load(path, tasks=taught), str(ref))

    @property
    def heads(self) -> dict[str, Head]:
        return dict(self.model.heads)

    def check(self, student: MultiTaskModel) -> None:
        """Refuse a teacher that cannot teach ``student``: another vocabulary, fewer positions than
        the student's max length, or a head of another kind or other labels."""
        mine, theirs = student.tokenizer.hf.get_vocab(), self.model.tokenizer.hf.get_vocab()
        if mine != theirs:
            differ = len(set(mine.items()) ^ set(theirs.items()))
            raise ConfigError(f"the teacher {self.source} has another vocabulary than the student ({len(theirs)} vs {len(mine)} tokens, "
                              f"{differ} entries differ): the teacher reads the student's token ids, so both need the same tokenizer. "
                              "Start the student from the teacher's encoder or the base it was trained from (e.g. `encoder: "
                              "pretrained/zh-multitask/encoder` with `num_layers: 2`), or choose a teacher trained on the student's vocabulary")
        if self.model.encoder.max_positions < student.max_length:
            raise ConfigError(f"the teacher {self.source} reads at most {self.model.encoder.max_positions} tokens, the student's max_length "
                              f"is {student.max_length}: set max_length to at most {self.model.encoder.max_positions}")
        if self.model.normalization != student.normalization:
            logger.warning("the teacher %s normalises text otherwise than the student; it is given the student's normalisation", self.source)
        for task, head in self.model.heads.items():
            ours, their = student.heads[task].spec(), head.spec()
            if (ours["kind"], ours["labels"], ours.get("scheme")) != (their["kind"], their["labels"], their.get("scheme")):
                raise ConfigError(f"task {task!r}: the teacher's head is a {_describe(their)}, the student's a {_describe(ours)}: a head "
                                  "learns from a teacher head of the same kind with the same labels in the same order. Give the task the "
                                  "teacher's kind, `labels:` (or leave labels out: they are then the teacher's) and scheme, or drop `teacher`")
            if type(student.heads[task]).distill_loss is Head.distill_loss:
                raise ConfigError(f"task {task!r}: a {ours['kind']} head has no distillation loss (Head.distill_loss), so it cannot learn from "
                                  "a teacher; name the task differently from the teacher's, or drop `teacher`")

    @torch.no_grad()
    def outputs(self, batch: dict[str, torch.Tensor], task: str, dtype: str, device: str) -> torch.Tensor:
        """The teacher head's output for ``batch`` (fp32), under the run's autocast."""
        with autocast(dtype, device):
            return self.model(batch, [task])[task].float()


def _describe(spec: dict[str, Any]) -> str:
    scheme = f" ({spec['scheme']})" if spec.get("scheme") else ""
    return f"{spec['kind']}{scheme} with labels {spec['labels']}"


def read_texts(ref: Any, data_root: str | None = None, limit: int | None = None, seed: int = 0) -> list[str]:
    """The texts of a text file (one a line, blank lines skipped) or a list of files, each found as
    given or under the data root; at most ``limit`` of them (a seeded sample, in file order)."""
    from ..data.catalogue import resolve_data_root

    texts: list[str] = []
    for r in ref if isinstance(ref, list) else [ref]:
        if not isinstance(r, str):
            raise ConfigError(f"unlabeled: expected the path of a text file (one text a line) or a list of them, got {r!r}")
        path = Path(r).expanduser()
        if not path.is_file():
            try:
                root: Path | None = resolve_data_root(data_root)
            except FileNotFoundError:
                root = None
            if root is None or not (root / r).is_file():
                where = f" or {root / r}" if root is not None else ""
                raise FileNotFoundError(f"unlabeled text {r!r}: no file {path.resolve()}{where}; give a text file with one text a "
                                        "line, as a path or under the data root (e.g. raw/medical_zh.txt)")
            path = root / r
        with open(path, encoding="utf-8") as f:
            texts += [line.strip() for line in f if line.strip()]
    if limit is not None and len(texts) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(texts), limit, replace=False))
        texts = [texts[i] for i in keep]
    return texts


def unlabeled_features(kind: HeadKind, texts: Sequence[str], tokenizer: TextTokenizer, normalizer: Normalizer, max_length: int) -> list[Feature]:
    """Target-less features of ``texts`` for a head of ``kind`` (one text per input): every disjoint
    window for kinds that read every window, else the first, as its gold features are made."""
    out = []
    for enc in encode_texts(list(texts), normalizer, tokenizer, max_length, overlap=False):
        if len(enc.ids):
            out += [Feature(ids, None) for _, ids in (enc.windows if kind.every_window else enc.windows[:1])]
    return out


class LayerTap:
    """Keeps the output of chosen transformer layers (1 = the first) of an encoder on every forward.

    Example:
        >>> tap = LayerTap(model.encoder, [1, 2]); model(batch); tap.states[2].shape  # doctest: +SKIP
        torch.Size([16, 40, 384])
    """

    def __init__(self, encoder: Encoder, layers: Iterable[int]) -> None:
        modules = encoder.layers()
        self.states: dict[int, torch.Tensor] = {}
        self.handles = [modules[i - 1].register_forward_hook(self._keeper(i)) for i in layers]

    def _keeper(self, i: int):
        def keep(module, args, output) -> None:
            self.states[i] = output[0] if isinstance(output, tuple) else output
        return keep

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.states.clear()


class Distillation:
    """What the training loop asks about distillation: where a task's next batch comes from, how to
    pad it, and its loss. Without a teacher every batch is a gold one and the loss the head's own."""

    def __init__(self, teacher: Teacher | None = None, weight: float = 0.5, temperature: float = 2.0,
                 unlabeled: dict[str, tuple[TaskStream, float]] | None = None, hidden: float = 0.0,
                 taps: tuple[LayerTap, LayerTap, list[tuple[int, int]]] | None = None, pseudo: Iterable[str] = ()) -> None:
        self.teacher = teacher
        self.weight, self.temperature = weight, temperature
        self.ratios = {t: ratio for t, (_, ratio) in (unlabeled or {}).items()}
        self.streams = {t + UNLABELED: stream for t, (stream, _) in (unlabeled or {}).items()}
        self.hidden, self.taps = hidden, taps  # taps: (student's, teacher's, (teacher, student) layer pairs)
        self.pseudo = set(pseudo)  # tasks whose unlabeled batches also train on the teacher's decisions

    @classmethod
    def setup(cls, recipe: Recipe, model: MultiTaskModel, data: dict[str, TaskData], teacher: Teacher | None, rng: np.random.Generator) -> "Distillation":
        """Check ``teacher`` against the student ``model``, move it to the run's device and build the
        unlabeled batch streams of the recipe's tasks."""
        if teacher is None:
            return cls()
        cfg = recipe.train
        teacher.check(model)
        teacher.model.to(cfg.device)
        normalizer = Normalizer(model.normalization)
        unlabeled = {}
        for name, t in recipe.tasks.items():
            if t.unlabeled is None:
                continue
            if name not in teacher.model.heads:
                raise ConfigError(f"task {name!r}: unlabeled text needs the teacher's outputs, and the teacher {teacher.source} has no {name!r} head")
            texts = list(dict.fromkeys(read_texts(t.unlabeled, recipe.data_root, t.unlabeled_limit, cfg.seed)))
            held = {ex.text for ex in data[name].dev}
            kept = [x for x in texts if x not in held]
            feats = unlabeled_features(kinds.get(t.kind), kept, model.tokenizer, normalizer, model.max_length)
            if not feats:
                raise ConfigError(f"task {name!r}: no text in {t.unlabeled!r}")
            logger.info("task %s: %d unlabeled texts (%d equal to dev texts left out), %d sequences, %.0f%% of its batches",
                        name, len(kept), len(texts) - len(kept), len(feats), 100 * t.unlabeled_ratio)
            unlabeled[name] = (TaskStream(TaskData(feats, []), cfg.batch_size, rng, cfg.max_tokens, cfg.length_pool), t.unlabeled_ratio)
        logger.info("distilling %s from %s (distill_weight %s, temperature %s)", list(teacher.model.heads), teacher.source, cfg.distill_weight, cfg.distill_temperature)
        taps = cls._taps(teacher, model) if cfg.distill_hidden else None
        pseudo = [name for name, t in recipe.tasks.items() if t.pseudo_labels]
        if pseudo:
            logger.info("tasks %s: unlabeled batches also train on the teacher's decisions (pseudo-labels)", pseudo)
        return cls(teacher, cfg.distill_weight, cfg.distill_temperature, unlabeled, cfg.distill_hidden, taps, pseudo)

    @staticmethod
    def _taps(teacher: Teacher, student: MultiTaskModel) -> tuple[LayerTap, LayerTap, list[tuple[int, int]]]:
        """Taps on each student layer and its proportional teacher layer (hidden-state distillation)."""
        from .distill import layer_pairs

        te, st = teacher.model.encoder, student.encoder
        if te.hidden_size != st.hidden_size:
            raise ConfigError(f"distill_hidden compares hidden states, and the teacher {teacher.source} is {te.hidden_size} wide, the student "
                              f"{st.hidden_size}: start the student from the teacher's encoder (or its base) with fewer layers, or set distill_hidden: 0")
        if st.num_layers > te.num_layers:
            raise ConfigError(f"distill_hidden maps each student layer to a teacher layer, and the student has {st.num_layers} layers, the "
                              f"teacher {te.num_layers}: give the student at most {te.num_layers} (num_layers), or set distill_hidden: 0")
        pairs = layer_pairs(te.num_layers, st.num_layers, [round(te.num_layers * s / st.num_layers) for s in range(1, st.num_layers + 1)])
        logger.info("hidden-state distillation: (teacher, student) layers %s", pairs)
        return LayerTap(st, [s for _, s in pairs]), LayerTap(te, [t for t, _ in pairs]), pairs

    def hidden_loss(self, mask: torch.Tensor) -> torch.Tensor:
        """Mean over the layer pairs of the per-token squared distance (mean over the width) between
        the student's and the teacher's last-tapped states, over the tokens where ``mask`` is set."""
        mine, theirs, pairs = self.taps
        keep = mask.bool()
        losses = [((mine.states[s].float() - theirs.states[t].float()) ** 2).mean(-1)[keep].mean() for t, s in pairs]
        return torch.stack(losses).mean()

    def source(self, task: str, rng: np.random.Generator) -> str:
        """The stream of ``task``'s next batch: the task's own, or ``task + UNLABELED`` with probability
        ``unlabeled_ratio`` (drawn only for tasks with unlabeled text, so other runs draw as before)."""
        ratio = self.ratios.get(task)
        return task + UNLABELED if ratio is not None and rng.random() < ratio else task

    def per_epoch(self, task: str, batches: int) -> float:
        """The steps one pass over ``task``'s ``batches`` labelled batches takes, its unlabeled ones mixed in."""
        ratio = self.ratios.get(task)
        return batches / (1 - ratio) if ratio else batches

    def collate(self, rows: Sequence[Feature], pad_id: int, kind: HeadKind, labelled: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """``(batch, targets)``; an unlabeled batch has no targets."""
        if labelled:
            return collate(rows, pad_id, kind)
        return {k: torch.from_numpy(v) for k, v in pad_batch([f.ids for f in rows], pad_id).arrays.items()}, None

    def loss(self, head: Head, task: str, output: torch.Tensor, batch: dict[str, torch.Tensor], targets: torch.Tensor | None,
             dtype: str, device: str) -> torch.Tensor:
        """The head's gold loss, mixed with its distillation loss when the teacher teaches ``task``
        (``(1 - w) * gold + w * distillation``; the distillation loss alone without ``targets``)."""
        if self.teacher is None or task not in self.teacher.model.heads or (self.weight == 0 and targets is not None and not self.hidden):
            return head.loss(output, batch, targets)
        taught = self.teacher.outputs(batch, task, dtype, device)
        soft = head.distill_loss(output, taught, batch, self.temperature)
        extra = self.hidden * self.hidden_loss(batch["attention_mask"]) if self.hidden else 0.0  # the taps hold this batch's states
        if targets is None and task in self.pseudo:
            targets = self.teacher.model.heads[task].pseudo_targets(taught, batch)
        if targets is None:
            return soft + extra
        return (1 - self.weight) * head.loss(output, batch, targets) + self.weight * soft + extra


__all__ = ["Teacher", "Distillation", "LayerTap", "read_texts", "unlabeled_features", "UNLABELED"]
