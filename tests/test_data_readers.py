"""Corpus readers and validation on tiny invented files (no real corpora needed)."""
from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import pytest

from toolkit.data.examples import NerExample, PairExample, Span, TextExample
from toolkit.data.readers import (READERS, CorpusError, ReadReport, duplicates, flatten_examples,
                                  inclusive_to_exclusive, overlap, read, read_cblue_ner, read_ccks2017,
                                  read_cluener, read_cmeee, read_columns, read_json_cls, read_json_pair,
                                  read_json_spans, read_table_cls, read_table_pair)

RESOURCES = Path(__file__).parent / "resources" / "corpora"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def spans(example: NerExample) -> list[tuple[int, int, str]]:
    return [s.as_tuple() for s in example.spans]


# ----------------------------------------------------------------------------------------------
# Column files


def test_columns_bio_in_zip_with_sentence_slice(tmp_path):
    body = "我\tO\n在\tO\n北\tB-LOC\n京\tI-LOC\n\n王\tB-PER\n五\tI-PER\n来\tO\n\n好\tO\n\n"
    archive = tmp_path / "tiny_msra.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("tiny.txt", body)
    examples, report = read_columns(archive, scheme="BIO")
    assert [e.text for e in examples] == ["我在北京", "王五来", "好"]
    assert spans(examples[0]) == [(2, 4, "LOC")]
    assert examples[1].source == f"{archive}!tiny.txt:6"
    tail, tail_report = read_columns(archive, member="tiny.txt", sentences=(1, None))
    assert [e.text for e in tail] == ["王五来", "好"] and tail_report.records == 2
    assert tail[0].source.endswith("!tiny.txt:6")
    head, _ = read_columns(archive, sentences=(0, 1))
    assert [e.text for e in head] == ["我在北京"]


def test_columns_sentence_range_beyond_file_is_an_error(tmp_path):
    path = write(tmp_path / "a.bio", "好\tO\n\n")
    with pytest.raises(CorpusError, match="asked for sentences 0..5 but the file has 1"):
        read_columns(path, sentences=(0, 5))


def test_columns_bmes_space_separated_detected(tmp_path):
    path = write(tmp_path / "resume.char.bmes",
                 "张 B-NAME\n三 E-NAME\n是 O\n工 B-TITLE\n程 M-TITLE\n师 E-TITLE\n\n李 S-NAME\n")
    examples, report = read_columns(path)
    assert spans(examples[0]) == [(0, 2, "NAME"), (3, 6, "TITLE")]
    assert spans(examples[1]) == [(0, 1, "NAME")]
    assert not report.problems and report.spans == 3 and report.labels == {"NAME": 2, "TITLE": 1}


def test_columns_bioes_detected(tmp_path):
    path = write(tmp_path / "a.bioes", "上\tB-LOC\n海\tE-LOC\n人\tO\n京\tS-LOC\n")
    examples, _ = read_columns(path)
    assert spans(examples[0]) == [(0, 2, "LOC"), (3, 4, "LOC")]


def test_columns_crlf_blank_runs_and_line_numbers(tmp_path):
    path = write(tmp_path / "a.bio", "\r\n\r\n天\tO\r\n\r\n  \r\n\r\n上\tB-LOC\r\n海\tI-LOC\r\n")
    examples, _ = read_columns(path, scheme="BIO")
    assert [e.text for e in examples] == ["天", "上海"]
    assert [e.source.rsplit(":", 1)[1] for e in examples] == ["3", "7"]
    assert spans(examples[1]) == [(0, 2, "LOC")]


def test_columns_space_and_multichar_tokens(tmp_path):
    path = write(tmp_path / "a.txt", "  O\n北京\tB-LOC\n大学\tI-LOC\n")
    examples, _ = read_columns(path, scheme="BIO")
    assert examples[0].text == " 北京大学"
    assert spans(examples[0]) == [(1, 5, "LOC")]


def test_columns_extra_middle_columns_use_first_and_last(tmp_path):
    path = write(tmp_path / "a.conll", "北\tNR\tB-LOC\n京\tNR\tI-LOC\n")
    examples, _ = read_columns(path, scheme="BIO")
    assert examples[0].text == "北京" and spans(examples[0]) == [(0, 2, "LOC")]


def test_columns_inside_without_begin_is_repaired_and_located(tmp_path, caplog):
    path = write(tmp_path / "a.bio", "我\tO\n北\tI-LOC\n京\tI-LOC\n\n好\tO\n")
    with caplog.at_level(logging.WARNING):
        examples, report = read_columns(path, scheme="BIO")
    assert spans(examples[0]) == [(1, 3, "LOC")]
    assert report.repaired == {"tags: inside without begin": 1}
    assert report.where["tags: inside without begin"] == [f"{path}:2"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "inside without begin" in warnings[0].getMessage()


def test_columns_missing_end_in_bmes_is_counted(tmp_path):
    path = write(tmp_path / "a.bmes", "华 B-ORG\n为 M-ORG\n\n")
    examples, report = read_columns(path, scheme="BMES")
    assert spans(examples[0]) == [(0, 2, "ORG")]
    assert report.repaired["tags: missing end"] == 1


def test_columns_unknown_tag_read_as_o_and_counted(tmp_path):
    path = write(tmp_path / "a.bio", "北\tB-LOC\n京\tE-LOC\n人\tX\n")
    examples, report = read_columns(path, scheme="BIO")
    assert spans(examples[0]) == [(0, 1, "LOC")]
    assert report.repaired == {"unknown tag (read as O) in a BIO file": 2}
    assert report.where["unknown tag (read as O) in a BIO file"][0] == f"{path}:2 (E-LOC)"


def test_columns_strict_refuses_repairs(tmp_path):
    path = write(tmp_path / "a.bio", "我\tO\n北\tI-LOC\n")
    with pytest.raises(CorpusError) as err:
        read_columns(path, scheme="BIO", strict=True)
    message = str(err.value)
    assert "strict" in message and f"{path}:2" in message and "inside without begin" in message


@pytest.mark.parametrize("line", ["北", "北\t", "\tB-LOC"])
def test_columns_malformed_line_names_file_line_and_expectation(tmp_path, line):
    path = write(tmp_path / "a.bio", f"我\tO\n{line}\n")
    with pytest.raises(CorpusError) as err:
        read_columns(path, scheme="BIO")
    message = str(err.value)
    assert message.startswith(f"{path}:2: ")
    assert repr(line) in message and "expected:" in message
    assert err.value.where == f"{path}:2" and isinstance(err.value, ValueError)


def test_columns_extra_column_does_not_hide_a_missing_tag(tmp_path):
    path = write(tmp_path / "a.conll", "北\tNR\tB-LOC\n京\n")
    with pytest.raises(CorpusError, match="needs a tag") as err:
        read_columns(path)
    assert err.value.where == f"{path}:2"


def test_not_utf8_error_has_line_and_hint(tmp_path):
    path = write(tmp_path / "gbk.bio", "我\tO\n北\tB-LOC\n", encoding="gbk")
    with pytest.raises(CorpusError, match=r"gbk\.bio:1: bytes that are not UTF-8(.|\n)*iconv"):
        read_columns(path)


def test_long_offending_line_is_truncated(tmp_path):
    path = write(tmp_path / "a.txt", "字" * 500 + "\n")
    with pytest.raises(CorpusError) as err:
        read_cmeee(path)
    line = [x for x in str(err.value).splitlines() if x.strip().startswith("line:")][0]
    assert len(line) < 140 and line.rstrip("'").endswith("...")


def test_hand_written_resource_file_reads_cleanly():
    examples, report = read_columns(RESOURCES / "tiny.bio")
    assert len(examples) == 3 and not report.problems
    assert spans(examples[0]) == [(0, 3, "PER"), (4, 6, "LOC")]


# ----------------------------------------------------------------------------------------------
# Span formats


def test_inclusive_to_exclusive():
    assert inclusive_to_exclusive(0, 0) == (0, 1)
    assert inclusive_to_exclusive(3, 7) == (3, 8)


def test_cmeee_inclusive_offsets_nested_kept_and_bad_spans_counted(tmp_path):
    path = write(tmp_path / "cmeee.txt",
                 "左肺癌伴咳嗽。|||0    2    dis|||0    1    bod|||4    5    sym|||\r\n"
                 "\r\n"
                 "无殊。|||2    1    sym|||1    9    sym|||\r\n"
                 "|||\r\n")
    examples, report = read_cmeee(path)
    assert spans(examples[0]) == [(0, 2, "bod"), (0, 3, "dis"), (4, 6, "sym")]
    assert examples[0].text[4:6] == "咳嗽"
    assert examples[1].spans == [] and examples[1].source == f"{path}:3"
    assert report.skipped == {"empty span (end before start)": 1, "span outside text": 1, "empty text": 1}
    assert report.records == 3 and report.examples == 2
    assert report.where["empty span (end before start)"] == [f"{path}:3 (2 1 sym (end inclusive))"]


@pytest.mark.parametrize("line, problem", [
    ("没有分隔符的句子", "no '|||' after the text"),
    ("句子|||0    1|||", "does not have 3 fields"),
    ("句子|||a    1    dis|||", "start is not an integer"),
])
def test_cmeee_malformed_lines(tmp_path, line, problem):
    path = write(tmp_path / "cmeee.txt", "好。|||\n" + line + "\n")
    with pytest.raises(CorpusError, match=problem) as err:
        read_cmeee(path)
    assert err.value.where == f"{path}:2" and "text|||start" in str(err.value)


def test_cblue_json_inclusive_with_record_line_numbers(tmp_path):
    records = [
        {"text": "右肺结节", "entities": [{"start_idx": 0, "end_idx": 1, "type": "bod", "entity": "右肺"},
                                      {"start_idx": 0, "end_idx": 3, "type": "dis", "entity": "右肺结节"}]},
        {"text": "头痛三天", "entities": [{"start_idx": 1, "end_idx": 2, "type": "sym", "entity": "头痛"}]},
    ]
    path = write(tmp_path / "CMeEE_dev.json", json.dumps(records, ensure_ascii=False, indent=2))
    examples, report = read_cblue_ner(path)
    assert spans(examples[0]) == [(0, 2, "bod"), (0, 4, "dis")]
    assert spans(examples[1]) == [(0, 2, "sym")]  # moved to the stated mention
    assert report.repaired == {"span moved to its mention": 1}
    assert examples[0].source == f"{path}:2"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[int(examples[1].source.rsplit(":", 1)[1]) - 1].strip() == "{"


def test_cblue_json_mention_not_in_text_is_skipped_or_refused(tmp_path):
    records = [{"text": "头痛", "entities": [{"start_idx": 0, "end_idx": 1, "type": "sym", "entity": "发热"}]}]
    path = write(tmp_path / "x.json", json.dumps(records, ensure_ascii=False))
    examples, report = read_cblue_ner(path)
    assert examples[0].spans == [] and report.skipped == {"span text differs from its mention": 1}
    with pytest.raises(CorpusError, match="span text differs from its mention"):
        read_cblue_ner(path, strict=True)


def test_broken_json_array_names_the_line(tmp_path):
    path = write(tmp_path / "x.json", '[\n  {"text": "好", "entities": []},\n  {"text": "坏" "entities": []}\n]\n')
    with pytest.raises(CorpusError) as err:
        read_cblue_ner(path)
    assert err.value.where == f"{path}:3" and "invalid JSON" in str(err.value)


def test_cluener_exclusive_offsets_checked_against_entity(tmp_path):
    lines = [
        {"text": "小明在腾讯工作", "entity_list": [
            {"entity_type": "name", "entity": "小明", "entity_index": {"begin": 0, "end": 2}},
            {"entity_type": "company", "entity": "腾讯", "entity_index": {"begin": 3, "end": 5}}]},
        {"text": "去故宫", "entity_list": []},
    ]
    path = write(tmp_path / "train.txt", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n")
    examples, report = read_cluener(path)
    assert spans(examples[0]) == [(0, 2, "name"), (3, 5, "company")]
    assert examples[1].source == f"{path}:2" and not report.problems


def test_cluener_original_label_layout_is_inclusive(tmp_path):
    line = {"text": "小明在腾讯工作", "label": {"name": {"小明": [[0, 1]]}, "company": {"腾讯": [[3, 4]]}}}
    path = write(tmp_path / "dev.json", json.dumps(line, ensure_ascii=False) + "\n")
    examples, _ = read_cluener(path)
    assert spans(examples[0]) == [(0, 2, "name"), (3, 5, "company")]


def test_json_spans_generic_format(tmp_path):
    path = write(tmp_path / "mine.jsonl",
                 '{"text": "我爱北京", "spans": [{"start": 2, "end": 4, "label": "LOC"}]}\n'
                 '\n'
                 '{"text": "张三", "entities": [{"start": 0, "end": 2, "type": "PER", "text": "张三"}, '
                 '{"start": 0, "end": 2, "type": "PER"}]}\n'
                 '{"text": "", "spans": []}\n')
    examples, report = read_json_spans(path)
    assert spans(examples[0]) == [(2, 4, "LOC")] and spans(examples[1]) == [(0, 2, "PER")]
    assert examples[1].source == f"{path}:3"
    assert report.skipped == {"duplicate span": 1, "empty text": 1}


def test_json_spans_bad_line_is_located(tmp_path):
    path = write(tmp_path / "mine.jsonl", '{"text": "好", "spans": []}\n{"text": 3}\n')
    with pytest.raises(CorpusError, match="string field 'text'") as err:
        read_json_spans(path)
    assert err.value.where == f"{path}:2"


def _ccks_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data_origin/", "")
        z.writestr("data_origin/一般项目/一般项目-2.txtoriginal.txt", "男，45岁，头痛。\r\n\r\n")
        z.writestr("data_origin/一般项目/一般项目-2.txt", "头痛\t6\t7\t症状和体征\r\n")
        z.writestr("data_origin/一般项目/一般项目-10.txtoriginal.txt", "左膝关节疼痛。")
        z.writestr("data_origin/一般项目/一般项目-10.txt",
                   "左膝关节\t0\t3\t身体部位\n疼痛\t4\t5\t症状和体征\n发热\t0\t1\t症状和体征\n")
        z.writestr("data_origin/病史特点/病史特点-1.txt", "咳嗽\t0\t1\t症状和体征\n")
    return path


def test_ccks2017_zip_records_inclusive_and_checked(tmp_path):
    archive = _ccks_zip(tmp_path / "data_origin.zip")
    examples, report = read_ccks2017(archive)
    assert [e.text for e in examples] == ["男，45岁，头痛。", "左膝关节疼痛。"]  # natural order: 2 before 10
    assert spans(examples[0]) == [(6, 8, "症状和体征")]
    assert spans(examples[1]) == [(0, 4, "身体部位"), (4, 6, "症状和体征")]
    assert examples[0].source == f"{archive}!data_origin/一般项目/一般项目-2.txtoriginal.txt:1"
    assert report.skipped == {"span text differs from its mention": 1,
                              "annotation file without its .txtoriginal.txt text": 1}
    assert report.where["span text differs from its mention"][0].startswith(
        f"{archive}!data_origin/一般项目/一般项目-10.txt:3")


def test_ccks2017_malformed_annotation_line(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("d/a-1.txtoriginal.txt", "头痛")
        z.writestr("d/a-1.txt", "头痛 0 1 症状和体征\n")
    with pytest.raises(CorpusError, match="1 tab-separated fields instead of 4") as err:
        read_ccks2017(archive)
    assert err.value.where == f"{archive}!d/a-1.txt:1"


# ----------------------------------------------------------------------------------------------
# Classification and pairs


def test_tsv_labels_stripped_quotes_kept_and_problems_counted(tmp_path):
    path = write(tmp_path / "train.tsv",
                 'label\ttext_a\n1\t房间"很"干净\n    0\t服务差\n1\t   \n\t没有标签\n0\t早餐一般\n')
    examples, report = read_table_cls(path, text_column="text_a")
    assert [(e.text, e.label) for e in examples] == [('房间"很"干净', "1"), ("服务差", "0"), ("早餐一般", "0")]
    assert examples[1].source == f"{path}:3"
    assert report.repaired == {"label with surrounding whitespace (stripped)": 1}
    assert report.skipped == {"empty text": 1, "missing label": 1}
    assert report.records == 5 and report.labels == {"0": 2, "1": 1}


def test_tsv_strict_refuses_problems(tmp_path):
    path = write(tmp_path / "train.tsv", "label\ttext_a\n    0\t服务差\n")
    with pytest.raises(CorpusError, match="label with surrounding whitespace"):
        read_table_cls(path, text_column="text_a", strict=True)


def test_csv_with_bom_and_quoted_commas(tmp_path):
    path = write(tmp_path / "htl.csv", '\ufefflabel,review\r\n1,"好,很好"\r\n0,"说""一般"""\r\n')
    examples, _ = read_table_cls(path, text_column="review")
    assert [(e.text, e.label) for e in examples] == [("好,很好", "1"), ('说"一般"', "0")]
    assert examples[1].source == f"{path}:3"


def test_csv_inside_zip_with_category_column(tmp_path):
    archive = tmp_path / "shop.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("shop.csv", "cat,label,review\n书籍,1,内容不错\n水果,0,不新鲜\n")
    by_sentiment, _ = read_table_cls(archive, text_column="review")
    by_category, _ = read_table_cls(archive, text_column="review", label_column="cat", member="shop.csv")
    assert [e.label for e in by_sentiment] == ["1", "0"]
    assert [e.label for e in by_category] == ["书籍", "水果"]
    assert by_category[0].source == f"{archive}!shop.csv:2"


def test_table_missing_column_lists_the_header(tmp_path):
    path = write(tmp_path / "a.csv", "label,review\n1,好\n")
    with pytest.raises(CorpusError, match="no column 'text'") as err:
        read_table_cls(path)
    assert "['label', 'review']" in str(err.value) and err.value.where == f"{path}:1"


def test_table_wrong_field_count(tmp_path):
    path = write(tmp_path / "a.tsv", "label\ttext\n1\t好\n0\t坏\t多余\n")
    with pytest.raises(CorpusError, match="3 fields where the header has 2") as err:
        read_table_cls(path)
    assert err.value.where == f"{path}:3" and err.value.line == "0\t坏\t多余"


def test_table_pair_bq_style(tmp_path):
    path = write(tmp_path / "dev.csv", "\ufeffsentence1,sentence2,label\n怎么借款,如何借钱,1\n还款日,额度,0\n")
    examples, report = read_table_pair(path)
    assert examples[0] == PairExample("怎么借款", "如何借钱", "1", f"{path}:2")
    assert report.duplicates == 0 and report.labels == {"1": 1, "0": 1}


def test_json_cls_array_with_query_key(tmp_path):
    records = [{"id": "s1", "query": "感冒吃什么药", "label": "治疗方案"},
               {"id": "s2", "query": "发烧怎么办", "label": None},
               {"id": "s3", "query": "感冒吃什么药", "label": "治疗方案"}]
    path = write(tmp_path / "qic.json", json.dumps(records, ensure_ascii=False, indent=2))
    examples, report = read_json_cls(path, text_key="query")
    assert [e.text for e in examples] == ["感冒吃什么药", "感冒吃什么药"]
    assert report.skipped == {"missing label": 1} and report.duplicates == 1


def test_json_cls_missing_text_key_is_an_error(tmp_path):
    path = write(tmp_path / "ctc.json", json.dumps([{"id": "s1", "label": "Age"}]))
    with pytest.raises(CorpusError, match="no field 'text'") as err:
        read_json_cls(path)
    assert "text_key=" in str(err.value) and err.value.where == f"{path}:1"


def test_json_pair_no_gold_label_is_omitted_not_an_error(tmp_path):
    lines = [{"sentence1": "他在跑步", "sentence2": "他在运动", "label": "entailment"},
             {"sentence1": "天很蓝", "sentence2": "下雨了", "label": "-"}]
    path = write(tmp_path / "dev.json", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines))
    examples, report = read_json_pair(path, a_key="sentence1", b_key="sentence2", no_gold=["-"], strict=True)
    assert len(examples) == 1 and report.omitted == {"no gold label ('-')": 1} and report.problems == 0
    assert report.records == 2


def test_json_pair_numeric_labels_become_strings(tmp_path):
    path = write(tmp_path / "sts.json", json.dumps([{"text1": "a", "text2": "b", "label": 1}]))
    examples, _ = read_json_pair(path)
    assert examples[0].label == "1"


# ----------------------------------------------------------------------------------------------
# Report, flattening, hygiene, dispatch


def test_flatten_examples_counts_drops_per_label():
    examples = [NerExample("左肺癌", [Span(0, 2, "bod"), Span(0, 3, "dis")], "f:1"),
                NerExample("右肾结石和肝", [Span(0, 2, "bod"), Span(0, 4, "dis"), Span(5, 6, "bod")], "f:2")]
    flat, report = flatten_examples(examples, policy="longest")
    assert [spans(e) for e in flat] == [[(0, 3, "dis")], [(0, 4, "dis"), (5, 6, "bod")]]
    assert report.dropped_spans == {"bod": 2} and report.skipped["span overlaps a kept span"] == 2
    assert examples[0].spans == [Span(0, 2, "bod"), Span(0, 3, "dis")]  # originals untouched
    first, first_report = flatten_examples(examples, policy="first")
    assert first_report.dropped_spans == {"dis": 2}


def test_duplicates_and_overlap():
    train = [TextExample("好", "1"), TextExample("好", "1"), TextExample("差", "0")]
    test = [TextExample("好", "1"), TextExample("一般", "0"), TextExample("差", "1")]
    assert duplicates(train) == 1 and overlap(train, test) == 2
    pairs = [PairExample("a", "b", "1"), PairExample("b", "a", "1"), PairExample("a", "b", "0")]
    assert duplicates(pairs) == 1


def test_report_summary_merge_and_dict():
    a, b = ReadReport("a.txt"), ReadReport("b.txt")
    a.skip("empty text", "a.txt:3")
    b.repair("tags: missing end", "b.txt:9", n=2)
    b.omit("no gold label ('-')", "b.txt:4")
    a.merge(b)
    assert a.problems == 3 and a.omitted["no gold label ('-')"] == 1
    summary = a.summary()
    assert "skipped 1 x empty text: a.txt:3" in summary and "repaired 2 x tags: missing end: b.txt:9" in summary
    assert json.loads(json.dumps(a.as_dict()))["repaired"] == {"tags: missing end": 2}


def test_report_keeps_only_first_locations():
    report = ReadReport("x", max_locations=2)
    for i in range(5):
        report.skip("empty text", f"x:{i}")
    assert report.skipped["empty text"] == 5 and report.where["empty text"] == ["x:0", "x:1"]


def test_read_dispatches_by_name_and_rejects_unknown(tmp_path):
    path = write(tmp_path / "a.tsv", "label\ttext\n1\t好\n")
    examples, _ = read(path, "table-cls")
    assert examples == [TextExample("好", "1", f"{path}:2")]
    with pytest.raises(ValueError, match="Did you mean 'table-cls'"):
        read(path, "table_cls")
    with pytest.raises(ValueError, match="does not take option.*text_key"):
        read(path, "table-cls", text_key="x")
    assert set(READERS) >= {"columns", "cmeee", "cblue-ner", "cluener", "ccks2017", "json-spans",
                            "table-cls", "json-cls", "table-pair", "json-pair"}


def test_missing_file_and_wrong_zip_member(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus file not found"):
        read_columns(tmp_path / "nope.bio")
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("train.txt", "好\tO\n")
        z.writestr("test.txt", "坏\tO\n")
    with pytest.raises(CorpusError, match="holds 2 files"):
        read_columns(archive)
    with pytest.raises(CorpusError, match="did you mean 'train.txt'"):
        read_columns(archive, member="trian.txt")


def test_label_names_rename_labels_after_cleaning(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_text("label\ttext\n1\t好\n 0\t差\n2\t一般\n", encoding="utf-8")
    examples, report = read_table_cls(path, label_names={"0": "negative", "1": "positive"})
    assert [e.label for e in examples] == ["positive", "negative", "2"]  # unmapped labels stay as they are
    assert report.problems  # the padded " 0" is still reported as repaired
