"""The training dtype chosen at run time (toolkit.train.precision), bf16 autocast keeping the losses
fp32, token-budget batches, and the --dtype flag. The measurement and /proc/cpuinfo are mocked:
nothing here depends on the CPU the tests run on."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from toolkit.train import precision
from toolkit.train.batching import TaskStream, length_batches
from toolkit.train.recipe import TaskData, TrainSettings
from conftest import Killed, crash_after_first_checkpoint, kill_at, write_corpora

AMX = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu sse avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n"
ZEN = "processor\t: 0\nmodel name\t: AMD EPYC 9B45\nflags\t\t: fpu sse avx2 fma avx512f avx512_vnni avx512_bf16\n"
NO_BF16 = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse avx2 fma avx512f avx512_vnni\n"


@pytest.fixture(autouse=True)
def clean_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLKIT_HOME", str(tmp_path / "home"))  # a fresh measurement cache
    monkeypatch.delenv(precision.ENV, raising=False)


def fake_cpu(monkeypatch, tmp_path, text: str) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(text, encoding="utf-8")
    real = precision.cpu_info
    monkeypatch.setattr(precision, "cpu_info", lambda p=path: real(p))


def fake_measure(monkeypatch, fp32: float, bf16: float) -> list[int]:
    calls: list[int] = []

    def measure(hidden_size, device="cpu", **kw):
        calls.append(hidden_size)
        return {"fp32": fp32, "bf16": bf16}

    monkeypatch.setattr(precision, "measure", measure)
    return calls


def test_cpu_info_reads_model_and_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(AMX + "\nprocessor\t: 1\nmodel name\t: other\n", encoding="utf-8")
    info = precision.cpu_info(path)
    assert info.model == "Intel(R) Xeon(R) Platinum 8480+" and info.known and info.bf16_native
    assert {"amx_bf16", "avx512_bf16", "avx512f", "avx2"} <= info.flags and "fpu" not in info.flags
    assert "no AMX" not in info.describe()
    assert not precision.cpu_info(tmp_path / "missing").known


@pytest.mark.parametrize("cpu, fp32, bf16, expected", [
    (AMX, 0.040, 0.010, "bf16"),   # AMX: bf16 ~4x
    (ZEN, 0.020, 0.040, "fp32"),   # bf16 instructions but measured slower
    (ZEN, 0.020, 0.019, "fp32"),   # faster, but by less than MARGIN
])
def test_auto_follows_the_measurement(monkeypatch, tmp_path, cpu, fp32, bf16, expected):
    fake_cpu(monkeypatch, tmp_path, cpu)
    calls = fake_measure(monkeypatch, fp32, bf16)
    dtype, reason = precision.choose_dtype("auto", "cpu", hidden_size=384)
    assert dtype == expected and calls == [384]
    assert reason.startswith("measured on") and "ms" in reason


def test_no_native_bf16_means_fp32_without_measuring(monkeypatch, tmp_path):
    fake_cpu(monkeypatch, tmp_path, NO_BF16)
    calls = fake_measure(monkeypatch, 1.0, 0.001)
    dtype, reason = precision.choose_dtype("auto", "cpu", hidden_size=384)
    assert (dtype, calls) == ("fp32", []) and "no native bf16" in reason and "no AMX" in reason


def test_narrow_model_means_fp32_without_measuring(monkeypatch, tmp_path):
    fake_cpu(monkeypatch, tmp_path, AMX)
    calls = fake_measure(monkeypatch, 1.0, 0.001)
    assert precision.choose_dtype("auto", "cpu", hidden_size=32)[0] == "fp32" and calls == []


def test_second_choice_reads_the_cache(monkeypatch, tmp_path):
    fake_cpu(monkeypatch, tmp_path, AMX)
    calls = fake_measure(monkeypatch, 0.04, 0.01)
    first = precision.choose_dtype("auto", "cpu", hidden_size=384)
    second = precision.choose_dtype("auto", "cpu", hidden_size=384)
    assert first[0] == second[0] == "bf16" and calls == [384]
    path = precision.cache_file()
    assert path.parent == tmp_path / "home" / "precision" and "cached measurement" in second[1] and str(path) in second[1]
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["cpu"] == "Intel(R) Xeon(R) Platinum 8480+" and "amx_bf16" in data["flags"] and data["torch"] == torch.__version__
    precision.choose_dtype("auto", "cpu", hidden_size=768)  # another width is measured
    assert calls == [384, 768]


def test_another_cpu_does_not_reuse_the_cache(monkeypatch, tmp_path):
    fake_cpu(monkeypatch, tmp_path, AMX)
    fake_measure(monkeypatch, 0.04, 0.01)
    amx_file = precision.cache_file()
    precision.choose_dtype("auto", "cpu", hidden_size=384)
    fake_cpu(monkeypatch, tmp_path, ZEN)
    calls = fake_measure(monkeypatch, 0.02, 0.04)
    assert precision.choose_dtype("auto", "cpu", hidden_size=384)[0] == "fp32" and calls == [384]
    assert precision.cache_file() != amx_file


@pytest.mark.parametrize("setting", ["fp32", "bf16"])
def test_forced_settings_do_not_measure(monkeypatch, setting):
    calls = fake_measure(monkeypatch, 1.0, 1.0)
    assert precision.choose_dtype(setting, "cpu") == (setting, f"forced (dtype: {setting})") and calls == []


def test_environment_forces_auto(monkeypatch):
    calls = fake_measure(monkeypatch, 1.0, 1.0)
    monkeypatch.setenv(precision.ENV, "bf16")
    assert precision.choose_dtype("auto", "cpu", hidden_size=384)[0] == "bf16" and calls == []
    assert precision.choose_dtype("fp32", "cpu")[0] == "fp32"  # an explicit setting wins
    monkeypatch.setenv(precision.ENV, "fp16")
    with pytest.raises(ValueError, match="TOOLKIT_DTYPE"):
        precision.choose_dtype("auto", "cpu")


def test_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        precision.choose_dtype("fp16", "cpu")


@pytest.mark.parametrize("supported, expected", [(True, "bf16"), (False, "fp32")])
def test_cuda_asks_the_device(monkeypatch, supported, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    calls = fake_measure(monkeypatch, 1.0, 1.0)
    assert precision.choose_dtype("auto", "cuda:0")[0] == expected and calls == []


def test_measure_is_short_and_leaves_the_random_state_alone():
    state = torch.get_rng_state()
    seconds = precision.measure(32, budget_s=0.01)
    assert set(seconds) == {"fp32", "bf16"} and all(0 < s < 1 for s in seconds.values())
    assert torch.equal(state, torch.get_rng_state())


def test_settings_fold_in_the_deprecated_bf16():
    assert TrainSettings().precision() == "auto"
    assert TrainSettings(bf16=True).precision() == "bf16" and TrainSettings(bf16=False).precision() == "fp32"
    assert TrainSettings(bf16=True, dtype="bf16").precision() == "bf16"
    with pytest.raises(ValueError, match="contradicts"):
        TrainSettings(bf16=True, dtype="fp32").precision()
    with pytest.raises(ValueError, match="dtype must be"):
        TrainSettings(dtype="half").precision()


# ---------------------------------------------------------------- bf16 autocast keeps the losses fp32

HEADS = {
    "tagger": {"kind": "tagger", "labels": ["PER", "LOC"], "scheme": "BIO"},
    "classifier": {"kind": "classifier", "labels": ["neg", "pos"], "options": {"pooling": "mean"}},
    "matcher": {"kind": "matcher", "labels": ["0", "1"]},
    "span": {"kind": "span", "labels": ["PER", "LOC"], "options": {"head_size": 8, "max_span": 4}},
}


@pytest.fixture(scope="module")
def four_heads(tiny_encoder):
    from toolkit.model.multitask import MultiTaskModel

    torch.manual_seed(0)
    return MultiTaskModel.build(tiny_encoder, HEADS, max_length=16).eval()


def _batch_and_targets(task: str) -> tuple[dict, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(200, 300, (2, 8), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "segments": torch.tensor([[0, 1, 1, 1, 0, 2, 2, 0]] * 2)}
    targets = {
        "tagger": torch.randint(0, 5, (2, 6), generator=g),  # BIO over 2 labels: 5 tags, 6 word tokens
        "classifier": torch.tensor([0, 1]),
        "matcher": torch.tensor([1, 0]),
        "span": (torch.rand(2, 2, 8, 8, generator=g) > 0.9).long().triu(),
    }[task]
    return batch, targets


@pytest.mark.parametrize("task", list(HEADS))
def test_bf16_autocast_keeps_each_loss_fp32(four_heads, task):
    batch, targets = _batch_and_targets(task)
    head = four_heads.heads[task]
    with torch.no_grad():
        reference = head.loss(four_heads(batch, [task])[task], batch, targets)
        with precision.autocast("bf16"):  # the loss inside autocast too: the worst case
            output = four_heads(batch, [task])[task]
            loss = head.loss(output, batch, targets)
    assert output.dtype == torch.bfloat16  # autocast was on
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(reference.item(), rel=0.05, abs=0.05)


# ---------------------------------------------------------------- token-budget batches

def _features(n: int = 300, seed: int = 0) -> list:
    lengths = np.random.default_rng(seed).integers(3, 120, n)
    return [SimpleNamespace(ids=[0] * int(k)) for k in lengths]


def _padded(features, batches) -> int:
    return sum(len(b) * max(len(features[i].ids) for i in b) for b in batches)


def _old_length_batches(features, batch_size, rng, bucket=50):
    """length_batches as it was before max_tokens and length_pool: the default must not change."""
    order = rng.permutation(len(features))
    batches = []
    chunk = batch_size * bucket
    for i in range(0, len(order), chunk):
        part = sorted(order[i : i + chunk], key=lambda j: len(features[j].ids))
        batches += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def test_default_batches_are_unchanged():
    feats = _features()
    new = length_batches(feats, 16, np.random.default_rng(5), bucket=4)
    old = _old_length_batches(feats, 16, np.random.default_rng(5), bucket=4)
    assert [list(map(int, b)) for b in new] == [list(map(int, b)) for b in old]


@pytest.mark.parametrize("pool", [0, 2, 50])
def test_token_budget_is_kept_and_every_sequence_comes_once(pool):
    feats = _features()
    batches = length_batches(feats, 16, np.random.default_rng(0), bucket=pool, max_tokens=400)
    for b in batches:
        longest = max(len(feats[i].ids) for i in b)
        assert len(b) <= 16 and (len(b) * longest <= 400 or len(b) == 1)
    assert sorted(int(i) for b in batches for i in b) == list(range(len(feats)))


def test_a_sequence_longer_than_the_budget_trains_alone():
    feats = [SimpleNamespace(ids=[0] * n) for n in (5, 50, 6)]
    batches = length_batches(feats, 8, np.random.default_rng(0), max_tokens=20)
    assert sorted(sorted(map(int, b)) for b in batches) == [[0, 2], [1]]


def test_sorting_pools_reduce_padding():
    feats = _features(600)
    unsorted = length_batches(feats, 16, np.random.default_rng(0), bucket=0)
    pooled = length_batches(feats, 16, np.random.default_rng(0), bucket=50)
    real = sum(len(f.ids) for f in feats)
    assert _padded(feats, pooled) < 0.8 * _padded(feats, unsorted) and _padded(feats, pooled) >= real


def test_task_stream_covers_an_epoch_under_a_budget():
    feats = _features(100)
    stream = TaskStream(TaskData(feats, []), 8, np.random.default_rng(0), max_tokens=256, pool=3)
    n = stream.batches_per_epoch()
    seen = [id(f) for _ in range(n) for f in stream.next()]
    assert stream.epoch == 1 and not stream.queue and sorted(seen) == sorted(id(f) for f in feats)


# ---------------------------------------------------------------- flags and resume

def test_train_flags_become_settings():
    from toolkit.cli import build_parser
    from toolkit.train.diagnostics import train_settings

    parser = build_parser()
    args = parser.parse_args(["train", "recipe.yaml", "--dtype", "bf16", "--max-tokens", "2048"])
    settings = train_settings(args)
    assert settings["dtype"] == "bf16" and settings["max_tokens"] == 2048 and settings["bf16"] is None
    assert "dtype" not in train_settings(parser.parse_args(["train", "recipe.yaml"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "recipe.yaml", "--dtype", "fp16"])
    from dataclasses import replace

    fp32 = train_settings(parser.parse_args(["train", "recipe.yaml", "--dtype", "fp32"]))
    assert replace(TrainSettings(bf16=True), **fp32).precision() == "fp32"  # --dtype replaces a recipe's deprecated bf16
    assert parser.parse_args(["pretrain", "--out", "r", "--dtype", "fp32"]).dtype == "fp32"
    assert parser.parse_args(["pretrain", "--out", "r"]).dtype == "auto"


NER = [{"text": "张三在北京工作", "spans": [{"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 5, "label": "LOC"}]},
       {"text": "王五去上海", "spans": [{"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 5, "label": "LOC"}]}]


def test_resume_keeps_the_recorded_dtype(tmp_path, tiny_encoder, monkeypatch):
    """auto chose bf16 (here through $TOOLKIT_DTYPE); the resumed run neither measures nor follows a
    changed environment: it keeps bf16 and ends bit for bit like the uninterrupted run."""
    from safetensors.torch import load_file

    import toolkit.train.loop as training
    from toolkit.train.recipe import Recipe

    ner, cls = write_corpora(tmp_path, NER)
    data = {"name": "dtype", "encoder": str(tiny_encoder), "max_length": 16, "out": str(tmp_path / "straight"),
            "tasks": {"ner": {"kind": "tagger", "train": {"path": str(ner), "format": "json-spans"}},
                      "cls": {"kind": "classifier", "train": {"path": str(cls), "format": "table-cls"}}},
            "train": {"max_steps": 8, "batch_size": 2, "lr": 3e-3, "eval_every": 4, "warmup": 2, "diag_every": 0, "tensorboard": False, "max_tokens": 24}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv(precision.ENV, "bf16")
    straight = training.train(Recipe.from_yaml(path), progress=False)
    assert straight["dtype"] == "bf16" and "TOOLKIT_DTYPE" in straight["dtype_reason"]

    crashed = Recipe.from_yaml(path)
    crashed.out = str(tmp_path / "crashed")
    crash_after_first_checkpoint(monkeypatch, crashed)
    monkeypatch.setenv(precision.ENV, "fp32")
    monkeypatch.setattr(precision, "measure", lambda *a, **k: pytest.fail("a resumed run must not measure"))
    resumed = training.train(crashed, resume=True, progress=False)
    assert resumed["dtype"] == "bf16" and resumed["dtype_reason"] == "recorded in the checkpoint" and resumed["resumed_from"] == 4
    a = load_file(str(tmp_path / "straight" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "crashed" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretrain_resume_keeps_the_recorded_dtype(tmp_path, tiny_encoder, monkeypatch):
    from toolkit.train.pretrain import pretrain

    texts = tmp_path / "texts.txt"
    texts.write_text("患者三天前出现发热咳嗽。\n张三在北京的医院工作。\n" * 4, encoding="utf-8")
    opts = dict(max_steps=4, batch_size=2, max_length=16, seed=1, log_every=1, save_every=2)

    kill = kill_at(2)

    with pytest.raises(Killed):
        pretrain(tiny_encoder, [texts], tmp_path / "run", dtype="bf16", on_step=kill, **opts)
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text(encoding="utf-8"))
    assert state["trainer"]["dtype"] == "bf16"
    record = pretrain(tiny_encoder, [texts], tmp_path / "run", resume=True, **opts)
    assert record["step"] == 4 and record["dtype"] == "bf16" and np.isfinite(record["loss"])
