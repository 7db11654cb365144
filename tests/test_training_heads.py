"""The heads learn: a few optimiser steps on tiny hand-written data fit it."""
from __future__ import annotations

import numpy as np
import torch

from toolkit.model.encoder import Encoder
from toolkit.model.multitask import MultiTaskModel
from toolkit.runtime.pipeline import build_pipeline
from toolkit.text.tags import spans_to_tags
from toolkit.text.tokenization import TextTokenizer

NER = [("张三在北京工作", [(0, 2, "PER"), (3, 5, "LOC")]), ("王五去上海", [(0, 2, "PER"), (3, 5, "LOC")])]
CLS = [("服务很好", 1), ("太差了", 0)]


def make_model(tiny_encoder):
    torch.manual_seed(0)
    tok = TextTokenizer.from_pretrained(tiny_encoder)
    enc = Encoder.from_pretrained(tiny_encoder)
    tasks = {
        "ner": {"kind": "tagger", "labels": ["PER", "LOC"], "scheme": "BIOES"},
        "cls": {"kind": "classifier", "labels": ["neg", "pos"], "options": {"focal_gamma": 2.0}},
    }
    return MultiTaskModel.build(enc, tasks, max_length=32, tokenizer=tok)


def batch_for(tok, texts):
    ids = [tok.with_specials(tok.encode([t])[0][0]) for t in texts]
    n = max(len(i) for i in ids)
    input_ids = torch.zeros(len(ids), n, dtype=torch.long)
    mask = torch.zeros(len(ids), n, dtype=torch.long)
    for r, i in enumerate(ids):
        input_ids[r, : len(i)] = torch.from_numpy(i)
        mask[r, : len(i)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def test_joint_training_fits_toy_data(tiny_encoder):
    model = make_model(tiny_encoder)
    tok, head = model.tokenizer, model.heads["ner"]
    nb = batch_for(tok, [t for t, _ in NER])
    tags = torch.zeros(len(NER), nb["input_ids"].shape[1], dtype=torch.long)
    for r, (text, spans) in enumerate(NER):  # one token per character in these texts
        tags[r, : len(text)] = torch.tensor([head.tags.index(t) for t in spans_to_tags(spans, len(text), "BIOES")])
    cb = batch_for(tok, [t for t, _ in CLS])
    labels = torch.tensor([y for _, y in CLS])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(60):
        out_n = model(nb, ["ner"])
        out_c = model(cb, ["cls"])
        loss = head.loss(out_n["ner"], nb, tags) + model.heads["cls"].loss(out_c["cls"], cb, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    assert losses[-1] < 0.1 * losses[0]
    pipe = build_pipeline(model)
    for text, spans in NER:
        got = pipe(text)["ner"]
        assert [(e.start, e.end, e.label) for e in got] == spans
        assert min(e.score for e in got) > 0.5
    assert [pipe(t)["cls"]["label"] for t, _ in CLS] == ["pos", "neg"]


def test_matcher_loss_decreases(tiny_encoder):
    torch.manual_seed(0)
    tok = TextTokenizer.from_pretrained(tiny_encoder)
    model = MultiTaskModel.build(Encoder.from_pretrained(tiny_encoder), {"m": {"kind": "matcher", "labels": ["0", "1"]}}, tokenizer=tok)
    pipe = build_pipeline(model)
    pairs = [("头痛", "头疼"), ("发热", "北京")]
    items = [(ids, seg) for ids, seg, _ in pipe.preprocess(pairs)]
    n = max(len(i) for i, _ in items)
    batch = {k: torch.zeros(2, n, dtype=torch.long) for k in ("input_ids", "attention_mask", "segments")}
    for r, (ids, seg) in enumerate(items):
        batch["input_ids"][r, : len(ids)] = torch.from_numpy(ids)
        batch["attention_mask"][r, : len(ids)] = 1
        batch["segments"][r, : len(ids)] = torch.from_numpy(seg)
    labels = torch.tensor([1, 0])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    first = None
    for _ in range(40):
        loss = model.heads["m"].loss(model(batch)["m"], batch, labels)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    model.eval()
    assert [r["label"] for r in pipe(pairs)] == ["1", "0"]
    assert np.isclose(sum(pipe(pairs[0])["scores"].values()), 1.0)
