"""The configurations that benchmarks/speed.py times, each built in its own child process.

* ``torch-fp32`` / ``torch-bf16`` / ``onnx-fp32`` / ``onnx-int8``: ``toolkit.load`` (bf16 = the fp32
  pipeline called under ``torch.autocast``);
* ``hf-pipeline``: ``transformers.pipeline("token-classification")`` with its defaults on the same weights;
* ``padded-256``: typical user code, batches of 32 in corpus order padded to 256, argmax.

Each builder returns a :class:`Configured`: ``many(texts)`` and ``one(text)`` are timed, ``spans``
turns outputs into ``(start, end, label)`` lists for the agreement column.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

OURS = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8")
HF_BASED = ("hf-pipeline", "padded-256")
CONFIGS = OURS + HF_BASED
PADDED_LENGTH, PADDED_BATCH = 256, 32

Spans = list[tuple[int, int, str]]


@dataclass
class Configured:
    """A loaded configuration: ``many(texts)`` and ``one(text)`` are timed, ``spans`` is not."""

    many: Callable[[list[str]], list[Any]]
    one: Callable[[str], Any]
    spans: Callable[[list[Any]], list[Spans]]
    info: dict[str, Any] = field(default_factory=dict)


def _torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def bio_spans(tokens: Iterable[tuple[int, int, int, str]]) -> Spans:
    """Naive BIO grouping of ``(token index, start, end, tag)`` for the non-O tokens, in order:
    an ``I-X`` right after a token of type X extends it, anything else starts a new span."""
    spans: Spans = []
    last = -2
    for index, start, end, tag in tokens:
        prefix, _, label = tag.partition("-")
        if prefix == "I" and index == last + 1 and spans and spans[-1][2] == label:
            spans[-1] = (spans[-1][0], end, label)
        else:
            spans.append((start, end, label or tag))
        last = index
    return spans


def build_ours(spec: dict[str, Any], config: str) -> Configured:
    """``toolkit.load`` for the torch/onnx configurations (bf16 = the fp32 pipeline under autocast)."""
    runtime = "onnx" if config.startswith("onnx") else "torch"
    if runtime == "torch":
        _torch_threads(spec["threads"])  # ONNX runs never import torch
    import toolkit

    quantize = "int8" if config == "onnx-int8" else None
    pipe = toolkit.load(spec["folder"], tasks=spec["task"], runtime=runtime, quantize=quantize, threads=spec["threads"], batch_size=spec["batch_size"])
    info: dict[str, Any] = {"call": "pipe(list_of_texts) once per repeat; pipe(text) for latency"}
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    if runtime == "torch":
        import torch

        seen: set[str] = set()
        info["emission_dtypes"] = seen  # what the tagger head's Linear returned: shows whether autocast applied
        pipe.runner.model.heads[spec["task"]].register_forward_hook(lambda _m, _i, out: seen.add(str(out.dtype).replace("torch.", "")))
        if config == "torch-bf16":
            context = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16)

    def many(texts: list[str]) -> list[Any]:
        with context():
            return pipe(texts)

    def one(text: str) -> Any:
        with context():
            return pipe(text)

    def spans(outputs: list[Any]) -> list[Spans]:
        return [[(e.start, e.end, e.label) for e in entities] for entities in outputs]

    return Configured(many, one, spans, info)


def build_hf_pipeline(spec: dict[str, Any], config: str) -> Configured:
    """``transformers.pipeline("token-classification")`` with its defaults on the converted folder."""
    _torch_threads(spec["threads"])
    from transformers import pipeline

    pipe = pipeline("token-classification", model=spec["hf_dir"], device=-1)
    info = {"call": "pipe(list_of_texts) once per repeat (default batch_size=1, aggregation_strategy='none'); pipe(text) for latency"}

    def spans(outputs: list[Any]) -> list[Spans]:
        return [bio_spans((t["index"], t["start"], t["end"], t["entity"]) for t in tokens) for tokens in outputs]

    return Configured(lambda texts: pipe(texts), pipe, spans, info)


def build_padded(spec: dict[str, Any], config: str) -> Configured:
    """What a user typically writes: fixed padding to 256, batches of 32 in corpus order, argmax."""
    _torch_threads(spec["threads"])
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec["hf_dir"])
    model = AutoModelForTokenClassification.from_pretrained(spec["hf_dir"]).eval()
    id2label = {int(k): v for k, v in model.config.id2label.items()}

    def many(texts: list[str]) -> list[Spans]:
        out = []
        for i in range(0, len(texts), PADDED_BATCH):
            enc = tokenizer(texts[i : i + PADDED_BATCH], padding="max_length", max_length=PADDED_LENGTH, truncation=True, return_offsets_mapping=True, return_tensors="pt")
            offsets = enc.pop("offset_mapping").tolist()
            with torch.no_grad():
                predicted = model(**enc).logits.argmax(-1).tolist()
            for row, offs in zip(predicted, offsets):
                tags = [(j, s, e, id2label[p]) for j, (p, (s, e)) in enumerate(zip(row, offs)) if e > s and id2label[p] != "O"]
                out.append(bio_spans(tags))
        return out

    info = {"call": f"batches of {PADDED_BATCH} in corpus order, padded to {PADDED_LENGTH}; one text per call for latency"}
    return Configured(many, lambda text: many([text])[0], lambda outputs: outputs, info)


BUILDERS: dict[str, Callable[[dict[str, Any], str], Configured]] = {
    **{c: build_ours for c in OURS},
    "hf-pipeline": build_hf_pipeline,
    "padded-256": build_padded,
}
