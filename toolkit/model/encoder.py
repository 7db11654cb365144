"""The shared encoder: any BERT-family checkpoint in Hugging Face format.

Example:
    >>> enc = Encoder.from_pretrained("pretrained/zh-e5-small-base", num_layers=6)  # doctest: +SKIP
    >>> enc.hidden_size  # doctest: +SKIP
    384
"""
from __future__ import annotations

import contextlib

import inspect
import logging
import re
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelFileMissingError, ModelFolderError

logger = logging.getLogger(__name__)


def layer_depth(name: str, n_layers: int) -> int:
    """0 for embeddings, ``i + 1`` for transformer layer ``i``, ``n_layers + 1`` above the layers."""
    m = re.search(r"\.layers?\.(\d+)\.", name)
    if m:
        return int(m.group(1)) + 1
    return 0 if "embeddings" in name else n_layers + 1


class Encoder(nn.Module):
    """Wraps a ``transformers`` encoder model and returns its last hidden states."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        num_layers: int | None = None,
        attn_implementation: str | None = None,
        local_files_only: bool | None = None,
        random_init: bool = False,
    ) -> "Encoder":
        """Load an encoder from a model folder, or a hub id when the user has network.

        Args:
            name_or_path: a folder with ``config.json`` and weights, or a hub id such as
                ``"bert-base-chinese"``, which ``transformers`` fetches (or takes from its cache).
            num_layers: keep only the first ``num_layers`` transformer layers (faster, smaller).
            attn_implementation: ``"eager"`` for ONNX export, ``"sdpa"`` (default) otherwise.
            local_files_only: never touch the network when true (default: true for folders; a hub
                id is an explicit request to fetch, so it is false for ids).
            random_init: same architecture and vocabulary, freshly initialised weights (a baseline).
        """
        from safetensors import SafetensorError
        from transformers import AutoConfig, AutoModel

        path = Path(name_or_path)
        if local_files_only is None:
            local_files_only = path.exists()
        if path.exists() and not (path / "config.json").is_file():
            raise ModelFileMissingError(f"{path} has no config.json: it is not a Hugging Face model folder")
        kwargs = {"dtype": torch.float32, "local_files_only": local_files_only}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        try:
            config = AutoConfig.from_pretrained(str(name_or_path), local_files_only=local_files_only)
            model_class = AutoModel._model_mapping[type(config)]
            if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
                kwargs["add_pooling_layer"] = False  # the heads never use BERT's pooler
            if random_init:
                extra = {k: v for k, v in kwargs.items() if k in ("add_pooling_layer",)}
                model = model_class(config, **extra)  # constructing a model initialises its weights
            else:
                with _quiet_loading():
                    model = AutoModel.from_pretrained(str(name_or_path), **kwargs)
        except (SafetensorError, ValueError, RuntimeError) as err:
            if not path.is_dir():
                raise
            raise ModelFolderError(f"cannot load the encoder in {path} ({type(err).__name__}: {err}); its weights are "
                                   "damaged or do not match config.json: restore the folder from a good copy") from err
        except OSError as err:
            raise OSError(
                f"cannot load encoder {name_or_path!r}: give a local Hugging Face model folder, or a hub id "
                f"with network access (local_files_only=False). Original error: {err}"
            ) from err
        encoder = cls(model)
        if num_layers is not None:
            encoder.truncate(num_layers)
        return encoder

    @property
    def config(self):
        return self.model.config

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def max_positions(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 512))

    def layers(self) -> nn.ModuleList:
        """The transformer layers, first to last (for truncation and for taps on their outputs)."""
        return _layer_list(self.model)

    def truncate(self, num_layers: int) -> None:
        """Keep only the first ``num_layers`` layers (the "prune layers" recipe for speed)."""
        layers = self.layers()
        if not 1 <= num_layers <= len(layers):
            raise ValueError(f"num_layers must be between 1 and {len(layers)}, got {num_layers}")
        del layers[num_layers:]
        self.model.config.num_hidden_layers = num_layers
        logger.info("encoder truncated to %d layers", num_layers)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and getattr(self.model.config, "type_vocab_size", 0) > 1:
            kwargs["token_type_ids"] = token_type_ids
        return self.model(**kwargs).last_hidden_state

    def save(self, path: str | Path, dtype: torch.dtype = torch.float16) -> None:
        """Write a Hugging Face folder (``config.json`` + ``model.safetensors``) in ``dtype``."""
        state = {k: v.detach().to(dtype).contiguous() for k, v in self.model.state_dict().items()}
        self.model.save_pretrained(str(path), state_dict=state, safe_serialization=True)


def autocast(dtype: str, device: str | torch.device = "cpu"):
    """``torch.autocast`` for ``dtype`` (``"bf16"``: bfloat16 autocast; ``"fp32"``: disabled), the one
    definition that training (:mod:`toolkit.train.precision`) and inference (``TorchRunner``) use.

    >>> with autocast("bf16"):
    ...     torch.ones(2, 2) @ torch.ones(2, 2)
    tensor([[2., 2.],
            [2., 2.]], dtype=torch.bfloat16)
    """
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=dtype == "bf16")


def _layer_list(model: nn.Module) -> nn.ModuleList:
    for attr in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
        obj = model
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__} to truncate")


@contextlib.contextmanager
def _quiet_loading():
    """No "Loading weights" bar and load report on every ``toolkit.load`` (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
