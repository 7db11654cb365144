"""The corpus of continued MLM pretraining: texts in, packed sequences and whole-word masks out.

Texts (files with one text per line, and/or the texts of catalogue training splits, never their
labels) are normalised like the pipeline does, tokenised with the encoder's own tokenizer and
segmented with jieba (:func:`encode_corpus`); token ids and word ids are cached as int32 arrays in
``RUN/data`` (:func:`prepare_data`, keyed by :func:`data_sources`) and packed into sequences
``[CLS] ... [SEP]`` of ``max_length`` tokens, texts separated by ``[SEP]`` (:class:`Packed`).
Which sequences a step gets and which words it masks (:func:`mask_batch`) are functions of
``(seed, step)`` only. jieba and opencc are imported only when a corpus is encoded.

Example:
    >>> ids, words = encode_corpus(read_texts(["medical.txt"]), tokenizer)  # doctest: +SKIP
    >>> Packed(ids, words, max_length=128, tokenizer=tokenizer).batch(seed=0, step=0, batch_size=32)  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

IGNORE = -100


def split_texts(split_id: str, data_root: str | Path | None = None) -> list[str]:
    """The texts (never the labels) of a catalogue split such as ``"cmeee:train"``."""
    from ..data.catalogue import load_dataset

    examples, _ = load_dataset(split_id, data_root)
    texts: list[str] = []
    for ex in examples:
        if hasattr(ex, "text_a"):
            texts += [ex.text_a, ex.text_b]
        else:
            texts.append(ex.text)
    return texts


def read_texts(text_files: Sequence[str | Path] = (), splits: Sequence[str] = (),
               data_root: str | Path | None = None) -> list[str]:
    """The lines of ``text_files``, then the texts of the catalogue ``splits``, in that order."""
    texts: list[str] = []
    for f in text_files:
        texts += Path(f).read_text(encoding="utf-8").splitlines()
    for s in splits:
        texts += split_texts(s, data_root)
    return texts


def encode_corpus(texts: Sequence[str], tokenizer, batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """One token stream for all texts (``[SEP]`` between them) and the jieba word of each token
    (a running word number; -1 on the separators)."""
    import jieba

    from ..text.normalize import Normalizer

    normalizer = Normalizer()
    ids_parts: list[np.ndarray] = []
    word_parts: list[np.ndarray] = []
    next_word = 0
    sep = np.array([tokenizer.sep_id], dtype=np.int32)
    no_word = np.array([-1], dtype=np.int32)
    for start in range(0, len(texts), batch):
        norms = [normalizer(t).text.strip() for t in texts[start:start + batch]]
        norms = [t for t in norms if t]
        for text, (ids, offsets) in zip(norms, tokenizer.encode(norms)):
            if not len(ids):
                continue
            ends = np.cumsum([len(w) for w in jieba.lcut(text, HMM=True)])  # word k covers [ends[k-1], ends[k])
            words = np.searchsorted(ends, offsets[:, 0], side="right")
            ids_parts += [ids.astype(np.int32), sep]
            word_parts += [(words + next_word).astype(np.int32), no_word]
            next_word += int(words.max()) + 1
    if not ids_parts:
        raise ValueError("no text to pretrain on: the inputs are empty")
    return np.concatenate(ids_parts), np.concatenate(word_parts)


def prepare_data(run: Path, texts_fn: Callable[[], list[str]], sources: dict[str, Any], tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """Load ``RUN/data`` if it was made from the same ``sources``, else build it (atomically)."""
    folder = run / "data"
    fingerprint = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()
    meta_path = folder / "meta.json"
    if meta_path.is_file() and json.loads(meta_path.read_text(encoding="utf-8")).get("fingerprint") == fingerprint:
        return np.load(folder / "ids.npy"), np.load(folder / "words.npy")
    t0 = time.perf_counter()
    ids, words = encode_corpus(texts_fn(), tokenizer)
    tmp = folder.with_name("data.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "ids.npy", ids)
    np.save(tmp / "words.npy", words)
    meta = {"fingerprint": fingerprint, "sources": sources, "tokens": int(len(ids)), "words": int(words.max()) + 1}
    (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    logger.info("tokenised and segmented %d tokens in %.1f s", len(ids), time.perf_counter() - t0)
    return ids, words


def file_sources(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """What identifies each text file for the data cache and a resume: path, size and the sha256 of
    its bytes (not the modification time: a corpus copied again, byte for byte, is the same corpus,
    so neither the cache is rebuilt nor ``--resume`` refused; about 0.1 s per 40 MB)."""
    from ..files import file_sha256

    return [{"path": str(Path(p).resolve()), "size": Path(p).stat().st_size, "sha256": file_sha256(p)} for p in paths]


def same_sources(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether a checkpoint's recorded ``data`` sources are ``current``'s. Checkpoints made before the
    files were identified by content recorded their modification time instead: for those, path and
    size must match (a corpus copied again gets a new time) and the difference is logged."""
    if saved == current:
        return True
    old, new = saved.get("files", []), current.get("files", [])
    if {k: v for k, v in saved.items() if k != "files"} != {k: v for k, v in current.items() if k != "files"} or len(old) != len(new):
        return False
    for a, b in zip(old, new):
        if "sha256" in a or (a.get("path"), a.get("size")) != (b.get("path"), b.get("size")):
            return False
    logger.warning("the checkpoint identified its text files by modification time (an older run): same paths and sizes, so resuming")
    return True


def data_sources(text_files: Sequence[str | Path], splits: Sequence[str], tokenizer) -> dict[str, Any]:
    """What ``RUN/data`` is made from (its cache key): the files, the splits and the tokenizer."""
    return {"files": file_sources(text_files), "splits": list(splits), "tokenizer": len(tokenizer),
            "vocab": hashlib.sha256(json.dumps(tokenizer.hf.get_vocab(), sort_keys=True).encode()).hexdigest()}


class Packed:
    """The stream cut into blocks of ``max_length - 2`` tokens; the last one padded."""

    def __init__(self, ids: np.ndarray, words: np.ndarray, max_length: int, tokenizer) -> None:
        size = max_length - 2
        if size < 1:
            raise ValueError(f"max_length must be at least 3, got {max_length}")
        n = -(-len(ids) // size)
        pad = n * size - len(ids)
        self.ids = np.concatenate([ids, np.full(pad, tokenizer.pad_id, np.int32)]).reshape(n, size)
        self.words = np.concatenate([words, np.full(pad, -1, np.int32)]).reshape(n, size)
        self.cls_id, self.sep_id, self.pad_id = tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id
        self.valid = np.concatenate([np.ones(len(ids), bool), np.zeros(pad, bool)]).reshape(n, size)
        self._order: tuple[Any, np.ndarray] = (None, np.arange(n))

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, seed: int, step: int, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(input_ids, word_ids, attention_mask)`` of a step: sequences ``step*B .. step*B+B-1``
        of an endless series of epochs, each a permutation drawn from ``(seed, epoch)``."""
        n = len(self)
        rows = []
        for i in range(step * batch_size, (step + 1) * batch_size):
            epoch, pos = divmod(i, n)
            if self._order[0] != (seed, epoch):
                self._order = ((seed, epoch), np.random.default_rng([seed, epoch, 1]).permutation(n))
            rows.append(int(self._order[1][pos]))
        b = len(rows)
        col = lambda v: np.full((b, 1), v, np.int32)  # noqa: E731
        ids = np.concatenate([col(self.cls_id), self.ids[rows], col(self.sep_id)], axis=1)
        words = np.concatenate([col(-1), self.words[rows], col(-1)], axis=1)
        mask = np.concatenate([col(1), self.valid[rows].astype(np.int32), col(1)], axis=1)
        last = mask.sum(1) - 1  # [SEP] right after the last real token
        ids[:, -1] = self.pad_id
        mask[:, -1] = 0
        ids[np.arange(b), last] = self.sep_id
        mask[np.arange(b), last] = 1
        ids[mask == 0] = self.pad_id
        return ids, words, mask


def mask_batch(ids: np.ndarray, words: np.ndarray, rng: np.random.Generator, vocab_size: int, mask_id: int,
               special_ids: Sequence[int] = (), rate: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Whole-word masking: in each row choose ``round(rate * words)`` words (at least one) and mask
    all their tokens, each token 80% ``[MASK]``, 10% a random non-special token, 10% unchanged.
    Returns ``(inputs, labels)`` with labels ``-100`` where nothing is predicted."""
    inputs = ids.copy()
    labels = np.full_like(ids, IGNORE)
    for r in range(len(ids)):
        present = np.unique(words[r][words[r] >= 0])
        if not len(present):
            continue
        k = max(1, int(round(rate * len(present))))
        chosen = rng.choice(present, size=k, replace=False)
        pos = np.flatnonzero(np.isin(words[r], chosen))
        labels[r, pos] = ids[r, pos]
        u = rng.random(len(pos))
        randoms = rng.integers(0, vocab_size, len(pos))
        bad = np.isin(randoms, list(special_ids))
        randoms[bad] = ids[r, pos][bad]  # a drawn special token leaves the character unchanged
        inputs[r, pos] = np.where(u < 0.8, mask_id, np.where(u < 0.9, randoms, ids[r, pos]))
    return inputs, labels
