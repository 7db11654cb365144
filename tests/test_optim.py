"""The AdamW kernel choice (toolkit.train.optim): fused where PyTorch has it, recorded, and kept on
resume so that a checkpoint made with the foreach kernel (before fused was the default) resumes
bit-identically."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import Killed, kill_at
from toolkit.train.optim import FOREACH, FUSED, adamw


def test_fused_when_available_and_forced_foreach():
    p = torch.nn.Parameter(torch.zeros(3))
    opt, kind = adamw([p], lr=1e-3)
    assert kind == FUSED and opt.defaults["fused"]
    opt, kind = adamw([p], FOREACH, lr=1e-3)
    assert kind == FOREACH and not opt.defaults.get("fused")
    with pytest.raises(ValueError, match="unknown optimizer"):
        adamw([p], "sgd")


def test_fused_matches_foreach_closely():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(64, 8))
    b = torch.nn.Parameter(a.detach().clone())
    oa, _ = adamw([a], FUSED, lr=1e-2)
    ob, _ = adamw([b], FOREACH, lr=1e-2)
    for _ in range(5):
        for p, o in ((a, oa), (b, ob)):
            o.zero_grad()
            (p ** 2).sum().backward()
            o.step()
    assert torch.allclose(a, b, atol=1e-6)


def test_pretrain_resumes_an_old_foreach_checkpoint(tiny_encoder, tmp_path):
    """A checkpoint that does not record its optimizer kernel (made before fused AdamW) resumes with
    foreach instead of silently switching kernels, and says so in its next checkpoint."""
    from toolkit.train.pretrain import pretrain

    texts = tmp_path / "t.txt"
    texts.write_text("患者三天前出现发热咳嗽。\n北京大学医院的医生说明天检查。\n" * 20, encoding="utf-8")
    opts = dict(max_steps=6, batch_size=4, max_length=24, lr=1e-3, seed=1, log_every=1, save_every=2)

    with pytest.raises(Killed):
        pretrain(tiny_encoder, [texts], tmp_path / "run", on_step=kill_at(3), **opts)
    state_path = tmp_path / "run" / "checkpoint" / "state.json"
    meta = json.loads(state_path.read_text())
    assert meta["trainer"]["optimizer"] == FUSED and "optimizer" not in meta["trainer"]["config"]
    del meta["trainer"]["optimizer"]  # as an older checkpoint wrote it
    state_path.write_text(json.dumps(meta))
    pretrain(tiny_encoder, [texts], tmp_path / "run", resume=True, **opts)
    final = json.loads(state_path.read_text())["trainer"]
    assert final["optimizer"] == FOREACH  # it went on with foreach
    assert final["config"] == meta["trainer"]["config"]  # and kept the old settings


def test_a_checkpoint_records_the_kernel(tmp_path):
    """What loop.py and pretrain.py ask of a checkpoint before they build the optimizer."""
    from toolkit.train.optim import recorded
    from toolkit.train.state import trainer_state

    ckpt = tmp_path / "checkpoint"
    ckpt.mkdir()
    (ckpt / "state.json").write_text(json.dumps({"trainer": {"step": 4}}))
    assert recorded(trainer_state(ckpt)) == FOREACH  # before the kernel was recorded
    (ckpt / "state.json").write_text(json.dumps({"trainer": {"step": 4, "optimizer": FUSED}}))
    assert recorded(trainer_state(ckpt)) == FUSED
    assert recorded(None) is None
