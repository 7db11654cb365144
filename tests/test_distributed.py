"""Data-parallel training under torchrun (gloo, 2 CPU processes) on the tiny model.

A 2-process run must train like a 1-process run with the same global batch (same loss curve up to
float rounding; dropout is switched off so the runs are comparable), rank 0 alone writes, every rank
stops at the same step, and a 2-process checkpoint resumes.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from toolkit.train import distributed
from toolkit.train.recipe import Recipe
from toolkit.train.loop import train

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

NAMES = "张三 李四 王五 赵六 刘七".split()
PLACES = "北京 上海 广州 深圳".split()
CLS = "text\tlabel\n服务很好\tpos\n太差了\tneg\n很好很好\tpos\n差\tneg\n真的很好\tpos\n"
STEPS, EVAL_EVERY = 10, 5


def _bio(path: Path) -> Path:
    """Five sentences ``NAME在PLACE``: with batch_size 4 the last batch of an epoch has one row,
    so one rank gets an empty shard."""
    lines = []
    for i, name in enumerate(NAMES):
        place = PLACES[i % len(PLACES)]
        tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
        lines += [f"{c} {t}" for c, t in zip(name + "在" + place, tags)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_encoder) -> dict:
    """An encoder without dropout, the data and a recipe writer."""
    root = tmp_path_factory.mktemp("dist")
    encoder = root / "encoder"
    shutil.copytree(tiny_encoder, encoder)
    config = json.loads((encoder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (encoder / "config.json").write_text(json.dumps(config))
    (root / "cls.tsv").write_text(CLS, encoding="utf-8")
    return {"root": root, "encoder": encoder, "ner": _bio(root / "ner.bio"), "cls": root / "cls.tsv"}


def _recipe(setup: dict, name: str, **train) -> Path:
    root = setup["root"]
    recipe = {
        "name": name,
        "encoder": str(setup["encoder"]),
        "max_length": 16,
        "out": str(root / name),
        "tasks": {
            "ner": {"kind": "tagger", "scheme": "BIO", "options": {"dropout": 0.0},
                    "train": {"path": str(setup["ner"]), "format": "columns"}, "dev": {"path": str(setup["ner"]), "format": "columns"}},
            "cls": {"kind": "classifier", "options": {"dropout": 0.0},
                    "train": {"path": str(setup["cls"]), "format": "table-cls"}, "dev": {"path": str(setup["cls"]), "format": "table-cls"}},
        },
        "train": {"max_steps": STEPS, "batch_size": 4, "lr": 3e-3, "head_lr": 1e-2, "eval_every": EVAL_EVERY, "ema": 0.9,
                  "patience": None, "warmup": 2, "diag_every": 3, "tensorboard": False, **train},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, nproc: int = 2, timeout: float = 120) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node N -m toolkit.cli ARGS`` on loopback; its process group is killed on timeout."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "toolkit.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun timed out after {timeout}s:\n{err[-3000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{err[-4000:]}"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _log(run: Path) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(x) for x in (run / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if "step" in r], [r["eval"] for r in rows if "eval" in r]


def _same_curve(a: list[dict], b: list[dict]) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):
        assert x["loss"].keys() == y["loss"].keys(), (x, y)  # the same task sampled at every step
        for task in x["loss"]:
            assert x["loss"][task] == pytest.approx(y["loss"][task], rel=1e-4, abs=2e-4), (x["step"], task)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-3, abs=2e-4), x["step"]


@pytest.fixture(scope="module")
def runs(setup) -> dict:
    """The same recipe trained by 2 processes (torchrun) and by 1 process (in this one)."""
    two = _recipe(setup, "two")
    result = torchrun("train", str(two), "--no-progress")
    one = _recipe(setup, "one")
    train(Recipe.from_yaml(one), progress=False)
    return {"two": setup["root"] / "two", "one": setup["root"] / "one", "two_recipe": two, "one_recipe": one, "stdout": result.stdout}


def test_shard_and_loss_share_without_torchrun():
    assert distributed.world_size() == 1 and distributed.is_main()
    assert distributed.shard(["a", "b"]) == (["a", "b"], 1.0)
    assert distributed.on_main(lambda: 3) == 3


def test_two_processes_follow_the_one_process_loss_curve(runs):
    steps2, evals2 = _log(runs["two"])
    steps1, evals1 = _log(runs["one"])
    assert len(steps1) == STEPS
    _same_curve(steps2, steps1)
    assert [e["mean"] for e in evals2] == pytest.approx([e["mean"] for e in evals1], abs=1e-3)


def test_rank_zero_alone_writes_and_the_model_loads(runs):
    import toolkit

    steps, evals = _log(runs["two"])
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))  # each row once: one writer
    assert [e["step"] for e in evals] == [EVAL_EVERY, STEPS]
    assert "grad_layers" in steps[2] and "label_entropy" in steps[2]
    summary = json.loads((runs["two"] / "summary.json").read_text(encoding="utf-8"))
    assert summary["steps"] == STEPS and summary["stopped_by"] == "steps"
    assert runs["stdout"].count('"stopped_by"') == 2  # both ranks finished the run
    out = toolkit.load(str(runs["two"] / "model"))("张三在北京")
    assert {"ner", "cls"} <= set(out)


def test_resume_from_a_two_process_checkpoint(runs):
    more = STEPS + 4
    for key in ("two_recipe", "one_recipe"):
        recipe = yaml.safe_load(runs[key].read_text(encoding="utf-8"))
        recipe["train"]["max_steps"] = more
        runs[key].write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    torchrun("train", str(runs["two_recipe"]), "--resume", "--no-progress")
    train(Recipe.from_yaml(runs["one_recipe"]), resume=True, progress=False)
    summary = json.loads((runs["two"] / "summary.json").read_text(encoding="utf-8"))
    assert summary["resumed_from"] == STEPS and summary["steps"] == more
    steps2, _ = _log(runs["two"])
    steps1, _ = _log(runs["one"])
    assert [r["step"] for r in steps2] == list(range(1, more + 1))
    _same_curve(steps2, steps1)


def test_every_rank_stops_early_at_the_same_step(setup):
    # learning rates too small to change a prediction: the dev score never improves after the first evaluation
    recipe = _recipe(setup, "early", max_steps=40, eval_every=1, patience=1, lr=1e-12, head_lr=1e-12, ema=None)
    result = torchrun("train", str(recipe), "--no-progress")
    assert result.stdout.count('"early stopping"') == 2  # both ranks stopped, then exited
    summary = json.loads((setup["root"] / "early" / "summary.json").read_text(encoding="utf-8"))
    assert summary["steps"] == 2 and summary["stopped_by"] == "early stopping"


def test_finetune_command_runs_under_torchrun(setup, tmp_path):
    import toolkit

    out = tmp_path / "ner-model"
    torchrun("train", "ner", "--train", str(setup["ner"]), "--dev", str(setup["ner"]), "--from", str(setup["encoder"]),
             "--out", str(out), "--epochs", "2", "--batch-size", "4", "--no-progress")
    assert json.loads((tmp_path / "ner-model.run" / "finetune.json").read_text(encoding="utf-8"))["steps"] > 0
    assert all(e.label in ("PER", "LOC") for e in toolkit.load(str(out))("张三在北京"))  # one task: a list of entities
