"""The Hugging Face counterpart of one of our heads, on the same encoder weights (benchmarks/speed.py).

What a user would otherwise run with ``transformers.pipeline``:

* a ``tagger`` (linear emissions + CRF) becomes a ``*ForTokenClassification`` whose classifier is the
  tagger's emission layer: **exact**, its logits are checked against our emissions;
* every other head has no exact HF counterpart, so the HF model gets our encoder and a **freshly
  initialised** layer of the HF class (same encoder compute, meaningless outputs); the encoder's
  hidden states are checked against ours instead:

  - ``span`` (GlobalPointer over all start/end pairs): ``*ForTokenClassification`` over BIO tags of
    its labels, the closest HF pipeline (``"token-classification"``);
  - ``classifier`` (``[CLS]`` or mean pooling -> linear) and ``matcher`` (``[CLS]`` + mean(a) + mean(b)
    -> MLP): ``*ForSequenceClassification`` (``"text-classification"``). Even a ``[CLS]`` classifier
    is not exact: BERT's sequence classifier puts the pooler (dense + tanh) before its linear layer.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger("benchmarks.speed")

TOLERANCE = 1e-4
TOKEN, SEQUENCE = "token-classification", "text-classification"
HF_TASK = {"tagger": TOKEN, "span": TOKEN, "classifier": SEQUENCE, "matcher": SEQUENCE}


def _quiet(load):
    """Run ``load()`` with transformers' "newly initialised weights" warnings off."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return load()
    finally:
        hf_logging.set_verbosity(verbosity)


def build_hf_folder(folder: Path, task: str, out: Path) -> dict[str, Any]:
    """Save our encoder + the HF head for ``task`` as a HF model folder at ``out``.

    Returns ``{"hf_task", "exact", "labels", "head"}``: the ``transformers.pipeline`` task, whether
    the HF model computes our head's outputs exactly, its labels, and what its head is."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    from toolkit.model.manifest import Manifest
    from toolkit.text.tags import tag_set

    manifest = Manifest.read(folder)
    spec = manifest.tasks[task]
    if spec.kind not in HF_TASK:
        raise SystemExit(f"{folder}: task {task!r} is a {spec.kind} head; speed.py knows the HF counterpart of {', '.join(HF_TASK)}")
    hf_task = HF_TASK[spec.kind]
    labels = tag_set(spec.labels, spec.scheme or "BIO") if hf_task == TOKEN else list(spec.labels)
    encoder = folder / manifest.encoder
    config = AutoConfig.from_pretrained(encoder, id2label=dict(enumerate(labels)), label2id={t: i for i, t in enumerate(labels)})
    auto = AutoModelForTokenClassification if hf_task == TOKEN else AutoModelForSequenceClassification
    torch.manual_seed(0)  # the fresh layers are the same from run to run
    model = _quiet(lambda: auto.from_pretrained(encoder, config=config, dtype=torch.float32))
    exact = spec.kind == "tagger"
    if exact:
        head = load_file(str(folder / spec.weights))
        with torch.no_grad():
            model.classifier.weight.copy_(head["proj.weight"].float())
            model.classifier.bias.copy_(head["proj.bias"].float())
        what = "the tagger's emission layer"
    elif hf_task == TOKEN:
        what = (f"a freshly initialised token classifier over the BIO tags of the {spec.kind} head's labels; our head also scores "
                "every start/end pair, work the HF side skips (if anything, the comparison favours HF)")
    else:
        what = (f"a freshly initialised sequence-classification head ([CLS] -> pooler dense + tanh -> linear) instead of our {spec.kind} head "
                f"({'[CLS] + mean(a) + mean(b) -> MLP' if spec.kind == 'matcher' else spec.options.get('pooling', 'cls') + ' pooling -> linear'}): "
                "heads of a similar, small cost next to the encoder's")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(encoder).save_pretrained(out)
    return {"hf_task": hf_task, "exact": exact, "labels": labels, "head": what, "class": type(model).__name__}


def check_same_weights(folder: Path, task: str, hf_dir: Path, hf: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """Max |HF - ours| on ``texts`` (same token ids): the logits against our emissions when the
    conversion is exact, else the encoder's last hidden states. Raises above :data:`TOLERANCE`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    from toolkit.model.multitask import MultiTaskModel

    ours = MultiTaskModel.load(folder, tasks=[task]).eval()
    auto = AutoModelForTokenClassification if hf["hf_task"] == TOKEN else AutoModelForSequenceClassification
    theirs = auto.from_pretrained(hf_dir).eval()
    batch = dict(AutoTokenizer.from_pretrained(hf_dir)(texts, padding=True, truncation=True, max_length=ours.max_length, return_tensors="pt"))
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        if hf["exact"]:
            what = "logits vs our emissions"
            diff = (ours(batch, [task])[task] - theirs(**batch).logits).abs()[mask].max()
        else:
            what = "encoder hidden states"
            mine = ours.encoder(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
            diff = (mine - theirs.base_model(**batch).last_hidden_state).abs()[mask].max()
    if float(diff) > TOLERANCE:
        raise RuntimeError(f"{folder} ({task}): the HF model's {what} differ by {float(diff):.3g} (> {TOLERANCE}): not the same weights")
    logger.info("HF %s for %s (%s): max |%s diff| %.2g on %d texts", hf["class"], task, folder, what, float(diff), len(texts))
    return {"compared": what, "max_abs_diff": float(diff), "texts": len(texts)}
