"""The ONNX Runtime backend: the same pipelines as PyTorch, without importing torch or transformers.

:class:`OnnxRunner` implements :class:`toolkit.pipeline.Runner` over an ``InferenceSession``;
:func:`onnx_pipeline` builds the usual text / pair / multi-task pipeline from a model folder with
only numpy, ``tokenizers``, ``safetensors.numpy``, PyYAML and ``onnxruntime``: the manifest is read
here, the tokenizer from the encoder's ``tokenizer.json``, the CRF parameters
from ``heads/<task>.safetensors``. Decoding, windows and offsets are the shared numpy code, so both
runtimes return the same :class:`toolkit.pipeline.Entity` lists and label dicts.

The graph comes from :mod:`toolkit.export` (``<folder>/onnx/``, else the cache). Only when no
up-to-date export exists is one made, and that step needs torch.

Sessions are created with ``intra_op_num_threads=2`` (configurable), ``inter_op_num_threads=1``,
``ORT_ENABLE_ALL``. ``InferenceSession.run`` is thread-safe, so one pipeline serves many threads.

Example:
    >>> ner = onnx_pipeline("path/to/model-folder", tasks="ner", quantize="int8")  # doctest: +SKIP
    >>> ner("張三在北京醫院工作")  # doctest: +SKIP
    [Entity(text='張三', label='PER', start=0, end=2, score=0.97), ...]
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from .onnx_session import INSTALL_HINT, OnnxRunner, require  # noqa: F401 (re-exported: the runtime's public names)
from .decoding import LabelDecoder, TagDecoder
from .folder import check_shapes, load_safetensors, verify
from .manifest import Manifest, TaskSpec
from .tags import check_scheme, tag_set
from .tokenization import TextTokenizer

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------ manifest without torch
# ------------------------------------------------------------------ tokenizer without transformers
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


# ------------------------------------------------------------------ runner and decoders
def decoder_for(folder: str | Path, spec: TaskSpec) -> TagDecoder | LabelDecoder:
    """The numpy decoder of one head, built from the manifest and (taggers) the head's CRF weights."""
    if spec.kind == "tagger":
        path = Path(folder) / spec.weights
        state = load_safetensors(path, framework="numpy")
        scheme = check_scheme(spec.scheme or "BIO")
        tags = tag_set(spec.labels, scheme)
        names = ("transitions", "start_transitions", "end_transitions")
        shapes = dict(zip(names, [(len(tags), len(tags)), (len(tags),), (len(tags),)]))
        check_shapes(path, spec.name, {f"crf.{k}": v for k, v in shapes.items()},
                     {f"crf.{k}": tuple(state[f"crf.{k}"].shape) for k in names if f"crf.{k}" in state})
        crf = [state[f"crf.{k}"].astype(np.float32) for k in names]
        return TagDecoder(tags, scheme, *crf)
    if spec.kind in ("classifier", "matcher"):
        return LabelDecoder(spec.labels)
    raise ValueError(f"task {spec.name!r}: head kind {spec.kind!r} has no ONNX decoder yet; use runtime='torch'")


def _max_positions(encoder_dir: Path) -> int:
    config = json.loads((encoder_dir / "config.json").read_text(encoding="utf-8"))
    return int(config.get("max_position_embeddings", 512))


def onnx_pipeline(
    name_or_path: str | Path,
    tasks: str | Sequence[str] | None = None,
    quantize: Literal["int8"] | None = None,
    threads: int = 2,
    batch_size: int | None = None,
    progress: bool = False,
    export: bool = True,
    graph: str | Path | None = None,
):
    """The pipeline of :func:`toolkit.load` on ONNX Runtime (``load(..., runtime="onnx")`` calls this).

    Args:
        name_or_path: a registered name or a model folder.
        tasks: the heads to run (default: the ones the name selects, else all of the folder's).
        quantize: ``"int8"`` for the dynamically quantised graph, ``None`` for fp32.
        threads: ONNX Runtime intra-op threads (inter-op is 1).
        export: export the folder first when it has no up-to-date graph (needs torch); when false,
            a missing export is an error.
        graph: run this graph file instead of the folder's export (e.g. one quantised with other
            settings by :func:`toolkit.export.quantize_int8`); it must come from this folder.

    Example:
        >>> pipe = onnx_pipeline("path/to/model-folder", tasks=["ner", "sentiment"])  # doctest: +SKIP
        >>> pipe("张三在北京")["sentiment"]["label"]  # doctest: +SKIP
        'pos'
    """
    from .export import ensure_export, find_export
    from .pipeline import pipeline_for
    from .registry import resolve

    require("onnxruntime")
    path, selected = resolve(name_or_path)
    if tasks is not None:
        selected = [tasks] if isinstance(tasks, str) else list(tasks)
    manifest = Manifest.read(path)
    wanted = manifest.select(selected)
    verify(path, manifest)
    if graph is not None:
        graph = Path(graph)
    elif export:
        graph = ensure_export(path, quantize)
    else:
        graph = find_export(path, quantize)
        if graph is None:
            flag = " --quantize int8" if quantize else ""
            raise FileNotFoundError(f"{path} has no up-to-date ONNX export; run `toolkit export {path}{flag}` first")
    runner = OnnxRunner(graph, threads=threads)
    encoder_dir = path / manifest.encoder
    heads = {t: (manifest.tasks[t].kind, decoder_for(path, manifest.tasks[t])) for t in wanted}
    max_length = min(manifest.max_length, _max_positions(encoder_dir))
    logger.info("ONNX pipeline for %s (%s) on %s", path, ", ".join(wanted), graph)
    return pipeline_for(load_tokenizer(encoder_dir), manifest.normalization, max_length, heads, runner, batch_size, progress)
