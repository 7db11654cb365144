"""The GPU job (toolkit.train.gpu_job): pack here, run there, unpack here, all on the CPU with the
tiny encoder; the run side is checked in a process where jieba, opencc and pytorch-crf (absent on the
GPU machine) cannot be imported. With distillation, the job carries a tiny teacher (test_distill's)
pruned to the corpus, its layers shared with a student built from it. The CUDA tests skip without a GPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import Killed, kill_at
from toolkit.train.gpu_job import run_job, unpack
from toolkit.train.gpu_pack import materialize, pack
from toolkit.train.shards import SHARD_BYTES, load_shards, save_shards

TEXTS = [
    "患者三天前出现发热咳嗽，既往糖尿病史。",
    "北京大学医院的医生说明天检查血压。",
    "上海银行公司在广州和深圳都有中心。",
    "头痛腹泻呕吐，诊断为感冒，治疗后好转。",
]
REPO = Path(__file__).resolve().parents[1]
BLOCKED = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("jieba", "opencc", "torchcrf"):
            raise ImportError(name + " is not on the GPU machine")
sys.meta_path.insert(0, Blocked())
from toolkit.train.gpu_job import main
code = main(sys.argv[1:])
assert not {"jieba", "opencc", "torchcrf"} & set(sys.modules), "the run imported jieba, opencc or torchcrf"
raise SystemExit(code)
"""


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gtexts") / "texts.txt"
    path.write_text("\n".join(TEXTS * 5) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def job(tiny_encoder, text_file, tmp_path_factory):
    from toolkit.cli import main

    out = tmp_path_factory.mktemp("job") / "gpu_job"
    code = main(["gpu-job", "pack", "--encoder", str(tiny_encoder), "--text", str(text_file), "--out", str(out),
                 "--batch-size", "4", "--max-length", "24", "--lr", "1e-3", "--log-every", "1", "--save-every", "2"])
    assert code == 0
    return out


def test_pack_holds_the_data_and_a_float16_encoder(job, tiny_encoder, text_file, tmp_path):
    from toolkit.text.tokenization import TextTokenizer
    from toolkit.train.mlm_data import data_sources, prepare_data

    spec = json.loads((job / "job.json").read_text())
    assert spec["train"]["batch_size"] == 4 and spec["train"]["max_steps"] == "auto"
    assert (job / "encoder" / "tokenizer.json").is_file() and (job / "data" / "ids.npy.xz").is_file()
    tok = TextTokenizer.from_pretrained(tiny_encoder)
    ids, words = prepare_data(tmp_path, lambda: text_file.read_text(encoding="utf-8").splitlines(),
                              data_sources([text_file], [], tok), tok)
    enc, got_ids, got_words, _ = materialize(job, tmp_path / "work")
    assert np.array_equal(got_ids, ids) and np.array_equal(got_words, words) and got_ids.dtype == np.int32
    from safetensors.torch import load_file

    assert {v.dtype for v in load_file(str(enc / "model.safetensors")).values()} == {__import__("torch").float16}


def test_pack_limits(tiny_encoder, text_file, tmp_path):
    summary = pack(tiny_encoder, [text_file], tmp_path / "small", max_tokens=60)
    spec = json.loads((tmp_path / "small" / "job.json").read_text())
    assert 0 < summary["tokens"] <= 60 and spec["data"]["sources"]["max_tokens"] == 60
    enc, ids, _, _ = materialize(tmp_path / "small", tmp_path / "w")
    assert ids[-1] == 3  # cut after a [SEP] (id 3 in the tiny vocabulary): whole texts only
    with pytest.raises(ValueError, match="limit-mib"):
        pack(tiny_encoder, [text_file], tmp_path / "big", limit_mib=0.01)
    assert not (tmp_path / "big").exists()
    with pytest.raises(ValueError, match="unknown training settings"):
        pack(tiny_encoder, [text_file], tmp_path / "x", settings={"bach_size": 3})


def test_shards_round_trip(tmp_path):
    import torch

    state = {f"w{i}": torch.randn(50, 40) for i in range(6)}
    paths = save_shards(state, tmp_path / "r", max_bytes=20_000)
    assert len(paths) == 6 and all(p.stat().st_size <= 20_000 for p in paths)
    index = json.loads((tmp_path / "r" / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == 6 * 50 * 40 * 4
    back = load_shards(tmp_path / "r")
    assert all(torch.equal(back[k], state[k]) for k in state)
    paths[2].unlink()
    with pytest.raises(FileNotFoundError):
        load_shards(tmp_path / "r")
    with pytest.raises(ValueError, match="shard size"):
        save_shards({"big": torch.zeros(10_000)}, tmp_path / "b", max_bytes=20_000)


def test_run_without_jieba_then_unpack(job, tiny_encoder, tmp_path):
    import torch
    from safetensors.torch import load_file

    from toolkit.model.encoder import Encoder
    from toolkit.train.pretrain import pretrain

    result, work = tmp_path / "OUT" / "result", tmp_path / "work"
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", BLOCKED, "run", "--job", str(job), "--out", str(result), "--minutes", "2",
                           "--device", "cpu", "--max-steps", "4", "--work", str(work)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 4 and summary["result_files"] == 4  # 1 shard + index + config + log
    shards = sorted(result.glob("model-*-of-*.safetensors"))
    assert shards and all(p.stat().st_size <= SHARD_BYTES for p in shards)
    assert [json.loads(x)["step"] for x in (result / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    index = json.loads((result / "model.safetensors.index.json").read_text())
    assert index["metadata"]["job"]["steps"] == 4

    folder = unpack(result, job, tmp_path / "encoder")
    trained = Encoder.from_pretrained(folder).model.embeddings.word_embeddings.weight
    start = Encoder.from_pretrained(tiny_encoder).model.embeddings.word_embeddings.weight
    run_export = load_file(str(work / "run" / "encoder" / "model.safetensors"))["embeddings.word_embeddings.weight"]
    assert torch.equal(trained, run_export.half().float()) and not torch.equal(trained, start)
    assert (folder / "tokenizer.json").is_file()
    text = tmp_path / "more.txt"
    text.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    record = pretrain(folder, [text], tmp_path / "again", max_steps=1, batch_size=2, max_length=16)  # continues from it
    assert record["step"] == 1


def test_run_fits_its_steps_to_the_minutes(job, tmp_path):
    summary = run_job(job, tmp_path / "out", minutes=0.1, device="cpu", work=tmp_path / "w", calibrate_steps=8, reserve_s=2.0)
    assert 1 <= summary["steps"] <= summary["planned_steps"]
    assert summary["wall_s"] < 6 + 20  # the budget, plus slack for a busy CI machine
    assert (tmp_path / "out" / "config.json").is_file()


# ---------------------------------------------------------------- with the distillation teacher



@pytest.fixture(scope="module")
def twin_encoder(teacher_folder, tmp_path_factory):
    """A char-level student whose layers are the teacher's, as zh-e5-small-base's are e5's."""
    from transformers import BertConfig, BertModel

    from conftest import build_tiny_encoder, tiny_vocab

    folder = build_tiny_encoder(tmp_path_factory.mktemp("twin") / "encoder", hidden=16)
    teacher = BertModel.from_pretrained(str(teacher_folder), add_pooling_layer=False)
    config = BertConfig(**(teacher.config.to_dict() | {"vocab_size": len(tiny_vocab()), "pad_token_id": 0}))
    student = BertModel(config, add_pooling_layer=False)
    state = {k: v for k, v in teacher.state_dict().items() if "word_embeddings" not in k}
    assert not student.load_state_dict(state, strict=False).unexpected_keys
    student.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def distill_job(twin_encoder, teacher_folder, text_file, tmp_path_factory):
    from toolkit.cli import main

    out = tmp_path_factory.mktemp("djob") / "gpu_job"
    code = main(["gpu-job", "pack", "--encoder", str(twin_encoder), "--text", str(text_file), "--out", str(out),
                 "--batch-size", "4", "--max-length", "24", "--lr", "1e-3", "--log-every", "1", "--num-layers", "1",
                 "--distill-weight", "1", "--teacher", str(teacher_folder), "--distill-loss", "cosine"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def distill_work(distill_job, tmp_path_factory):
    work = tmp_path_factory.mktemp("dwork")
    materialize(distill_job, work)
    return work


def _student(encoder):
    from toolkit.text.tokenization import TextTokenizer
    from toolkit.train.distill import StudentText

    return StudentText.of(TextTokenizer.from_pretrained(encoder))


def _own_tensors(job) -> dict:
    """The tensors the job stores for its teacher itself (not by reference)."""
    import lzma

    from safetensors.numpy import load

    stored = job / json.loads((job / "job.json").read_text())["teacher"]["files"]["model.safetensors"]
    return load(lzma.decompress(stored.read_bytes()) if stored.suffix == ".xz" else stored.read_bytes())


def test_the_teacher_keeps_only_the_corpus_pieces(distill_job, distill_work, teacher_folder, twin_encoder):
    from safetensors.numpy import load_file

    from toolkit.text.tokenization import TextTokenizer
    from toolkit.train.e5_teacher import Teacher
    from toolkit.train.mlm_data import Packed

    spec = json.loads((distill_job / "job.json").read_text())
    assert spec["train"]["distill_weight"] == 1 and spec["train"]["distill_loss"] == "cosine"
    assert spec["train"]["num_layers"] == 1 and spec["teacher"]["max_length"] == 24
    full, pruned = Teacher.load(teacher_folder), Teacher.load(distill_work / "teacher")
    _, ids, words, _ = materialize(distill_job, distill_work / "again")
    student, tok = _student(twin_encoder), TextTokenizer.from_pretrained(twin_encoder)
    used = {int(p) for row in Packed(ids, words, 24, tok).ids for text, _, _ in student.rebuild(row)
            for p in full.encode([text])[0][0]}
    assert set(pruned.keep.tolist()) == used | {0, 1, 2, 3} and len(pruned.keep) < full.vocab_size
    vocab = full.tokenizer.get_vocab()
    assert not pruned.kept[vocab["New"]] and pruned.kept[vocab["检查"]]  # only in test_distill's texts / in these
    assert _own_tensors(distill_job)["embeddings.word_embeddings.weight"].shape == (len(pruned.keep), 16)
    rebuilt = load_file(str(distill_work / "teacher" / "model.safetensors"))
    assert {v.dtype for v in rebuilt.values()} == {np.dtype(np.float16)}


def test_the_teachers_shared_layers_are_stored_by_name(distill_job):
    spec = json.loads((distill_job / "job.json").read_text())["teacher"]
    own = set(_own_tensors(distill_job))
    layers = {k for k in spec["shared"] if k.startswith("encoder.layer.")}
    assert len(layers) == 2 * 16 and "embeddings.position_embeddings.weight" in spec["shared"]  # 16 tensors a layer
    assert all(spec["shared"][k] == k for k in layers) and not own & set(spec["shared"])
    assert own == {"embeddings.word_embeddings.weight"}


def test_the_rebuilt_teacher_matches_the_full_one(distill_job, distill_work, teacher_folder, twin_encoder):
    import torch

    from toolkit.train.e5_teacher import Teacher

    full, pruned = Teacher.load(teacher_folder), Teacher.load(distill_work / "teacher")
    full.model.half().float()  # the job carries float16
    _, ids, _, _ = materialize(distill_job, distill_work / "again")
    text = _student(twin_encoder).rebuild(ids[:22])[0][0]  # as the distiller sees it: normalised ("，" -> ",")
    pieces = full.encode([text])[0][0]
    seq = np.concatenate([[full.bos], pieces, [full.eos]])
    assert not np.array_equal(pruned.model_ids(seq), seq)  # compact rows
    with torch.no_grad():
        a = full.model(input_ids=torch.from_numpy(seq)[None], output_hidden_states=True).hidden_states
        b = pruned.model(input_ids=torch.from_numpy(pruned.model_ids(seq))[None], output_hidden_states=True).hidden_states
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a, b))


def test_a_pruned_out_piece_is_fed_as_unk_and_not_aligned(distill_work, twin_encoder):
    from toolkit.text.tokenization import TextTokenizer
    from toolkit.train.distill import Distiller
    from toolkit.train.e5_teacher import Teacher

    teacher, tok = Teacher.load(distill_work / "teacher"), TextTokenizer.from_pretrained(twin_encoder)
    hf = tok.hf
    distiller = Distiller(teacher, hf.convert_ids_to_tokens(list(range(len(hf)))), hf.all_special_ids, hf.unk_token_id, 1, 16)
    row = np.asarray([[tok.cls_id, *tok.encode(["检查New"])[0][0].tolist(), tok.sep_id]])  # [CLS] 检 查 N ##e ##w [SEP]
    al = distiller.align(row, np.zeros(row.shape, bool))
    vocab = teacher.tokenizer.get_vocab()
    seq = al.ids[0][al.mask[0] == 1].tolist()
    assert seq == [int(teacher.model_ids(np.array(p))) for p in (0, vocab["\u2581"], vocab["检查"], vocab["New"], 2)]
    assert seq[3] == teacher.rows[teacher.unk]  # "New" is not in the job's corpus: <unk> to the teacher
    assert al.piece[0].tolist() == [-1, 2, 2, -1, -1, -1, -1]  # 检查 aligned; N ##e ##w not
    assert distiller.flush_dropped() == pytest.approx(1 / 3) and distiller.flush_dropped() == 0.0


def test_run_with_the_teacher_then_unpack(distill_job, tmp_path):
    from transformers import AutoConfig

    summary = run_job(distill_job, tmp_path / "result", minutes=2, device="cpu", work=tmp_path / "work",
                      overrides={"max_steps": 3})
    assert summary["steps"] == 3 and summary["distill"] > 0
    log = [json.loads(x) for x in (tmp_path / "result" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(0 < r["distill"] <= 2 for r in log)
    folder = unpack(tmp_path / "result", distill_job, tmp_path / "encoder")
    assert AutoConfig.from_pretrained(str(folder)).num_hidden_layers == 1  # --num-layers 1 travelled


def test_a_job_packed_before_distillation_runs_mlm_alone(job, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(job, old)
    spec = json.loads((old / "job.json").read_text())
    for k in ("distill_weight", "mlm_weight", "distill_loss", "num_layers"):
        del spec["train"][k]
    (old / "job.json").write_text(json.dumps(spec))
    summary = run_job(old, tmp_path / "out", minutes=2, device="cpu", work=tmp_path / "w", overrides={"max_steps": 1})
    log = json.loads((tmp_path / "out" / "log.jsonl").read_text().splitlines()[-1])
    assert summary["steps"] == 1 and "distill" not in summary and "distill" not in log


def test_the_pack_summary_counts_the_teacher(twin_encoder, teacher_folder, text_file, tmp_path):
    summary = pack(twin_encoder, [text_file], tmp_path / "j", settings={"distill_weight": 1.0, "max_length": 24},
                   teacher=teacher_folder)
    on_disk = sum(f.stat().st_size for f in (tmp_path / "j").rglob("*") if f.is_file()) / (1 << 20)
    teacher = sum(f.stat().st_size for f in (tmp_path / "j" / "teacher").iterdir()) / (1 << 20)
    assert summary["mib"] == pytest.approx(on_disk, abs=0.01) and summary["teacher_mib"] == pytest.approx(teacher, abs=0.01)
    assert summary["teacher_shared_tensors"] == 2 * 16 + 4 and summary["teacher_pieces"] < summary["teacher_vocab"]


def test_pack_refuses_contradictory_distillation_settings(tiny_encoder, text_file, tmp_path):
    with pytest.raises(ValueError, match="--distill-weight"):
        pack(tiny_encoder, [text_file], tmp_path / "a", settings={"mlm_weight": 0.0})
    with pytest.raises(ValueError, match="num-layers"):
        pack(tiny_encoder, [text_file], tmp_path / "b", settings={"num_layers": 3})
    with pytest.raises(ValueError, match="without distillation"):
        pack(tiny_encoder, [text_file], tmp_path / "c", teacher="auto")


def _plain_corpus(tiny_encoder):
    """Token ids of TEXTS, each token its own word (no jieba: the GPU machine has none)."""
    from toolkit.text.tokenization import TextTokenizer

    tok = TextTokenizer.from_pretrained(tiny_encoder)
    ids = np.concatenate([np.append(i, tok.sep_id) for i, _ in tok.encode(TEXTS * 10)]).astype(np.int32)
    words = np.where(ids == tok.sep_id, -1, np.arange(len(ids))).astype(np.int32)
    return ids, words, {"files": [], "splits": [], "test": "plain"}


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_within_noise(tiny_encoder, tmp_path):
    from toolkit.train.pretrain import pretrain

    corpus = _plain_corpus(tiny_encoder)
    opts = dict(corpus=corpus, max_steps=40, batch_size=8, max_length=24, lr=3e-3, log_every=1, save_every=20)
    pretrain(tiny_encoder, out=tmp_path / "cpu", device="cpu", dtype="fp32", **opts)
    record = pretrain(tiny_encoder, out=tmp_path / "cuda", device="cuda", dtype="auto", **opts)
    assert record["dtype"] == "bf16"
    losses = {d: [json.loads(x)["loss"] for x in (tmp_path / d / "log.jsonl").read_text().splitlines()] for d in ("cpu", "cuda")}
    first, last = (np.mean(losses["cuda"][:5]), np.mean(losses["cuda"][-10:]))
    assert last < 0.8 * first, losses["cuda"]
    assert abs(last - np.mean(losses["cpu"][-10:])) < 0.15 * np.mean(losses["cpu"][-10:]), losses

    kill = kill_at(25)

    with pytest.raises(Killed):
        pretrain(tiny_encoder, out=tmp_path / "part", device="cuda", on_step=kill, **opts)
    again = pretrain(tiny_encoder, out=tmp_path / "part", device="cuda", resume=True, **opts)
    assert again["step"] == 40 and abs(again["loss"] - record["loss"]) < 0.2 * record["loss"]
