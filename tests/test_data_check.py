"""``toolkit data check`` on tiny hand-written files: each problem planted once, found at its file:line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit.cli import main
from toolkit.data.check import DataCheck, check_data, check_examples
from toolkit.data.check_near import match_key, near_pairs
from toolkit.data.check_rules import Finding
from toolkit.data.check_text import invisible_chars, noise_flag, stray_whitespace, traditional_chars
from toolkit.data.examples import TextExample
from toolkit.errors import InputError


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def spans_line(text: str, *spans: tuple[int, int, str]) -> str:
    return json.dumps({"text": text, "spans": [{"start": s, "end": e, "label": lab} for s, e, lab in spans]}, ensure_ascii=False)


def finding(result: DataCheck, check: str) -> Finding:
    found = [f for f in result.findings if f.check == check]
    assert found, f"no {check!r} finding; got {[f.check for f in result.findings]}"
    return found[0]


def places(f: Finding) -> set[str]:
    """Every location a finding shows: its examples' sources and their related locations (without details)."""
    out = set()
    for ex in f.examples:
        out.add(Path(ex["source"]).name)
        out.update(Path(a.split(" (")[0]).name for a in ex.get("also", []))
    return out


@pytest.fixture
def ner_files(tmp_path):
    train = write(tmp_path / "train.jsonl", [
        spans_line("张三在北京工作", (0, 2, "PER"), (3, 5, "LOC")),                # 1
        spans_line("李四在上海工作", (0, 2, "PER"), (3, 5, "LOC")),                # 2
        spans_line("王五去广州上学", (0, 2, "PER"), (3, 5, "LOC")),                # 3: dev repeats it
        spans_line("赵六住在深圳", (0, 2, "PER"), (4, 6, "LOC")),                  # 4
        spans_line("刘七在大学读书", (0, 2, "PER"), (3, 5, "ORG")),                # 5: ORG has 3 examples
        spans_line("陈八在中心医院", (0, 2, "PER"), (3, 7, "ORG")),                # 6
        spans_line("北京成立新中心", (0, 2, "ORG")),                               # 7: 北京 LOC in 1, ORG here
        spans_line("钱九去上海开会", (0, 2, "PER"), (3, 5, "LOC")),                # 8
        spans_line("钱九去上海开会", (0, 2, "PER")),                               # 9: same text, other spans
        spans_line("患者三天前出现发热咳嗽症状明显"),                              # 10
        spans_line("患者三天前出现发热、咳嗽症状明显。"),                          # 11: near duplicate of 10
        spans_line("患者" * 60),                                                  # 12: long outlier
        spans_line("张三的名字有鑫", (0, 2, "PER")),                               # 13: 鑫 not in the tiny vocabulary
        spans_line("醫院門診"),                                                   # 14: traditional
        spans_line("发热\u200b咳嗽"),                                             # 15: zero-width space
        spans_line("请看http://example.com/ad"),                                  # 16: URL
    ])
    dev = write(tmp_path / "dev.jsonl", [
        spans_line("王五去广州上学", (0, 2, "PER"), (3, 5, "LOC")),                # 1: in train (line 3)
        spans_line("周十在明天到", (0, 2, "PER"), (3, 5, "TIME")),                 # 2: TIME never in train
    ])
    return train, dev


def test_ner_json_spans_each_problem_found_at_its_line(ner_files, tiny_folder):
    train, dev = ner_files
    result = check_data(train, dev, model=tiny_folder)
    assert result.kind == "ner" and result.splits["train"]["examples"] == 16
    tiny = finding(result, "tiny_classes")
    assert tiny.details["classes"] == {"ORG": 3} and tiny.examples[0]["source"] == f"{train}:5"
    surface = finding(result, "surface_form_types")
    assert surface.examples[0]["text"] == "北京" and surface.examples[0]["detail"] == "LOC 1, ORG 1"
    assert places(surface) == {"train.jsonl:7", "train.jsonl:1"}
    assert places(finding(result, "conflicting_labels")) == {"train.jsonl:8", "train.jsonl:9"}
    assert finding(result, "conflicting_labels").severity == "error"
    exact = finding(result, "exact_duplicates")
    assert exact.count == 1 and exact.examples[0]["source"] == f"{train}:9" and exact.examples[0]["also"] == [f"{train}:8"]
    near = finding(result, "near_duplicates")
    assert near.count == 1 and near.examples[0]["source"] == f"{train}:11" and near.examples[0]["detail"] == "equal after normalising"
    overlap = finding(result, "overlap")
    assert overlap.count == 1 and overlap.examples[0]["source"] == f"{dev}:1" and overlap.examples[0]["also"] == [f"{train}:3"]
    missing = finding(result, "labels_missing_from_train")
    assert missing.details["labels"] == ["TIME"] and missing.examples[0]["source"] == f"{dev}:2"
    assert finding(result, "length_outliers").examples[0]["source"] == f"{train}:12"
    assert finding(result, "over_max_length").examples[0]["source"] == f"{train}:12"  # tiny model: 32 tokens
    unknown = finding(result, "unknown_chars")
    assert unknown.details["top"] == {"鑫": 1} and unknown.examples[0]["source"] == f"{train}:13"
    trad = finding(result, "traditional_script")
    assert trad.count == 1 and trad.examples[0]["source"] == f"{train}:14" and trad.details["mixed"]
    invisible = finding(result, "invisible_chars")
    assert invisible.examples[0]["source"] == f"{train}:15" and invisible.details["counts"] == {"U+200B ZERO WIDTH SPACE": 1}
    noise = finding(result, "noise_terms")
    assert noise.examples[0] == {"source": f"{train}:16", "text": "http://example.com/ad", "detail": "url: 1 times in 1 texts"}


def test_ner_columns_keeps_reader_repairs_and_sentence_lines(tmp_path):
    train = write(tmp_path / "train.bio", [
        "张 B-PER", "三 I-PER", "在 O", "北 B-LOC", "京 I-LOC", "",   # sentence at line 1
        "李 I-PER", "四 I-PER", "来 O", "",                            # line 7: I- without B- (repaired)
        "北 B-ORG", "京 I-ORG", "大 O",                                # line 11: 北京 as ORG
    ])
    result = check_data(train)
    repaired = finding(result, "reader_repaired")
    assert repaired.severity == "info" and repaired.examples[0]["source"] == f"{train}:7"
    assert result.splits["train"]["reader"]["repaired"]
    surface = finding(result, "surface_form_types")
    assert surface.examples[0]["source"] == f"{train}:11" and places(surface) == {"train.bio:11", "train.bio:1"}


def test_cls_tsv_each_problem_found_at_its_line(tmp_path, tiny_folder):
    rows = ["label\ttext",
            "pos\t这家医院的医生很好",          # 2
            "pos\t治疗以后心情好多了",          # 3
            "pos\t检查很快也不痛",              # 4
            "pos\t医生说明得很明白",            # 5
            "pos\t门诊的人都很好",              # 6
            "neg\t等了三天还没有结果",          # 7
            "neg\t医院里人太多了",              # 8
            "neg\t手术后还是很痛",              # 9
            "neg\t药物吃了没有用",              # 10
            "neg\t医院里人太多了",              # 11: exact duplicate of 8
            "mid\t还可以的",                    # 12: 'mid' has 2 examples
            "mid\t门诊的人都很好",              # 13: same text as 6, other label
            "pos\t这家医院的医生很好！",        # 14: near duplicate of 2
            "neg\t" + "医院" * 50,              # 15: long
            "pos\t鑫字不认识",                  # 16: 鑫 unknown
            "neg\t醫院太遠",                    # 17: traditional
            "pos\t很好\u200b很好",              # 18: zero-width
            "neg\t请看 www.example.com 了解",   # 19: URL
            ]
    train = write(tmp_path / "train.tsv", rows)
    dev = write(tmp_path / "dev.tsv", ["label\ttext", "neg\t手术后还是很痛", "pos\t这家医院的医生很好。"])
    result = check_data(train, dev, model=tiny_folder)
    assert result.kind == "cls"
    tiny = finding(result, "tiny_classes")
    assert tiny.details["classes"] == {"mid": 2} and tiny.examples[0]["source"] == f"{train}:12"
    assert places(finding(result, "conflicting_labels")) == {"train.tsv:6", "train.tsv:13"}
    assert finding(result, "exact_duplicates").examples[0]["source"] == f"{train}:11"
    near = finding(result, "near_duplicates")
    assert near.examples[0]["source"] == f"{train}:14" and near.examples[0]["also"] == [f"{train}:2"]
    overlap = finding(result, "overlap")
    assert overlap.examples[0]["source"] == f"{dev}:2" and overlap.examples[0]["also"] == [f"{train}:9"]
    near_overlap = finding(result, "near_overlap")
    assert near_overlap.examples[0]["source"] == f"{dev}:3" and near_overlap.examples[0]["also"] == [f"{train}:2"]
    assert finding(result, "length_outliers").examples[0]["source"] == f"{train}:15"
    over = finding(result, "over_max_length")
    assert over.severity == "warning" and "truncated" in over.title and over.examples[0]["source"] == f"{train}:15"
    assert finding(result, "unknown_chars").examples[0]["source"] == f"{train}:16"
    assert finding(result, "traditional_script").examples[0]["source"] == f"{train}:17"
    assert finding(result, "invisible_chars").examples[0]["source"] == f"{train}:18"
    noise = finding(result, "noise_terms")
    assert noise.examples[0]["source"] == f"{train}:19" and noise.examples[0]["text"] == "www.example.com"


def test_pair_tsv_conflicts_overlap_and_tiny_class(tmp_path):
    header = "sentence1\tsentence2\tlabel"
    pairs = [f"{a}\t{b}\t{lab}" for a, b, lab in [
        ("发热怎么办", "发热如何处理", "1"), ("咳嗽吃什么药", "咳嗽用什么药", "1"), ("头痛的原因", "头痛是为什么", "1"),
        ("胃痛怎么办", "胃痛如何治疗", "1"), ("心脏病症状", "心脏病有什么表现", "1"), ("发热怎么办", "头痛怎么办", "0"),
        ("糖尿病能吃糖吗", "高血压能吃盐吗", "0"), ("肺炎会传染吗", "肝炎会传染吗", "0"), ("感冒多久好", "腹泻多久好", "0"),
        ("胃炎吃什么", "肾炎吃什么", "0"),
        ("发热怎么办", "发热如何处理", "0"),   # line 12: same pair as line 2, other label
        ("手术后多久出院", "术后几天出院", "2"),  # line 13: class '2' once
    ]]
    train = write(tmp_path / "train.tsv", [header] + pairs)
    dev = write(tmp_path / "dev.tsv", [header, "胃痛怎么办\t胃痛如何治疗\t1"])
    result = check_data(train, dev, kind="pair")
    assert result.kind == "pair"
    assert places(finding(result, "conflicting_labels")) == {"train.tsv:2", "train.tsv:12"}
    assert finding(result, "tiny_classes").examples[0]["source"] == f"{train}:13"
    overlap = finding(result, "overlap")
    assert overlap.examples[0]["source"] == f"{dev}:2" and overlap.examples[0]["also"] == [f"{train}:5"]
    assert not any(f.check == "unknown_chars" for f in result.findings)  # no model given: no vocabulary check


def test_clean_file_has_no_findings(tmp_path, tiny_folder):
    texts = {"pos": ["这家医院的医生很好", "治疗以后心情好多了", "检查很快也不痛", "医生说明得很明白", "门诊的人都很好"],
             "neg": ["等了三天还没有结果", "医院里人太多了", "手术后还是很痛", "药物吃了没有用", "早上去了下面才看完"]}
    train = write(tmp_path / "clean.tsv", ["label\ttext"] + [f"{lab}\t{t}" for lab, ts in texts.items() for t in ts])
    result = check_data(train, kind="cls", model=tiny_folder)
    assert result.findings == [], [f.title for f in result.findings]
    assert result.counts() == {"error": 0, "warning": 0, "info": 0}
    assert "Nothing to report." in result.to_markdown()


def test_cli_writes_json_and_strict_exits_1_on_errors(ner_files, tiny_folder, tmp_path, capsys):
    train, dev = ner_files
    out = tmp_path / "check.json"
    code = main(["data", "check", str(train), "--dev", str(dev), "--model", str(tiny_folder), "--json", str(out), "--max-examples", "2"])
    assert code == 0
    shown = capsys.readouterr().out
    assert shown.startswith("# Data check: ner") and f"`{train}:9`" in shown
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["kind"] == "ner" and data["counts"]["error"] >= 2
    assert all(len(f["examples"]) <= 2 for f in data["findings"])
    assert {f["check"] for f in data["findings"]} >= {"overlap", "conflicting_labels", "noise_terms"}
    assert main(["data", "check", str(train), "--dev", str(dev), "--model", "none", "--strict"]) == 1


@pytest.mark.parametrize("name, first, kind", [
    ("a.jsonl", '{"text": "好", "label": "pos"}', "cls"), ("a.jsonl", '{"text": "好", "spans": []}', "ner"),
    ("a.jsonl", '{"text1": "好", "text2": "好", "label": "1"}', "pair"), ("a.tsv", "label\ttext\npos\t好", "cls"),
    ("a.csv", "sentence1,sentence2,label\n好,好,1", "pair"), ("a.bio", "好 O", "ner")])
def test_kind_from_extension_or_first_fields(tmp_path, name, first, kind):
    assert check_data(write(tmp_path / name, [first])).kind == kind


def test_unknown_fields_ask_for_kind(tmp_path):
    path = write(tmp_path / "data.jsonl", ['{"review": "好", "label": "pos"}'])
    with pytest.raises(InputError, match="--kind"):
        check_data(path)
    assert check_data(path, kind="cls", options={"text_key": "review"}).kind == "cls"


def test_malformed_file_keeps_the_readers_file_line_error(tmp_path):
    from toolkit.errors import DataError

    path = write(tmp_path / "bad.jsonl", [spans_line("好", (0, 1, "X")), '{"text": "坏", "spans": [}'])
    with pytest.raises(DataError, match="bad.jsonl:2"):
        check_data(path)


def test_check_examples_needs_train():
    with pytest.raises(InputError, match="train"):
        check_examples({"dev": [TextExample("好", "pos", "a:1")]}, "cls")


# ---------------------------------------------------------------- helpers


def test_near_pairs_finds_near_texts_only():
    long = "患者三天前出现发热咳嗽伴有头痛和全身乏力今天来院就诊"
    keys = [long, long + "了", "今天天气很好我们去公园散步吧然后回家吃饭"]
    assert [(i, j) for i, j, _ in near_pairs(keys)] == [(0, 1)]
    assert match_key("Ｈｅｌｌｏ，醫院 ") == "hello醫院"
    assert match_key("醫院", simplify=lambda t: t.replace("醫", "医")) == "医院"


@pytest.mark.parametrize("term, flag", [("http://a.cn/x", "url"), ("www.abc.com", "url"), ("a.b@example.com", "email"),
                                        ("13812345678", "phone"), ("锟斤拷", "mojibake"), ("\ufffd\ufffd", "mojibake"),
                                        ("Ã©", "mojibake"), ("â€™", "mojibake"), ("café", None), ("<sub>", "markup"), ("&nbsp;", "markup"),
                                        ("扫码关注", "ad"), ("发热", None), ("2020", None)])
def test_noise_flag(term, flag):
    assert noise_flag(term) == flag


def test_character_helpers():
    assert invisible_chars("a\ufeffb\u00a0c\td") == ["U+FEFF ZERO WIDTH NO-BREAK SPACE", "U+00A0 NO-BREAK SPACE", "U+0009 <control>"]
    assert invisible_chars("发热\n咳嗽") == []
    assert traditional_chars("門診", "门诊") == ["門", "診"] and traditional_chars("门诊", "门诊") == []
    assert stray_whitespace("发热 咳嗽") == "space between Chinese characters"
    assert stray_whitespace("CT  正常") == "run of spaces" and stray_whitespace("CT 正常") is None
