"""ONNX export and the ONNX Runtime pipelines, against the PyTorch pipelines on the tiny random model."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from conftest import in_threads
from toolkit.runtime import export as exporting  # noqa: E402
from toolkit import load  # noqa: E402
from toolkit.cli import main  # noqa: E402
from toolkit.runtime.export import export_onnx, find_export, read_record  # noqa: E402
from toolkit.runtime.bundle import FileTokenizer  # noqa: E402
from toolkit.runtime.onnx_runtime import OnnxRunner, onnx_pipeline, require  # noqa: E402
from toolkit.runtime.pipeline import Entity, build_pipeline  # noqa: E402
from toolkit.text.tokenization import TextTokenizer  # noqa: E402

LONG = "患者三天前出现发热、咳嗽，既往有2型糖尿病史。张三在北京大学医院工作" * 12 + "王" * 70  # windows
TEXTS = [
    "张三在北京大学医院工作",
    "張三在北京大學醫院工作",  # traditional
    "\ufeff張\u200b三在北京大學醫院\u3000工作",  # invisible characters and an ideographic space
    "ＣＴ检查：胸部未见异常",  # full width
    "王",
    "",
    LONG,
]
PAIRS = [("头痛怎么办", "头疼如何治疗"), ("發熱", "咳嗽"), ("张三在北京", "王" * 40), ("", "空")]


def copy_model(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst, ignore=shutil.ignore_patterns("onnx")))


@pytest.fixture(scope="module")
def folder(tiny_folder, tmp_path_factory) -> Path:
    """A copy of ``tiny_folder`` with its fp32 and int8 exports (other tests keep a clean folder)."""
    path = copy_model(tiny_folder, tmp_path_factory.mktemp("onnx") / "tiny")
    export_onnx(path, quantize="int8")
    return path


def same(a, b, atol: float = 1e-4) -> None:
    """Identical entities/labels, scores within ``atol``."""
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y, atol)
    elif isinstance(a, Entity):
        assert (a.text, a.label, a.start, a.end) == (b.text, b.label, b.start, b.end)
        assert abs(a.score - b.score) <= atol
    elif "label" in a:
        assert a["label"] == b["label"] and (a["score"] is None) == (b["score"] is None)  # None: blank input
        assert a["score"] is None or abs(a["score"] - b["score"]) <= atol
        assert a["scores"].keys() == b["scores"].keys()
        assert all(abs(a["scores"][k] - b["scores"][k]) <= atol for k in a["scores"])
    else:
        assert a.keys() == b.keys()
        for k in a:
            same(a[k], b[k], atol)


@pytest.mark.parametrize("tasks", [["ner"], ["sentiment"], ["match"], ["ner", "sentiment"], None])
def test_fp32_matches_torch(tiny_model, folder, tasks):
    torch_pipe = build_pipeline(tiny_model, tasks, batch_size=3, keyed=True if tasks else None)  # a list of tasks: keyed answers
    onnx_pipe = load(str(folder), tasks=tasks, runtime="onnx", batch_size=3)
    assert type(onnx_pipe) is type(torch_pipe)
    if tasks != ["match"]:
        found = onnx_pipe(TEXTS)
        same(found, torch_pipe(TEXTS))
        same(onnx_pipe(TEXTS[1]), found[1])
    if tasks in (["match"], None):
        same(onnx_pipe(PAIRS), torch_pipe(PAIRS))
    if tasks == ["ner"]:
        found = [r["ner"] for r in found]
        assert any(found), "the sharpened random model finds entities"
        assert len(found[-1]) > 10 and all(LONG[e.start : e.end] == e.text for e in found[-1])


def test_graph_has_named_inputs_outputs_and_dynamic_axes(folder):
    model = onnx.load(str(folder / "onnx" / "model.onnx"))
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert inputs == {n: ["batch", "sequence"] for n in ("input_ids", "attention_mask", "token_type_ids", "segments")}
    outputs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert outputs == {"ner": ["batch", "sequence", 7], "sentiment": ["batch", 2], "match": ["batch", 2]}
    record = read_record(folder / "onnx")
    assert record["opset"] >= 17 and record["toolkit_version"] and set(record["sources"]) >= {"heads/ner.safetensors", "encoder/model.safetensors"}
    assert record["graphs"]["int8"]["quantization"]["weights"] == "int8 per channel"


def test_no_segments_input_without_a_matcher(tiny_encoder, tmp_path):
    import torch

    from toolkit.model.multitask import MultiTaskModel

    torch.manual_seed(2)
    model = MultiTaskModel.build(tiny_encoder, {"sentiment": {"kind": "classifier", "labels": ["a", "b", "c"]}}, max_length=32)
    path = model.save(tmp_path / "cls", dtype=torch.float32)
    runner = OnnxRunner(export_onnx(path))
    assert runner.inputs == ["input_ids", "attention_mask", "token_type_ids"] and runner.outputs == ["sentiment"]
    same(load(str(path), runtime="onnx")(TEXTS), build_pipeline(model.eval())(TEXTS))


def test_int8_gives_valid_outputs_that_mostly_agree(tiny_model, folder):
    texts = TEXTS + [t[i:] + t[:i] for t in TEXTS[:4] for i in range(1, 6)]
    fp32 = load(str(folder), runtime="onnx")
    int8 = load(str(folder), runtime="onnx", quantize="int8")
    assert int8.text.runner.path.name == "model.int8.onnx"
    got, ref = int8(texts), fp32(texts)
    for text, out in zip(texts, got):
        assert set(out) == {"ner", "sentiment"}
        assert all(text[e.start : e.end] == e.text and 0 <= e.score <= 1 for e in out["ner"])
        assert (out["sentiment"]["label"] is None) == (text == "")  # blank text: an explicit "no label"
        assert text == "" or abs(sum(out["sentiment"]["scores"].values()) - 1) < 1e-6
    labels = np.mean([g["sentiment"]["label"] == r["sentiment"]["label"] for g, r in zip(got, ref)])
    spans = [{(e.start, e.end, e.label) for e in x["ner"]} for x in ref]
    found = [{(e.start, e.end, e.label) for e in x["ner"]} for x in got]
    overlap = sum(len(a & b) for a, b in zip(spans, found)) / max(1, sum(len(a | b) for a, b in zip(spans, found)))
    pairs = np.mean([g["match"]["label"] == r["match"]["label"] for g, r in zip(int8(PAIRS * 3), fp32(PAIRS * 3))])
    assert labels >= 0.8 and pairs >= 0.75 and overlap >= 0.8, (labels, pairs, overlap)


def test_threads_share_one_onnx_pipeline(folder):
    pipe = load(str(folder), tasks=["ner", "sentiment"], runtime="onnx", batch_size=2)
    texts = [t * (i % 3 + 1) for i, t in enumerate(TEXTS[:-1] * 3)]
    serial = [pipe(t) for t in texts]
    assert all(r == serial for r in in_threads(lambda: [pipe(t) for t in texts]))


def test_stale_export_is_detected_and_redone(folder, tmp_path):
    from safetensors.numpy import load_file, save_file

    from toolkit.model.manifest import seal
    from toolkit.model.multitask import MultiTaskModel

    path = copy_model(folder, tmp_path / "tiny")
    shutil.copytree(folder / "onnx", path / "onnx")
    assert find_export(path) == path / "onnx" / "model.onnx"
    head = path / "heads" / "sentiment.safetensors"
    state = load_file(str(head))
    state["proj.bias"] = state["proj.bias"] + np.array([3.0, -3.0], dtype=state["proj.bias"].dtype)
    save_file(state, str(head))
    seal(path)  # an edit on purpose: record its checksum, or loading refuses the folder (toolkit.model.folder, toolkit.model.manifest.seal)
    assert find_export(path) is None and find_export(path, "int8") is None
    with pytest.raises(FileNotFoundError, match="toolkit export"):
        onnx_pipeline(path, tasks="sentiment", export=False)
    pipe = load(str(path), tasks="sentiment", runtime="onnx", export=True)  # re-exports when asked to
    assert find_export(path) == path / "onnx" / "model.onnx" and not (path / "onnx" / "model.int8.onnx").exists()
    same(pipe(TEXTS), build_pipeline(MultiTaskModel.load(path, tasks=["sentiment"]))(TEXTS))
    assert all(r["label"] == ("neg" if t.strip() else None) for t, r in zip(TEXTS, pipe(TEXTS)))  # blank text: no label


def test_read_only_folder_exports_to_the_cache(folder, tmp_path, monkeypatch):
    path = copy_model(folder, tmp_path / "tiny")
    monkeypatch.setenv("TOOLKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(exporting, "_writable", lambda directory: False)
    graph = export_onnx(path)
    assert graph.parent == exporting.cache_dir(path) and graph.parent.is_relative_to(tmp_path / "home" / "onnx")
    assert not (path / "onnx").exists() and find_export(path) == graph


def test_cli_export(capsys, folder, tmp_path):
    out = tmp_path / "graphs"
    assert main(["export", str(folder), "--out", str(out), "--quantize", "int8"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert Path(info["graph"]) == (out / "model.int8.onnx").resolve() and info["outputs"] == {"ner": "tagger", "sentiment": "classifier", "match": "matcher"}
    assert {p.name for p in out.iterdir()} == {"model.onnx", "model.int8.onnx", "export.json"}
    assert main(["export", "no-such-model"]) == 2 and "unknown model" in capsys.readouterr().err


def test_onnx_runtime_does_not_import_torch(folder):
    code = (
        "import sys\n"
        "from toolkit import load\n"
        f"pipe = load({str(folder)!r}, runtime='onnx', quantize='int8')\n"
        "assert pipe('张三在北京')['sentiment']['label'] in ('neg', 'pos') and pipe(('头痛', '头疼'))['match']['label'] in ('0', '1')\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def test_file_tokenizer_matches_transformers(folder):
    light = TextTokenizer(FileTokenizer(folder / "encoder"))
    full = TextTokenizer.from_pretrained(folder / "encoder")
    assert (light.cls_id, light.sep_id, light.pad_id, light.unk_id, len(light)) == (full.cls_id, full.sep_id, full.pad_id, full.unk_id, len(full))
    texts = TEXTS + ["CT 5mg the MRI ☃ \U0001f600 abc", "a\u0301"]
    for (i1, o1), (i2, o2) in zip(light.encode(texts), full.encode(texts)):
        assert i1.tolist() == i2.tolist() and o1.tolist() == o2.tolist()


def test_missing_onnxruntime_says_how_to_install(monkeypatch, folder):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[onnx\]"'):
        require("onnxruntime")
    with pytest.raises(ImportError, match="onnx"):
        load(str(folder), runtime="onnx")


def test_bad_runtime_arguments(folder):
    with pytest.raises(ValueError, match="CPU only"):
        load(str(folder), runtime="onnx", device="cuda")
    with pytest.raises(ValueError, match="runtime='onnx'"):
        load(str(folder), quantize="int8")
    with pytest.raises(ValueError, match="'int8'"):
        export_onnx(folder, quantize="int4")
