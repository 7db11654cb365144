from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.text.normalize import NormalizationConfig, Normalizer, is_blank

ALPHABET = "醫院門診發熱咳嗽糖尿病患者張三北京ＣＴＭＲＩ１２３，。 \u3000\u200b\u200d\ufeff\x00\x07\t\r\nabcAB😀𠮷"


def check_map(norm, n):
    assert len(n.starts) == len(n.ends) == len(n.text)
    assert np.all(n.starts >= 0) and np.all(n.ends <= len(n.original)) and np.all(n.ends > n.starts)
    assert np.all(np.diff(n.starts) >= 0)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=60))
def test_map_is_monotone_and_in_bounds(text):
    norm = Normalizer()
    n = norm(text)
    check_map(norm, n)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=60))
def test_every_char_maps_to_its_source_without_opencc(text):
    norm = Normalizer(NormalizationConfig(opencc=None))
    n = norm(text)
    for i, ch in enumerate(n.text):
        src = n.original[n.starts[i] : n.ends[i]]
        assert norm(src).text == ch


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["\u200b", "\ufeff", "\x00", "\u200d", ""]), min_size=8, max_size=8))
def test_span_survives_inserted_invisible_characters(junk):
    clean = "患者張三在北京醫院"
    text = "".join(c + j for c, j in zip(clean, junk + [""]))
    n = Normalizer()(text)
    assert n.text == "患者张三在北京医院"
    start, end = n.to_original(2, 4)  # 张三
    assert text[start:end].replace("\u200b", "").replace("\ufeff", "").replace("\x00", "").replace("\u200d", "") == "張三"
    assert text[start] == "張"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("醫院門診", "医院门诊"),
        ("ＣＴ檢查１２３", "CT检查123"),
        ("a\u3000b\xa0c\td", "a b c d"),
        ("\ufeff发\u200b热\x07", "发热"),
        ("第一行\n第二行", "第一行\n第二行"),
        ("", ""),
    ],
)
def test_normalized_text(text, expected):
    assert Normalizer()(text).text == expected


def test_config_can_switch_steps_off():
    n = Normalizer(NormalizationConfig(opencc=None, fullwidth=False, invisible=False, whitespace=False))
    assert n("醫ＣＴ\u200b\u3000").text == "醫ＣＴ\u200b\u3000"


def test_unknown_settings_and_conversions_are_errors():
    with pytest.raises(ValueError, match="normalization settings: unknown keys"):
        NormalizationConfig.from_dict({"opencc": "t2s", "lowercase": True})
    with pytest.raises(ValueError, match="OpenCC"):
        Normalizer(NormalizationConfig(opencc="nope"))


def test_length_changing_conversion_keeps_exact_map(monkeypatch):
    norm = Normalizer(NormalizationConfig(opencc="t2s"))

    def fake(text):  # a conversion that expands one character into two
        return text.replace("㎎", "mg")

    monkeypatch.setattr(norm, "_convert", fake)
    n = norm("每次5㎎口服")
    assert n.text == "每次5mg口服"
    assert n.to_original(3, 5) == (3, 4)
    assert n.original[slice(*n.to_original(3, 5))] == "㎎"


def test_non_str_is_type_error():
    with pytest.raises(TypeError, match="expected a str"):
        Normalizer()(None)


@pytest.mark.parametrize("text, blank", [("", True), (" \u3000\n", True), ("\u200b\ufeff", True), (" a ", False)])
def test_is_blank(text, blank):
    assert is_blank(text) is blank
