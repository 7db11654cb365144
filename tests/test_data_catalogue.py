"""The dataset catalogue: parsing, name and data-root resolution, checksums, and the real corpora.

The tests at the bottom read every catalogued split from the real data root (``../shared/corpora``
or ``$TOOLKIT_DATA_ROOT``) and check the counts stated in its README; they skip when it is absent.
"""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import pytest

from toolkit.data import catalogue
from toolkit.data.catalogue import (UnknownDatasetError, dataset_info, dataset_path, file_sha256, list_datasets,
                                    load_catalogue, load_dataset, resolve_data_root)
from toolkit.data.readers import READER_TASKS
from toolkit.data.validation import flatten_examples, overlap

EXPECTED_IDS = {"cmeee", "ccks2017", "msra", "resume", "cluener", "chnsenticorp", "reviews-online-shopping",
                "reviews-waimai", "reviews-htl", "chip-ctc", "kuake-qic", "chip-sts", "kuake-qqr", "bq", "ocnli"}


# ----------------------------------------------------------------------------------------------
# The catalogue file


def test_catalogue_lists_every_public_dataset():
    assert set(load_catalogue()) == EXPECTED_IDS


@pytest.mark.parametrize("dataset_id", sorted(EXPECTED_IDS))
def test_catalogue_entries_are_complete(dataset_id):
    spec = dataset_info(dataset_id)
    assert spec.task in ("ner", "cls", "pair") and spec.labels and spec.licence and spec.source
    for split, split_spec in spec.splits.items():
        reader, _ = spec.reader_for(split)
        assert READER_TASKS[reader] == spec.task
        assert re.fullmatch(r"[0-9a-f]{64}", split_spec.sha256 or "")
        assert split_spec.count and not Path(split_spec.path).is_absolute()


def test_list_datasets_by_task():
    assert "cmeee:train" in list_datasets("ner") and "cmeee:train" not in list_datasets("cls")
    assert {"msra:train", "msra:test"} <= set(list_datasets())
    assert all(name.split(":")[0] in EXPECTED_IDS for name in list_datasets())


def test_unknown_dataset_lists_known_ids_and_closest_match():
    with pytest.raises(UnknownDatasetError) as err:
        load_dataset("cmee:train", data_root="/nonexistent")
    message = str(err.value)
    assert "Did you mean 'cmeee:train'?" in message and "chnsenticorp:test" in message
    assert isinstance(err.value, KeyError)


def test_unknown_split_and_missing_split():
    with pytest.raises(UnknownDatasetError, match="unknown split 'tst' of dataset 'msra'. Did you mean 'msra:test'"):
        load_dataset("msra:tst")
    with pytest.raises(UnknownDatasetError, match="name a split of 'msra': 'msra:train', 'msra:test'"):
        load_dataset("msra")


def test_catalogue_rejects_unknown_keys(tmp_path):
    path = tmp_path / "catalogue.yaml"
    path.write_text("format_version: 1\ndatasets:\n  x:\n    task: cls\n    reader: table-cls\n"
                    "    splits:\n      all: {path: a.tsv, sha265: abc}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown key\\(s\\) sha265"):
        load_catalogue(path)


def test_catalogue_rejects_reader_of_another_task(tmp_path):
    path = tmp_path / "catalogue.yaml"
    path.write_text("format_version: 1\ndatasets:\n  x:\n    task: ner\n    reader: table-cls\n"
                    "    splits:\n      all: {path: a.tsv}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="reads cls data, not ner"):
        load_catalogue(path)


# ----------------------------------------------------------------------------------------------
# Data root and checksums


def test_data_root_argument_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLKIT_DATA_ROOT", "/somewhere/else")
    assert resolve_data_root(tmp_path) == tmp_path


def test_data_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLKIT_DATA_ROOT", str(tmp_path))
    assert resolve_data_root() == tmp_path
    assert dataset_path("bq:dev") == tmp_path / "pair" / "bq" / "dev.csv"


def test_data_root_default_is_shared_corpora_beside_the_repository(tmp_path, monkeypatch):
    monkeypatch.delenv("TOOLKIT_DATA_ROOT", raising=False)
    monkeypatch.setattr(catalogue, "DEFAULT_DATA_ROOT", tmp_path)
    assert resolve_data_root() == tmp_path
    assert catalogue.REPO_ROOT == Path(catalogue.__file__).resolve().parent.parent.parent
    assert (catalogue.REPO_ROOT / "toolkit").is_dir()


def test_no_data_root_explains_the_three_options(tmp_path, monkeypatch):
    monkeypatch.delenv("TOOLKIT_DATA_ROOT", raising=False)
    monkeypatch.setattr(catalogue, "DEFAULT_DATA_ROOT", tmp_path / "missing")
    with pytest.raises(FileNotFoundError) as err:
        resolve_data_root()
    message = str(err.value)
    assert "data_root=" in message and "TOOLKIT_DATA_ROOT" in message and "shared/corpora" in message


def test_load_from_own_copy_warns_on_checksum_and_count(tmp_path, caplog):
    path = tmp_path / "cls" / "chnsenticorp" / "test.tsv"
    path.parent.mkdir(parents=True)
    path.write_text("label\ttext_a\n1\t房间干净\n0\t服务太差\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="toolkit.data.catalogue"):
        examples, report = load_dataset("chnsenticorp:test", data_root=tmp_path)
    assert [e.label for e in examples] == ["positive", "negative"] and report.records == 2
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "sha256" in messages and "expects 1200" in messages


def test_missing_split_file_names_the_expected_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected pair/bq/dev.csv under the data root"):
        load_dataset("bq:dev", data_root=tmp_path)


def test_sha256_is_computed_once_per_file(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("好\n", encoding="utf-8")
    first = file_sha256(path)
    assert first == hashlib.sha256("好\n".encode("utf-8")).hexdigest()
    calls = []
    import toolkit.files

    monkeypatch.setattr(toolkit.files.hashlib, "sha256", lambda: calls.append(1))
    assert file_sha256(path) == first and calls == []


# ----------------------------------------------------------------------------------------------
# The real corpora (skipped when the data root is absent)


def _real_root() -> Path | None:
    try:
        root = resolve_data_root()
    except FileNotFoundError:
        return None
    return root if (root / "ner" / "cmeee" / "train.txt").is_file() else None


@pytest.fixture(scope="module")
def real():
    """Load each real split at most once per module: ``real("cmeee:train") -> (examples, report)``."""
    root = _real_root()
    if root is None:
        pytest.skip("real corpora not found (set TOOLKIT_DATA_ROOT or place them at ../shared/corpora)")
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = load_dataset(name, data_root=root)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list_datasets())
def test_real_split_matches_catalogue_count_and_checksum(real, name, caplog):
    with caplog.at_level(logging.WARNING, logger="toolkit.data.catalogue"):
        examples, report = real(name)
    dataset, split = name.split(":")
    spec = dataset_info(dataset)
    assert report.records == spec.splits[split].count
    assert report.examples == len(examples) == report.records - sum(report.omitted.values()) - (
        report.skipped["empty text"] + report.skipped["missing label"])
    assert not [r for r in caplog.records if "sha256" in r.getMessage()]
    assert set(report.labels) <= set(spec.labels)


@pytest.mark.parametrize("name, count", [
    ("cmeee:train", 15000), ("cmeee:dev", 5000), ("ccks2017:train", 1198), ("msra:train", 50658),
    ("msra:test", 4631), ("resume:train", 3821), ("resume:dev", 463), ("resume:test", 477),
    ("cluener:train", 10748), ("cluener:dev", 1343), ("chnsenticorp:train", 9600), ("chnsenticorp:dev", 1200),
    ("chnsenticorp:test", 1200), ("reviews-online-shopping:all", 62774), ("reviews-waimai:all", 11987),
    ("reviews-htl:all", 7766), ("chip-ctc:train", 22962), ("chip-ctc:dev", 7682), ("kuake-qic:train", 6931),
    ("kuake-qic:dev", 1955), ("chip-sts:train", 16000), ("chip-sts:dev", 4000), ("kuake-qqr:train", 15000),
    ("kuake-qqr:dev", 1600), ("bq:dev", 10000), ("bq:test", 10000), ("ocnli:train", 10000), ("ocnli:dev", 3000),
])
def test_real_counts_from_the_data_readme(real, name, count):
    assert real(name)[1].records == count


def test_real_cmeee_labels_and_known_defects(real):
    _, train = real("cmeee:train")
    readme = {"bod": 17697, "dis": 15843, "sym": 12269, "pro": 6332, "dru": 3930, "ite": 2581, "mic": 1908,
              "equ": 888, "dep": 348}
    assert train.skipped == {"empty span (end before start)": 2}  # 'pro' and 'mic' with end < start
    assert train.labels == {k: v - (k in ("pro", "mic")) for k, v in readme.items()}
    dev_txt, dev_json = real("cmeee:dev"), real("cmeee:dev-json")
    assert [e.spans for e in dev_txt[0]] == [e.spans for e in dev_json[0]]


def test_real_cmeee_flattening_reports_drops_per_label(real):
    flat, report = flatten_examples(real("cmeee:train")[0], policy="longest")
    assert sum(report.dropped_spans.values()) > 3000 and report.dropped_spans.most_common(1)[0][0] == "bod"
    assert report.spans + sum(report.dropped_spans.values()) == real("cmeee:train")[1].spans


def test_real_msra_split_and_repairs(real):
    test_examples, test = real("msra:test")
    train_examples, train = real("msra:train")
    assert sum(len(e.text) for e in test_examples) == 172601
    assert sum(len(e.text) for e in train_examples) == 2169879
    assert test.labels == {"LOC": 2877, "ORG": 1331, "PER": 1984}
    total = train.repaired["tags: inside without begin"] + test.repaired["tags: inside without begin"]
    assert total == 17 and set(train.repaired) | set(test.repaired) == {"tags: inside without begin"}


def test_real_ccks2017_labels(real):
    assert real("ccks2017:train")[1].labels == {"身体部位": 10719, "检查和检验": 9546, "症状和体征": 7831,
                                                "治疗": 1048, "疾病和诊断": 722}


def test_real_resume_and_cluener_labels(real):
    assert len(real("resume:train")[1].labels) == 8 and len(real("cluener:train")[1].labels) == 10
    assert not real("cluener:train")[1].problems and not real("cluener:dev")[1].problems


def test_real_chnsenticorp_leakage_and_stray_label(real):
    train, dev, test = (real(f"chnsenticorp:{s}") for s in ("train", "dev", "test"))
    assert overlap(train[0], test[0]) == 331 and overlap(train[0], dev[0]) == 338
    assert train[1].duplicates == 1351
    assert test[1].repaired == {"label with surrounding whitespace (stripped)": 1}


def test_real_classification_label_sets(real):
    assert len(real("chip-ctc:train")[1].labels) == 44 and real("chip-ctc:train")[1].duplicates == 647
    assert len(real("kuake-qic:train")[1].labels) == 11
    assert set(real("kuake-qqr:train")[1].labels) == {"0", "1", "2"}


def test_real_ocnli_no_gold_labels_are_omitted(real):
    assert real("ocnli:train")[1].omitted == {"no gold label ('-')": 15}
    assert real("ocnli:dev")[1].omitted == {"no gold label ('-')": 50}
    assert set(real("ocnli:dev")[1].labels) == {"entailment", "neutral", "contradiction"}
