"""The configurations that benchmarks/speed.py times, each built in its own child process.

* ``torch-fp32`` / ``torch-bf16`` / ``onnx-fp32`` / ``onnx-int8``: ``toolkit.load`` (bf16 = the fp32
  pipeline called under ``torch.autocast``);
* ``hf-pipeline``: ``transformers.pipeline`` with its defaults on the same encoder weights:
  ``"token-classification"`` for entity heads, ``"text-classification"`` for classifier and matcher
  heads (pairs as ``{"text": a, "text_pair": b}``);
* ``padded-256``: typical user code, batches of 32 in corpus order padded to 256, argmax.

Each builder gets the model's spec (``folder``, ``task``, ``input`` ``"text"`` or ``"pair"``,
``output`` ``"entities"`` or ``"label"``, ``hf_dir``, ``hf_task``, ``max_length`` ...) and returns a
:class:`Configured`: ``many(inputs)`` and ``one(input)`` are timed (an input is a text or a pair
``(a, b)``), ``answers`` turns outputs into comparable answers for the agreement column: a list of
``(start, end, label)`` per text for entity heads, the label for label heads.
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
Input = Any  # a text (str) or a pair (tuple of two str)


@dataclass
class Configured:
    """A loaded configuration: ``many(inputs)`` and ``one(input)`` are timed, ``answers`` is not."""

    many: Callable[[list[Input]], list[Any]]
    one: Callable[[Input], Any]
    answers: Callable[[list[Any]], list[Any]]
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
    what = "list_of_pairs" if spec["input"] == "pair" else "list_of_texts"
    info: dict[str, Any] = {"call": f"pipe({what}) once per repeat; pipe(one input) for latency"}
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    if runtime == "torch":
        import torch

        seen: set[str] = set()
        info["head_dtypes"] = seen  # what the head returned: shows whether autocast applied
        pipe.runner.model.heads[spec["task"]].register_forward_hook(lambda _m, _i, out: seen.add(str(out.dtype).replace("torch.", "")))
        if config == "torch-bf16":
            context = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16)

    def many(inputs: list[Input]) -> list[Any]:
        with context():
            return pipe(inputs)

    def one(item: Input) -> Any:
        with context():
            return pipe(item)

    def answers(outputs: list[Any]) -> list[Any]:
        if spec["output"] == "entities":
            return [[(e.start, e.end, e.label) for e in entities] for entities in outputs]
        return [r["label"] for r in outputs]

    return Configured(many, one, answers, info)


def hf_inputs(inputs: list[Input]) -> list[Any]:
    """What ``pipeline("text-classification")`` takes: texts as they are, pairs as ``{"text", "text_pair"}``."""
    return [{"text": x[0], "text_pair": x[1]} if isinstance(x, tuple) else x for x in inputs]


def build_hf_pipeline(spec: dict[str, Any], config: str) -> Configured:
    """``transformers.pipeline(spec["hf_task"])`` with its defaults on the converted folder."""
    _torch_threads(spec["threads"])
    from transformers import pipeline

    task = spec["hf_task"]
    pipe = pipeline(task, model=spec["hf_dir"], device=-1)
    if task == "token-classification":
        info = {"call": "pipe(list_of_texts) once per repeat (default batch_size=1, aggregation_strategy='none'); pipe(text) for latency"}

        def spans(outputs: list[Any]) -> list[Spans]:
            return [bio_spans((t["index"], t["start"], t["end"], t["entity"]) for t in tokens) for tokens in outputs]

        return Configured(lambda texts: pipe(texts), pipe, spans, info)

    # without truncation the pipeline fails on texts over 512 tokens; ours read the first max_length tokens
    limit = {"truncation": True, "max_length": spec["max_length"]}
    what = 'list of {"text": a, "text_pair": b}' if spec["input"] == "pair" else "list_of_texts"
    info = {"call": f"pipe({what}, truncation=True, max_length={spec['max_length']}) once per repeat (default batch_size=1, top_k=1); one input per call for latency"}

    def many(inputs: list[Input]) -> list[Any]:
        return pipe(hf_inputs(inputs), **limit)

    def one(item: Input) -> Any:
        return pipe(hf_inputs([item])[0], **limit)

    def labels(outputs: list[Any]) -> list[str]:
        return [(o[0] if isinstance(o, list) else o)["label"] for o in outputs]

    return Configured(many, one, labels, info)


def build_padded(spec: dict[str, Any], config: str) -> Configured:
    """What a user typically writes: fixed padding to 256, batches of 32 in corpus order, argmax."""
    _torch_threads(spec["threads"])
    import torch
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    tokens = spec["hf_task"] == "token-classification"
    tokenizer = AutoTokenizer.from_pretrained(spec["hf_dir"])
    model = (AutoModelForTokenClassification if tokens else AutoModelForSequenceClassification).from_pretrained(spec["hf_dir"]).eval()
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    settings = {"padding": "max_length", "max_length": PADDED_LENGTH, "truncation": True, "return_tensors": "pt"}

    def many(inputs: list[Input]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(inputs), PADDED_BATCH):
            chunk = inputs[i : i + PADDED_BATCH]
            if not tokens:
                pair = spec["input"] == "pair"
                enc = tokenizer([x[0] for x in chunk], [x[1] for x in chunk], **settings) if pair else tokenizer(chunk, **settings)
                with torch.no_grad():
                    out += [id2label[p] for p in model(**enc).logits.argmax(-1).tolist()]
                continue
            enc = tokenizer(chunk, return_offsets_mapping=True, **settings)
            offsets = enc.pop("offset_mapping").tolist()
            with torch.no_grad():
                predicted = model(**enc).logits.argmax(-1).tolist()
            for row, offs in zip(predicted, offsets):
                tags = [(j, s, e, id2label[p]) for j, (p, (s, e)) in enumerate(zip(row, offs)) if e > s and id2label[p] != "O"]
                out.append(bio_spans(tags))
        return out

    info = {"call": f"batches of {PADDED_BATCH} in corpus order, padded to {PADDED_LENGTH}; one input per call for latency"}
    return Configured(many, lambda item: many([item])[0], lambda outputs: outputs, info)


BUILDERS: dict[str, Callable[[dict[str, Any], str], Configured]] = {
    **{c: build_ours for c in OURS},
    "hf-pipeline": build_hf_pipeline,
    "padded-256": build_padded,
}
