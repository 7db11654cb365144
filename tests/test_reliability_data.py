"""Issue #11, items 5 and 13 (data): line ends, -DOCSTART-, BOMs and streaming in the corpus readers.

Every file here is written by the test itself (no shared corpora needed).
"""
from __future__ import annotations

import json
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from toolkit.data import sources
from toolkit.data.examples import NerExample, Span
from toolkit.data.readers import CorpusError, ExampleStream, iter_examples, read
from toolkit.data.readers_columns import DOCSTART, LONE_CR

BOM = "\ufeff"
BIO = "我\tO\n在\tO\n北\tB-LOC\n京\tI-LOC\n\n王\tB-PER\n五\tI-PER\n来\tO\n\n\n好\tO\n"


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def as_data(examples: list) -> list:
    return [(e.text, [s.as_tuple() for s in e.spans], e.source.rsplit(":", 1)[1]) for e in examples]


# ----------------------------------------------------------------------------------------------
# Item 5: line ends in column files


@pytest.mark.parametrize("sep", ["\t", " "])
@pytest.mark.parametrize("newline", ["\r\n", "\r", "\r\r\n"], ids=["CRLF", "CR-only", "CR-CRLF"])
def test_column_line_ends_read_like_lf(tmp_path, sep, newline):
    body = BIO.replace("\t", sep)
    lf, lf_report = read(write(tmp_path / "lf.bio", body), "columns")
    other, report = read(write(tmp_path / "other.bio", body.replace("\n", newline)), "columns")
    assert as_data(other) == as_data(lf) and len(lf) == 3
    assert as_data(lf)[0] == ("我在北京", [(2, 4, "LOC")], "1")
    assert report.problems == 0 and report.as_dict()["labels"] == lf_report.as_dict()["labels"]


def test_issue_example_lone_cr_is_a_counted_line_break_never_a_lost_token(tmp_path):
    path = write(tmp_path / "mixed.bio", "患 O\r\n者 O\r发 B-sym\r\n热 I-sym\r\n\r\n好 O\r\n")
    examples, report = read(path, "columns")
    assert examples[0] == NerExample("患者发热", [Span(2, 4, "sym")], f"{path}:1")
    assert examples[1].text == "好" and examples[1].source == f"{path}:6"
    assert report.repaired == {LONE_CR: 1} and report.where[LONE_CR] == [f"{path}:2"]
    with pytest.raises(CorpusError, match="lone CR"):
        read(path, "columns", strict=True)


def test_lone_cr_before_a_token_is_located_not_swallowed(tmp_path):
    path = write(tmp_path / "bad.bio", "北\tB-LOC\n京\r\tI-LOC\n")
    with pytest.raises(CorpusError, match="needs a tag") as err:
        read(path, "columns")
    assert err.value.where == f"{path}:2"


def test_every_lone_cr_is_counted_first_locations_kept(tmp_path):
    body = "".join(f"字 O\r{i % 10} O\n" for i in range(8))
    examples, report = read(write(tmp_path / "many.bio", body), "columns")
    assert len(examples) == 1 and len(examples[0].text) == 16
    assert report.repaired[LONE_CR] == 8 and len(report.where[LONE_CR]) == report.max_locations


# ----------------------------------------------------------------------------------------------
# Item 13: -DOCSTART-, BOM


def test_docstart_lines_are_skipped_and_counted(tmp_path):
    body = ("-DOCSTART- -X- -X- O\n\n北 NR B-LOC\n京 NR I-LOC\n\n"
            "-DOCSTART- O\n上 NR B-LOC\n海 NR I-LOC\n-DOCSTART- O\n好 VA O\n")
    path = write(tmp_path / "conll.txt", body)
    examples, report = read(path, "columns")
    assert as_data(examples) == [("北京", [(0, 2, "LOC")], "3"), ("上海", [(0, 2, "LOC")], "7"), ("好", [], "10")]
    assert report.omitted == {DOCSTART: 3} and report.records == 3 and report.problems == 0
    assert report.where[DOCSTART] == [f"{path}:1", f"{path}:6", f"{path}:9"]
    tail, _ = read(path, "columns", sentences=(1, None))
    assert [e.text for e in tail] == ["上海", "好"]


def _zip(path: Path, name: str, text: str) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(name, text.encode("utf-8"))
    return path


BOM_CASES = {
    "columns": ("a.bio", "北\tB-LOC\n京\tI-LOC\n", {}),
    "cmeee": ("a.txt", "北京|||0    1    LOC|||\n", {}),
    "json-spans": ("a.jsonl", json.dumps({"text": "北京", "spans": [{"start": 0, "end": 2, "label": "LOC"}]}), {}),
    "cblue-ner": ("a.json", json.dumps([{"text": "北京", "entities": [
        {"start_idx": 0, "end_idx": 1, "type": "LOC"}]}]), {}),
    "cluener": ("a.json", json.dumps({"text": "北京", "entity_list": [
        {"entity_type": "LOC", "entity": "北京", "entity_index": {"begin": 0, "end": 2}}]}), {}),
    "table-cls": ("a.csv", "text,label\n北京,LOC\n", {}),
    "table-cls-tsv": ("a.tsv", "text\tlabel\n北京\tLOC\n", {}),
    "table-pair": ("a.csv", "sentence1,sentence2,label\n北京,上海,LOC\n", {}),
    "json-cls": ("a.json", json.dumps([{"text": "北京", "label": "LOC"}]), {}),
    "json-cls-lines": ("a.jsonl", json.dumps({"text": "北京", "label": "LOC"}), {}),
    "json-pair": ("a.jsonl", json.dumps({"text1": "北京", "text2": "上海", "label": "LOC"}), {}),
}


@pytest.mark.parametrize("in_zip", [False, True], ids=["file", "zip"])
@pytest.mark.parametrize("case", sorted(BOM_CASES))
def test_bom_is_stripped_in_every_reader(tmp_path, case, in_zip):
    name, text, options = BOM_CASES[case]
    fmt = case.replace("-tsv", "").replace("-lines", "")
    path = _zip(tmp_path / "a.zip", name, BOM + text) if in_zip else write(tmp_path / name, BOM + text)
    examples, report = read(path, fmt, **options)
    first = examples[0]
    assert getattr(first, "text", None) == "北京" or first.text_a == "北京"
    assert BOM not in repr(examples) and BOM not in report.source
    assert ("LOC" in report.labels) and report.problems == 0


def test_bom_in_ccks2017_members_is_stripped(tmp_path):
    archive = tmp_path / "ccks.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("d/a-1.txtoriginal.txt", (BOM + "头痛").encode("utf-8"))
        z.writestr("d/a-1.txt", (BOM + "头痛\t0\t1\t症状和体征\n").encode("utf-8"))
    examples, report = read(archive, "ccks2017")
    assert examples[0].text == "头痛" and examples[0].spans == [Span(0, 2, "症状和体征")] and not report.problems


# ----------------------------------------------------------------------------------------------
# Item 13: streaming


STREAM_CASES = [
    ("a.bio", "\ufeff\r\n" + BIO.replace("\n", "\r\n") * 3, "columns", {"scheme": "BIO"}),
    ("b.bio", BIO.replace("\n", "\r") * 3, "columns", {}),
    ("c.bmes", "\n\n张 B-NAME\n三 E-NAME\n\n  \n李 S-NAME\n" * 4, "columns", {"sentences": (1, 6)}),
    ("d.txt", "左肺癌|||0    2    dis|||\r\n\r\n头痛|||0    1    sym|||\n" * 3, "cmeee", {}),
    ("e.jsonl", "\n".join(json.dumps({"text": f"北京{i}", "spans": []}) for i in range(9)), "json-spans", {}),
    ("f.tsv", "label\ttext\r\n" + "1\t好\r\n0\t差\r\n" * 5, "table-cls", {}),
    ("g.csv", 'sentence1,sentence2,label\n"a\nb",c,1\nd,e,0\r\nf,"g\r\nh",1\n', "table-pair", {}),
]


@pytest.mark.parametrize("piece_bytes", [7, 64, None], ids=["tiny-pieces", "small-pieces", "default"])
@pytest.mark.parametrize("name, text, fmt, options", STREAM_CASES, ids=[c[0] for c in STREAM_CASES])
def test_stream_yields_what_read_returns_at_any_piece_size(tmp_path, monkeypatch, name, text, fmt, options,
                                                           piece_bytes):
    path = write(tmp_path / name, text)
    expected, expected_report = read(path, fmt, **options)  # default piece size
    if piece_bytes:
        monkeypatch.setattr(sources, "PIECE_BYTES", piece_bytes)
    stream = iter_examples(path, fmt, **options)
    assert isinstance(stream, ExampleStream)
    assert list(stream) == expected and len(expected) >= 3
    assert stream.report.as_dict() == expected_report.as_dict()
    with pytest.raises(ValueError, match="already read"):
        list(stream)


def test_stream_is_lazy_errors_surface_where_they_are(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "PIECE_BYTES", 64)
    path = write(tmp_path / "a.bio", "北\tB-LOC\n京\tI-LOC\n\n" * 50 + "坏\n")
    stream = iter(iter_examples(path, "columns", scheme="BIO"))
    assert next(stream).text == "北京"  # the malformed last line has not been reached yet
    with pytest.raises(CorpusError) as err:
        list(stream)
    assert err.value.where == f"{path}:151"


def test_not_utf8_line_number_is_right_across_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "PIECE_BYTES", 16)
    path = tmp_path / "a.bio"
    path.write_bytes("好\tO\n".encode() * 40 + "坏\tO\n".encode("gbk"))
    with pytest.raises(CorpusError, match="not UTF-8") as err:
        read(path, "columns")
    assert err.value.where == f"{path}:41"


def test_reading_keeps_memory_near_the_file_size(tmp_path, monkeypatch):
    chars = "我在北京大学读书他说今天天气很好明天去上海看望朋友然后一起吃饭回家路上买书"  # 38
    lines = []
    for i in range(5000):
        sentence = chars[i % 7:] + chars[: i % 7]  # a few distinct texts, as in a real corpus
        tags = ["O"] * len(sentence)
        tags[2:4] = ["B-LOC", "I-LOC"]
        lines.append("".join(f"{c}\t{t}\n" for c, t in zip(sentence, tags)) + "\n")
    path = write(tmp_path / "big.bio", "".join(lines))
    size = path.stat().st_size  # about 1.1 MB, read in 16 KiB pieces
    monkeypatch.setattr(sources, "PIECE_BYTES", 1 << 14)
    tracemalloc.start()
    try:
        total = sum(len(ex.text) for ex in iter_examples(path, "columns", scheme="BIO"))
        _, stream_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        examples, _ = read(path, "columns", scheme="BIO")
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 5000 * len(chars) and len(examples) == 5000
    assert stream_peak < size / 4   # a few pieces in flight (~0.18 MB), not the corpus (was ~20x the file)
    assert read_peak < 4 * size     # the examples themselves, compact (was ~20x the file before)
