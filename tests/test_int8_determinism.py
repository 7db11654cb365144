"""int8 results that do not depend on the other texts of a batch (issue 11, item 18), on the tiny model.

The int8 graph quantises each MatMul input row (one token of one window) with its own scale, so a
text's entities, labels and scores are the same alone, in any batch and whatever the padding.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from toolkit import load  # noqa: E402
from toolkit.runtime.export import INT8_FORMAT, RECORD, export_onnx, find_export, quantize_int8, read_record  # noqa: E402
from toolkit.runtime.onnx_runtime import OnnxRunner  # noqa: E402

LONG = "患者三天前出现发热、咳嗽，既往有2型糖尿病史。张三在北京大学医院工作" * 6  # several windows
TEXTS = ["张三在北京大学医院工作", "王", "ＣＴ检查：胸部未见异常", "头痛三天，发热", LONG, "李四去上海了。" * 3]
NEIGHBOURS = [["上海"], ["北京市海淀区中关村大学" * 4], [LONG[::-1]], ["患者", "张王李赵刘陈" * 9, "医院"]]
PAIRS = [("头痛怎么办", "头疼如何治疗"), ("發熱", "咳嗽"), ("张三在北京", "王" * 40)]
PAIR_NEIGHBOURS = [[("上海", "北京")], [("北京市海淀区" * 5, "中关村大学" * 6)], [("", "空"), ("心肺肝肾胃肠" * 4, "头痛")]]


@pytest.fixture(scope="module")
def folder(tiny_folder, tmp_path_factory) -> Path:
    """A copy of ``tiny_folder`` with its fp32 and (per-row) int8 exports."""
    path = Path(shutil.copytree(tiny_folder, tmp_path_factory.mktemp("int8") / "tiny", ignore=shutil.ignore_patterns("onnx")))
    export_onnx(path, quantize="int8")
    return path


@pytest.fixture(scope="module")
def per_batch(folder) -> Path:
    """The tiny model's int8 graph as toolkit made it before: one activation scale per batch."""
    out = folder.parent / "per-batch.int8.onnx"
    quantize_int8(folder / "onnx" / "model.onnx", out, activations="per-batch")
    return out


def padded(rows: list[np.ndarray], length: int) -> dict[str, np.ndarray]:
    ids = np.zeros((len(rows), length), np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def alone_vs_batched(graph: Path) -> float:
    """Largest difference of a row's emissions alone vs padded in a batch with other rows."""
    runner = OnnxRunner(graph, threads=1)
    rng = np.random.default_rng(0)
    worst = 0.0
    for length in (5, 12, 30):
        row = rng.integers(5, 300, length)
        alone = runner.run(padded([row], length), ["ner"])["ner"][0]
        others = [rng.integers(5, 300, n) * (k + 1) % 300 + 5 for k, n in enumerate((31, 8, 32))]  # other ranges
        batched = runner.run(padded([*others, row], 32), ["ner"])["ner"][len(others), :length]
        worst = max(worst, float(np.abs(alone - batched).max()))
    return worst


def test_int8_graph_rows_do_not_depend_on_the_batch(folder, per_batch):
    graph = find_export(folder, "int8")
    assert graph is not None and alone_vs_batched(graph) == 0.0
    assert alone_vs_batched(per_batch) > 0.0  # what the per-batch scales did (issue 11, item 18)


def test_int8_graph_has_per_row_quantisation(folder):
    ops = {n.op_type for n in onnx.load(str(folder / "onnx" / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "MatMulIntegerToFloat", "ReduceMax"} <= ops and "DynamicQuantizeLinear" not in ops
    record = read_record(folder / "onnx")["graphs"]["int8"]
    assert record["int8_format"] == INT8_FORMAT and record["quantization"]["activation_scales"] == "per-row"


def assert_same(got: list, alone: list) -> None:
    """Entities: identical, scores too. Labels: identical; scores within 1e-6, because the mean-pooled
    heads sum token vectors with ONNX Runtime's ReduceSum, whose last bit can depend on the padded
    length (in fp32 too); per-batch activation scales moved scores by about 1e-2."""
    assert len(got) == len(alone)
    for g, a in zip(got, alone):
        if isinstance(a, list):
            assert g == a
        else:
            assert g["label"] == a["label"] and max(abs(g["scores"][k] - a["scores"][k]) for k in a["scores"]) <= 1e-6, (g, a)


def test_heads_stay_fp32_in_the_int8_graph(folder):
    """The classifier's and matcher's Linear layers export as Gemm, which quantize_dynamic turns into
    ``<name>_MatMul``: they used to be quantised although the heads were meant to stay fp32."""
    nodes = onnx.load(str(folder / "onnx" / "model.int8.onnx")).graph.node
    quantised = [n.name for n in nodes if n.op_type == "MatMulIntegerToFloat"]
    assert quantised and all("/encoder/" in name for name in quantised), quantised
    kept = read_record(folder / "onnx")["graphs"]["int8"]["quantization"]["kept_fp32"]
    assert any("/sentiment/" in k for k in kept) and any("/match/" in k for k in kept), kept


@pytest.mark.parametrize("task", ["ner", "sentiment"])
def test_int8_text_result_alone_equals_result_in_any_batch(folder, task):
    pipe = load(str(folder), tasks=task, runtime="onnx", quantize="int8")
    alone = [pipe(t) for t in TEXTS]
    for neighbours in NEIGHBOURS:
        for batch_size in (2, 3, 32):
            mixed = neighbours + TEXTS + neighbours[::-1]
            assert_same(pipe(mixed, batch_size=batch_size)[len(neighbours) : len(neighbours) + len(TEXTS)], alone)


def test_int8_pair_result_alone_equals_result_in_any_batch(folder):
    pipe = load(str(folder), tasks="match", runtime="onnx", quantize="int8")
    alone = [pipe(a, b) for a, b in PAIRS]
    for neighbours in PAIR_NEIGHBOURS:
        for batch_size in (2, 32):
            assert_same(pipe(neighbours + PAIRS, batch_size=batch_size)[len(neighbours) :], alone)


def test_int8_is_close_to_fp32_and_closer_than_per_batch_scales(folder, per_batch):
    rng = np.random.default_rng(1)
    batch = padded([rng.integers(5, 300, n) for n in (32, 7, 19, 3)], 32)
    real = batch["attention_mask"].astype(bool)
    ref = OnnxRunner(folder / "onnx" / "model.onnx", threads=1).run(batch, ["ner", "sentiment"])
    errors = {}
    for name, graph in {"per-row": folder / "onnx" / "model.int8.onnx", "per-batch": per_batch}.items():
        got = OnnxRunner(graph, threads=1).run(batch, ["ner", "sentiment"])
        errors[name] = float(np.abs(got["ner"] - ref["ner"])[real].mean())
        assert np.abs(got["sentiment"] - ref["sentiment"]).max() < 0.05 * max(1.0, np.abs(ref["sentiment"]).max())
        assert (got["ner"].argmax(-1) == ref["ner"].argmax(-1))[real].mean() >= 0.9
    scale = float(np.abs(ref["ner"][real]).mean())
    assert errors["per-row"] < 0.05 * scale and errors["per-row"] <= errors["per-batch"], (errors, scale)


def test_old_per_batch_int8_export_is_stale_and_rebuilt_without_redoing_fp32(folder, per_batch, tmp_path):
    path = Path(shutil.copytree(folder, tmp_path / "tiny"))
    onnx_dir = path / "onnx"
    shutil.copyfile(per_batch, onnx_dir / "model.int8.onnx")  # an int8 export made by the older toolkit
    record = json.loads((onnx_dir / RECORD).read_text(encoding="utf-8"))
    old = quantize_int8(onnx_dir / "model.onnx", onnx_dir / "model.int8.onnx", activations="per-batch")
    del old["int8_format"]  # older records had no int8_format
    record["graphs"]["int8"] = old
    (onnx_dir / RECORD).write_text(json.dumps(record), encoding="utf-8")
    fp32_stat = (onnx_dir / "model.onnx").stat()
    assert find_export(path) == onnx_dir / "model.onnx" and find_export(path, "int8") is None
    pipe = load(str(path), tasks="ner", runtime="onnx", quantize="int8", export=True)  # rebuilds the int8 graph when asked
    assert find_export(path, "int8") == onnx_dir / "model.int8.onnx" == pipe.runner.path
    assert read_record(onnx_dir)["graphs"]["int8"]["int8_format"] == INT8_FORMAT
    assert (onnx_dir / "model.onnx").stat().st_mtime_ns == fp32_stat.st_mtime_ns  # fp32 graph kept
    assert "DynamicQuantizeLinear" not in {n.op_type for n in onnx.load(str(onnx_dir / "model.int8.onnx")).graph.node}


def test_unknown_activation_scales_are_refused(folder, tmp_path):
    with pytest.raises(ValueError, match="per-row"):
        quantize_int8(folder / "onnx" / "model.onnx", tmp_path / "x.onnx", activations="per-tensor")
