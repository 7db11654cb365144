"""The model bundle: everything a pipeline needs except the runner, built once and shared by both runtimes.

A :class:`Bundle` holds the model's name, tokenizer, normalisation, max length and, per task, its
head kind (:mod:`toolkit.kinds`) and numpy decoder. It is read from a model folder without torch
or transformers (:meth:`Bundle.from_folder`: the manifest, ``encoder/tokenizer.json`` through
``tokenizers``, the decoders' weights through ``safetensors.numpy``), or taken from a live
:class:`~toolkit.model.multitask.MultiTaskModel` after training (:meth:`Bundle.from_model`). A runtime is then
only "padded numpy batch in, arrays out" (:class:`toolkit.runtime.pipeline.Runner`).

Example:
    >>> bundle = Bundle.from_folder("pretrained/zh-multitask", ["ner_medical"])  # doctest: +SKIP
    >>> bundle.kinds["ner_medical"].name  # doctest: +SKIP
    'tagger'
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .. import kinds as kinds_registry
from ..text.inputs import check_max_length
from ..kinds import HeadKind
from ..text.normalize import NormalizationConfig
from ..text.tokenization import TextTokenizer

logger = logging.getLogger(__name__)


class FileTokenizer:
    """The part of a Hugging Face fast tokenizer that :class:`TextTokenizer` uses, read from the
    encoder folder's ``tokenizer.json`` with ``tokenizers`` alone (``transformers`` imports torch).

    Example:
        >>> tok = TextTokenizer(FileTokenizer("path/to/model-folder/encoder"))  # doctest: +SKIP
    """

    is_fast = True
    FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
    SPECIALS = ("cls", "sep", "pad", "unk", "bos", "eos", "mask")

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.backend_tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        config: dict[str, Any] = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the config wins
            if (self.folder / name).is_file():
                config.update(json.loads((self.folder / name).read_text(encoding="utf-8")))
        for special in self.SPECIALS:
            token = config.get(f"{special}_token")
            if isinstance(token, dict):
                token = token.get("content")
            token_id = self.backend_tokenizer.token_to_id(token) if isinstance(token, str) else None
            setattr(self, f"{special}_token", token)
            setattr(self, f"{special}_token_id", token_id)

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self.backend_tokenizer.get_vocab(with_added_tokens=True)

    def save_pretrained(self, path: str | Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        for name in self.FILES:
            if (self.folder / name).is_file():
                shutil.copyfile(self.folder / name, Path(path) / name)


def load_tokenizer(encoder_dir: str | Path) -> TextTokenizer:
    """The encoder's tokenizer, from ``tokenizer.json`` when there is one (no torch), else through
    ``transformers`` (which imports torch)."""
    encoder_dir = Path(encoder_dir)
    if (encoder_dir / "tokenizer.json").is_file():
        return TextTokenizer(FileTokenizer(encoder_dir))
    logger.warning("%s has no tokenizer.json: loading the tokenizer through transformers (imports torch)", encoder_dir)
    return TextTokenizer.from_pretrained(encoder_dir)


def max_positions(encoder_dir: str | Path) -> int:
    """The encoder's ``max_position_embeddings`` from its ``config.json`` (512 when absent)."""
    config = json.loads((Path(encoder_dir) / "config.json").read_text(encoding="utf-8"))
    return int(config.get("max_position_embeddings", 512))


@dataclass
class Bundle:
    """Name, tokenizer, normalisation, max length and the selected tasks' kinds and decoders."""

    name: str
    tokenizer: TextTokenizer
    normalization: NormalizationConfig
    max_length: int
    kinds: dict[str, HeadKind]
    decoders: dict[str, Any]

    def __post_init__(self) -> None:
        self.max_length = check_max_length(self.max_length)

    @property
    def tasks(self) -> list[str]:
        return list(self.kinds)

    @classmethod
    def of(cls, tokenizer: TextTokenizer, normalization: NormalizationConfig, max_length: int, heads: dict[str, tuple[str, Any]], name: str = "") -> "Bundle":
        """A bundle from parts: ``heads`` is ``{task: (kind name, decoder)}``."""
        return cls(name, tokenizer, normalization, max_length, {t: kinds_registry.get(k) for t, (k, _) in heads.items()}, {t: d for t, (_, d) in heads.items()})

    @classmethod
    def from_folder(cls, path: str | Path, tasks: Sequence[str] | None = None, verified: bool = False) -> "Bundle":
        """The bundle of ``tasks`` (default: all) of a model folder, read without torch. The folder
        is verified first (checksums, paths, file types) unless the caller just did."""
        from ..files import load_safetensors
        from ..model.folder import verify
        from ..model.manifest import Manifest

        path = Path(path)
        manifest = Manifest.read(path)
        wanted = manifest.select(tasks)
        if not verified:
            verify(path, manifest)
        encoder_dir = path / manifest.encoder
        found: dict[str, HeadKind] = {}
        decoders: dict[str, Any] = {}
        for t in wanted:
            spec = manifest.tasks[t]
            found[t] = kinds_registry.get(spec.kind)
            weights = path / spec.weights
            decoders[t] = found[t].decoder(spec, lambda w=weights: load_safetensors(w, framework="numpy"), str(weights))
        max_length = min(manifest.max_length, max_positions(encoder_dir))
        return cls(manifest.name, load_tokenizer(encoder_dir), manifest.normalization, max_length, found, decoders)

    @classmethod
    def from_model(cls, model: Any, tasks: Sequence[str] | None = None) -> "Bundle":
        """The bundle of a live :class:`~toolkit.model.multitask.MultiTaskModel` (e.g. during training)."""
        tasks = list(tasks) if tasks is not None else model.tasks
        specs = model.manifest().tasks
        found = {t: kinds_registry.get(specs[t].kind) for t in tasks}
        decoders = {}
        for t in tasks:
            head = model.heads[t]
            decoders[t] = found[t].decoder(specs[t], lambda h=head: {k: v.detach().float().cpu().numpy() for k, v in h.state_dict().items()}, f"head {t!r}")
        return cls(model.name, model.tokenizer, model.normalization, model.max_length, found, decoders)

    def select(self, tasks: Sequence[str]) -> "Bundle":
        """The same bundle restricted to ``tasks``."""
        return Bundle(self.name, self.tokenizer, self.normalization, self.max_length, {t: self.kinds[t] for t in tasks}, {t: self.decoders[t] for t in tasks})
