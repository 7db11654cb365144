"""`toolkit batch`: local mode and Ray mode give the rows of serial pipeline calls, with file and line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit import load
from toolkit.batch.run import read_output, run_batch
from toolkit.cli_io import jsonable
from toolkit.errors import DataError

TEXTS = ["张三在北京工作。", "李四去了上海", "", "今天天气很好", "王五和赵六", "中国人民银行", "我爱北京天安门", "上海", "你好", "再见朋友"]
PAIRS = [("你好", "您好"), ("北京", "上海"), ("今天", "明天")]


def serial(folder: Path, task: str, inputs: list) -> list:
    pipe = load(str(folder), tasks=[task])
    return [json.loads(json.dumps(jsonable(pipe(x)), ensure_ascii=False)) for x in inputs]


def expected_rows(path: Path, texts: list[str], results: list) -> list[dict]:
    return [{"file": str(path), "line": i, "text": t, "result": r} for i, (t, r) in enumerate(zip(texts, results), 1)]


@pytest.fixture
def txt(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


def test_txt_rows_equal_serial_calls(tiny_folder, txt, tmp_path):
    [out] = run_batch(str(tiny_folder), [str(txt)], tmp_path / "out", tasks=["ner"])
    assert out == tmp_path / "out" / "notes.jsonl"
    assert read_output(out) == expected_rows(txt, TEXTS, serial(tiny_folder, "ner", TEXTS))


def test_jsonl_with_text_field_and_classifier(tiny_folder, tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps({"id": i, "body": t}, ensure_ascii=False) + "\n" for i, t in enumerate(TEXTS[:4])), encoding="utf-8")
    [out] = run_batch(str(tiny_folder), [str(path)], tmp_path / "out", tasks=["sentiment"], text_field="body")
    assert read_output(out) == expected_rows(path, TEXTS[:4], serial(tiny_folder, "sentiment", TEXTS[:4]))


def test_pairs_from_jsonl(tiny_folder, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"text_a": a, "text_b": b}, ensure_ascii=False) + "\n" for a, b in PAIRS), encoding="utf-8")
    [out] = run_batch(str(tiny_folder), [str(path)], tmp_path / "out", tasks=["match"])
    results = serial(tiny_folder, "match", PAIRS)
    assert read_output(out) == [{"file": str(path), "line": i, "text_a": a, "text_b": b, "result": r}
                                for i, ((a, b), r) in enumerate(zip(PAIRS, results), 1)]


def test_chunks_of_three_give_the_same_output(tiny_folder, txt, tmp_path):
    [whole] = run_batch(str(tiny_folder), [str(txt)], tmp_path / "a", tasks=["ner"])
    [chunked] = run_batch(str(tiny_folder), [str(txt)], tmp_path / "b", tasks=["ner"], chunk_size=3)
    assert chunked.read_bytes() == whole.read_bytes()


def test_parquet_in_and_out(tiny_folder, txt, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    src = tmp_path / "notes2.parquet"
    pq.write_table(pa.table({"text": TEXTS}), src, row_group_size=4)
    [out] = run_batch(str(tiny_folder), [str(src)], tmp_path / "out", fmt="parquet", tasks=["ner"], chunk_size=3)
    assert read_output(out) == expected_rows(src, TEXTS, serial(tiny_folder, "ner", TEXTS))


def test_a_bad_line_leaves_no_partial_file(tiny_folder, tmp_path):
    path = tmp_path / "broken.jsonl"
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in TEXTS[:5]] + ["{not json"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out_dir = tmp_path / "out"
    with pytest.raises(DataError, match=r"broken.jsonl:6"):
        run_batch(str(tiny_folder), [str(path)], out_dir, tasks=["ner"], chunk_size=2)
    assert list(out_dir.iterdir()) == []  # neither the output nor its temporary file


def test_cli_writes_one_output_per_input(tiny_folder, txt, tmp_path, capsys, monkeypatch):
    from toolkit.cli import main

    monkeypatch.setenv("TOOLKIT_HOME", str(tmp_path / "home"))  # --runtime auto (the default) may cache a measurement

    other = tmp_path / "more.txt"
    other.write_text("北京\n", encoding="utf-8")
    code = main(["batch", str(tiny_folder), "--tasks", "ner", "--input", str(tmp_path / "*.txt"), "--output", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["more.jsonl", "notes.jsonl"]


def test_ray_two_workers_equal_local(tiny_folder, txt, tmp_path):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    from toolkit.batch.ray_data import run_batch_ray

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"text_a": a, "text_b": b}, ensure_ascii=False) + "\n" for a, b in PAIRS), encoding="utf-8")
    local = run_batch(str(tiny_folder), [str(txt)], tmp_path / "local", tasks=["ner"])
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        [distributed] = run_batch_ray(str(tiny_folder), [str(txt)], tmp_path / "ray", tasks=["ner"], workers=2, threads=1,
                                      chunk_size=3, rows_per_call=2)
        [matched] = run_batch_ray(str(tiny_folder), [str(pairs)], tmp_path / "ray", tasks=["match"], workers=2, threads=1)
    finally:
        ray.shutdown()
    assert distributed.read_bytes() == local[0].read_bytes()
    assert [r["result"] for r in read_output(matched)] == serial(tiny_folder, "match", PAIRS)
