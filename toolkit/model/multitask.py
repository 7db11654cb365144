"""The multi-task model (shared encoder + named heads) and its model folder.

A model folder::

    toolkit.yaml              manifest: format/toolkit version, tasks, normalisation, max length, metrics
    encoder/                  Hugging Face model + tokenizer (AutoModel/AutoTokenizer load it alone)
    heads/<task>.safetensors  one file per head (the encoder's weights are saved once, above)
    README.md                 model card

No pickle anywhere: weights are safetensors, the manifest is YAML read with ``yaml.safe_load``.
Saving is atomic and loading verifies the folder first (checksums, paths, file types): see
:mod:`toolkit.model.folder`.

Example:
    >>> model = MultiTaskModel.load("pretrained/zh-multitask")  # doctest: +SKIP
    >>> out = model(batch, tasks=["ner"])  # one encoder pass for every task asked for  # doctest: +SKIP
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from .encoder import Encoder
from ..files import check_shapes, load_safetensors
from .folder import atomic_folder, verify
from ..heads.base import Head
from .manifest import Manifest, TaskSpec
from ..text.normalize import NormalizationConfig
from ..text.tokenization import TextTokenizer

logger = logging.getLogger(__name__)


class MultiTaskModel(nn.Module):
    """``encoder + nn.ModuleDict(heads)``: one encoder forward serves every requested head."""

    def __init__(
        self,
        encoder: Encoder,
        tokenizer: TextTokenizer,
        heads: dict[str, Head],
        normalization: NormalizationConfig | None = None,
        max_length: int = 256,
        metrics: dict[str, Any] | None = None,
        name: str = "model",
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.heads = nn.ModuleDict(heads)
        self.normalization = normalization or NormalizationConfig()
        self.max_length = min(int(max_length), encoder.max_positions)
        self.metrics = dict(metrics or {})
        self.name = name

    @classmethod
    def build(
        cls,
        encoder: Encoder | str | Path,
        tasks: dict[str, dict[str, Any]],
        normalization: NormalizationConfig | dict | None = None,
        max_length: int = 256,
        name: str = "model",
        tokenizer: TextTokenizer | None = None,
    ) -> "MultiTaskModel":
        """New model from an encoder (object or folder) and task specs.

        Example:
            >>> MultiTaskModel.build("path/to/encoder", {"ner": {"kind": "tagger", "labels": ["PER"],
            ...     "scheme": "BIO"}})  # doctest: +SKIP
        """
        if not isinstance(encoder, Encoder):
            tokenizer = tokenizer or TextTokenizer.from_pretrained(encoder)
            encoder = Encoder.from_pretrained(encoder)
        if tokenizer is None:
            raise ValueError("give the tokenizer when passing an Encoder object")
        heads = {}
        for task, raw in tasks.items():
            spec = TaskSpec.from_dict(task, raw)
            heads[task] = spec.build_head(encoder.hidden_size)
        if not isinstance(normalization, NormalizationConfig):
            normalization = NormalizationConfig.from_dict(normalization)
        return cls(encoder, tokenizer, heads, normalization, max_length, name=name)

    @property
    def tasks(self) -> list[str]:
        return list(self.heads)

    def task_kind(self, task: str) -> str:
        return self.heads[task].kind

    def forward(self, batch: dict[str, torch.Tensor], tasks: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Run the encoder once and the heads in ``tasks`` (default: all) on its output."""
        tasks = list(tasks) if tasks is not None else self.tasks
        unknown = [t for t in tasks if t not in self.heads]
        if unknown:
            raise KeyError(f"unknown tasks {unknown}; this model has {self.tasks}")
        hidden = self.encoder(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        return {t: self.heads[t](hidden, batch) for t in tasks}

    # ------------------------------------------------------------------ model folder
    def manifest(self) -> Manifest:
        tasks = {}
        for task, head in self.heads.items():
            spec = head.spec()
            tasks[task] = TaskSpec(
                name=task,
                kind=spec["kind"],
                labels=spec["labels"],
                scheme=spec.get("scheme"),
                options=spec["options"],
                weights=f"heads/{task}.safetensors",
                metrics=self.metrics.get(task, {}),
            )
        return Manifest(name=self.name, max_length=self.max_length, normalization=self.normalization, tasks=tasks)

    def save(self, path: str | Path, dtype: torch.dtype = torch.float16, card: str | None = None) -> Path:
        """Write the model folder (see module docstring) atomically; returns its path.

        Everything is written into a hidden sibling folder, the manifest (with the checksums of the
        other files) last, then swapped in (:func:`toolkit.model.folder.atomic_folder`): an interrupted save
        leaves the previous folder, never a mix. ``path`` must be new, empty or a model folder.
        ``card`` is the model card's Markdown; a short generated one is written when it is ``None``.
        """
        from safetensors.torch import save_file

        path = Path(path)
        manifest = self.manifest()
        with atomic_folder(path) as tmp:
            (tmp / "heads").mkdir(parents=True, exist_ok=True)
            self.encoder.save(tmp / manifest.encoder, dtype=dtype)
            self.tokenizer.save(tmp / manifest.encoder)
            for task, head in self.heads.items():
                state = {k: v.detach().to(dtype).contiguous() for k, v in head.state_dict().items()}
                save_file(state, str(tmp / manifest.tasks[task].weights), metadata={"task": task, "kind": head.kind})
            (tmp / "README.md").write_text(card or manifest.default_card(), encoding="utf-8")
            manifest.write(tmp)
        logger.info("saved model %s to %s", self.name, path)
        return path

    @classmethod
    def load(cls, path: str | Path, tasks: Iterable[str] | None = None, attn_implementation: str | None = None) -> "MultiTaskModel":
        """Load a model folder (only the heads in ``tasks`` when given); in eval mode, fp32.

        The folder is verified first (:func:`toolkit.model.folder.verify`): a missing, corrupted, truncated
        or out-of-folder file is a :class:`~toolkit.errors.ModelFolderError` naming it.
        """
        path = Path(path)
        manifest = Manifest.read(path)
        wanted = manifest.select(tasks)
        verify(path, manifest)
        encoder = Encoder.from_pretrained(path / manifest.encoder, attn_implementation=attn_implementation, local_files_only=True)
        tokenizer = TextTokenizer.from_pretrained(path / manifest.encoder)
        heads = {}
        for task in wanted:
            spec = manifest.tasks[task]
            head = spec.build_head(encoder.hidden_size)
            state = load_safetensors(path / spec.weights)
            expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
            check_shapes(path / spec.weights, task, expected, {k: tuple(v.shape) for k, v in state.items()})
            head.load_state_dict({k: v.float() for k, v in state.items()})
            heads[task] = head
        metrics = {t: manifest.tasks[t].metrics for t in wanted}
        model = cls(encoder, tokenizer, heads, manifest.normalization, manifest.max_length, metrics, manifest.name)
        return model.eval()


__all__ = ["MultiTaskModel"]
