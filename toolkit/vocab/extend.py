"""Extend a model folder's vocabulary with the characters (and domain terms) its corpus needs.

A character-level Chinese vocabulary still turns rare characters (``𠮷``, ``㐀``), unit symbols
(``㎎``), Roman numerals (``ⅱ``) and Greek letters (``μ``) into ``[UNK]``. :func:`extend_vocabulary`
finds them in a corpus (after the model's own normalisation, see :mod:`toolkit.vocab.scan`), adds
them, gives each new embedding row a meaningful start, and writes a new model folder that
:func:`toolkit.load` and ``transformers.AutoModel``/``AutoTokenizer`` load like any other.

How items are added (offsets stay exact):

* **Characters** go into the WordPiece vocabulary (``tokenizer.json``'s model vocab and
  ``vocab.txt``), so BERT's normaliser/pre-tokenizer still isolates every CJK character and
  punctuation mark: a new character is one token with the offsets of that character. A character
  the pre-tokenizer does not isolate (``㎎``, ``ⅱ``) gets ``c`` and ``##c`` so ``5㎎`` is ``5 ##㎎``.
* **Multi-character terms** are *added tokens* (``normalized=False``, matched on the text the
  model's normaliser produced). They cannot be WordPiece entries: the BERT normaliser puts spaces
  around every CJK character before WordPiece runs, so a multi-character CJK entry never matches.
  Added tokens are cut out before normalisation, with exact offsets, anywhere in the text.

Initial rows (``rules`` in the report), from the pieces the **old** tokenizer gives:

* ``own_form``: the character itself (only for a missing ``##c`` of a known ``c``);
* ``nfkc`` / ``t2s`` / ``s2t``: the mean of the rows of the old pieces of the character's NFKC form
  or OpenCC variant, the first one without ``[UNK]`` (``㎎`` -> ``mg``, ``ⅱ`` -> ``i ##i``,
  ``µ`` -> ``μ``, ``醫`` -> ``医``); for ``##c`` the first piece takes its ``##`` form when there is one;
* ``cjk_mean``: the mean of all single-CJK-character rows (``vocab_mean``: all non-special rows,
  for a vocabulary without CJK) when nothing known comes out;
* ``term_pieces``: a term gets the mean of its characters' rows (new characters included).

Multi-character tokens and NER: an entity boundary can fall inside an added term (``糖尿`` inside
``糖尿病``), and a tagger cannot learn that span. :func:`toolkit.vocab.scan.added_token_boundaries`
counts such boundaries in NER examples. For a model with a tagger head the policy is ``warn`` by
default: the count is logged and stored in the report, and training's feature report counts the
same spans again, so nothing is lost silently; a term list is usually made of entity-like strings
that help more than the rare cut spans cost, and often no gold data is at hand when extending.
``refuse`` raises :class:`TaggerBoundaryError` (how many, which terms) when any boundary falls
inside a term, or when terms are added to a tagger model without NER examples to check them on.
New single characters never cause it.

Example:
    >>> texts, ner = read_corpus(["notes.txt"])                                          # doctest: +SKIP
    >>> rep = extend_vocabulary("my-model", "my-model-ext", texts=texts, min_count=2)     # doctest: +SKIP
    >>> rep.before.char_rate, rep.after.char_rate, rep.rules                             # doctest: +SKIP
    (0.0021, 0.0, {'nfkc': 12, 'cjk_mean': 40})

Command line::

    toolkit vocab extend my-model --from-corpus notes.txt --out my-model-ext --min-count 2
    toolkit vocab extend my-model --terms terms.txt --ner-data train.txt --ner-format cmeee --out ext
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from ..errors import DestinationExistsError
from ..data.examples import NerExample
from .sources import EmbeddingSources
from .scan import (MAX_TERMS, MIN_TERM_COUNT, BoundaryReport, NewCharacter, UnkRate,
                   added_token_boundaries, find_new_characters, is_isolated, mine_terms,
                   unk_rate)

logger = logging.getLogger(__name__)

TaggerPolicy = Literal["warn", "refuse"]
REPORT_FILE = "vocab_extension.json"
_WEIGHT_FILES = ("config.json", "tokenizer.json", "vocab.txt", "README.md", "model.safetensors.index.json")


class TaggerBoundaryError(ValueError):
    """Added terms would put gold entity boundaries inside tokens (policy ``refuse``)."""


@dataclass
class VocabExtension:
    """What :func:`extend_vocabulary` did; ``to_dict()`` is also written to ``vocab_extension.json``."""

    model: str
    out: str
    vocab_size_before: int
    vocab_size_after: int
    before: UnkRate
    after: UnkRate
    characters: list[dict[str, Any]]
    terms: list[dict[str, Any]]
    rules: dict[str, int]
    scan: dict[str, int]
    boundaries: BoundaryReport | None = None
    tagger_policy: str = "warn"
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, max_items: int | None = None) -> dict[str, Any]:
        cut = (lambda xs: xs) if max_items is None else (lambda xs: xs[:max_items])
        return {
            "model": self.model, "out": self.out,
            "vocab_size": {"before": self.vocab_size_before, "after": self.vocab_size_after},
            "unk": {"before": self.before.to_dict(), "after": self.after.to_dict()},
            "added": {"characters": len(self.characters), "terms": len(self.terms),
                      "entries": self.vocab_size_after - self.vocab_size_before},
            "rules": self.rules, "scan": self.scan,
            "characters": cut(self.characters), "terms": cut(self.terms),
            "boundaries": self.boundaries.to_dict() if self.boundaries else None,
            "tagger_policy": self.tagger_policy, "warnings": self.warnings,
        }


# ------------------------------------------------------------------ tokenizer.json
def extend_tokenizer_json(data: dict[str, Any], entries: Sequence[str], terms: Sequence[str], start: int) -> dict[str, Any]:
    """A copy of a WordPiece ``tokenizer.json`` dict with ``entries`` in the model vocabulary and
    ``terms`` as added tokens (``normalized=False``), ids from ``start`` on in that order.

    >>> data = {"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "a": 1}}, "added_tokens": []}
    >>> new = extend_tokenizer_json(data, ["㎎", "##㎎"], ["糖尿病"], start=2)
    >>> new["model"]["vocab"]["##㎎"], new["added_tokens"][0]["id"]
    (3, 4)
    """
    model = data.get("model", {})
    if model.get("type") != "WordPiece":
        raise ValueError(f"vocabulary extension supports WordPiece (BERT-family) tokenizers; this one is "
                         f"{model.get('type')!r}. Use a model whose encoder has a BERT tokenizer.json")
    new = json.loads(json.dumps(data))
    vocab = new["model"]["vocab"]
    added = new.setdefault("added_tokens", [])
    taken = set(vocab) | {a["content"] for a in added}
    for item in list(entries) + list(terms):
        if item in taken:
            raise ValueError(f"{item!r} is already in the tokenizer; it cannot be added again")
        taken.add(item)
    next_id = start
    for entry in entries:
        vocab[entry] = next_id
        next_id += 1
    for term in terms:
        added.append({"id": next_id, "content": term, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": False})
        next_id += 1
    return new


def _vocab_lines(data: dict[str, Any]) -> list[str]:
    """``vocab.txt`` lines (line number = id) for the WordPiece vocabulary of ``data``; a hole (an id
    held by an added token, or an unused id) gets that token's text or ``[unusedN]``."""
    vocab = data["model"]["vocab"]
    by_id = {i: t for t, i in vocab.items()}
    added = {a["id"]: a["content"] for a in data.get("added_tokens", [])}
    return [by_id.get(i) or added.get(i) or f"[unused{i}]" for i in range(max(by_id) + 1)]


# ------------------------------------------------------------------ the extension
def _stored_dtype(folder: Path):
    """The dtype the encoder's weights are stored in (kept on save), float32 if unknown."""
    import torch
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return torch.float32
    with safe_open(str(files[0]), framework="pt") as f:
        keys = list(f.keys())
        key = next((k for k in keys if k.endswith("word_embeddings.weight")), keys[0])
        return f.get_tensor(key).dtype


def _select_terms(terms: Sequence[str], mined: Sequence[tuple[str, int]], texts: Sequence[str], normalizer, old_tok,
                  chars: list[NewCharacter], warnings: list[str]) -> list[dict[str, Any]]:
    vocab = old_tok.hf.backend_tokenizer.get_vocab(with_added_tokens=True)
    known_chars = {c.char for c in chars}
    joined = "\n".join(texts)  # one C-level scan per term
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for raw, source in [(t, "user") for t in terms] + [(t, "mined") for t, _ in mined]:
        term = normalizer(raw).text.strip()
        if not term or term in seen:
            continue
        seen.add(term)
        count = joined.count(term)
        if any(c.isspace() for c in term):
            warnings.append(f"term {raw!r} skipped: it contains a space (added tokens are matched as one piece)")
            logger.warning(warnings[-1])
        elif len(term) == 1:
            if term not in vocab and term not in known_chars:
                entries = (term,) if is_isolated(term) else (term, "##" + term)
                chars.append(NewCharacter(term, tuple(e for e in entries if e not in vocab), count))
                known_chars.add(term)
        elif term in vocab or len(old_tok.encode([term])[0][0]) == 1:
            logger.info("term %r is already a single token", term)
        else:
            out.append({"term": term, "count": count, "source": source})
    return out


def _check_tagger(manifest, term_ids: list[int], new_tok, normalizer, ner_examples, policy: TaggerPolicy,
                  warnings: list[str]) -> BoundaryReport | None:
    report = added_token_boundaries(ner_examples, new_tok, normalizer, set(term_ids)) if term_ids and ner_examples else None
    from .. import kinds

    taggers = [t for t, s in manifest.tasks.items() if kinds.get(s.kind).data == "ner"]  # heads that read entity spans
    if not (taggers and term_ids):
        return report
    if report is None:
        msg = (f"{len(term_ids)} multi-character terms added to a model with tagger head(s) {taggers} and no NER "
               "examples to check them on: entity boundaries inside a term cannot be learnt. Give NER examples "
               "(--ner-data FILE --ner-format FMT) to count them")
    elif report.boundaries:
        msg = (f"{report.summary()} (tagger head(s) {taggers}); such spans cannot be learnt or predicted: "
               "remove those terms from the term list")
    else:
        return report
    if policy == "refuse":
        raise TaggerBoundaryError(msg + " (or accept this with tagger_policy='warn', --tagger-policy warn)")
    logger.warning(msg)
    warnings.append(msg)
    return report


def extend_vocabulary(
    model: str | Path,
    out: str | Path,
    *,
    texts: Sequence[str] = (),
    terms: Sequence[str] = (),
    mine: bool = False,
    min_count: int = 2,
    max_new: int | None = 1000,
    min_term_count: int = MIN_TERM_COUNT,
    max_terms: int = MAX_TERMS,
    ner_examples: Sequence[NerExample] | None = None,
    tagger_policy: TaggerPolicy = "warn",
    overwrite: bool = False,
) -> VocabExtension:
    """Write ``out``: the model folder ``model`` with the characters ``texts`` need and the
    ``terms`` (given, and mined from ``texts`` when ``mine``) added to its tokenizer and encoder.

    Args:
        model: a model folder or registered name.
        out: the new model folder (must not exist or be empty unless ``overwrite``).
        texts: corpus texts as users write them (normalised here with the model's settings).
        terms: domain terms, one string each (normalised too); an added token matches anywhere in a
            text, without word boundaries (as Chinese needs; mind Latin terms such as ``CT`` in ``OCT``).
        mine: also mine terms from ``texts`` (:func:`toolkit.vocab.scan.mine_terms`).
        min_count, max_new: characters seen fewer times are left out; at most this many characters.
        min_term_count, max_terms: thresholds for mined terms.
        ner_examples: gold NER examples to count entity boundaries inside added terms.
        tagger_policy: ``"warn"`` or ``"refuse"`` (see the module docstring).
        overwrite: replace ``out`` if it exists.

    Heads, the manifest and the model card are copied (the card gets a section on the extension);
    for a registered name that selects some of its folder's heads (``ner-medical``), only those;
    the encoder keeps the dtype it was stored in. Raises ``ValueError`` when there is nothing to add.

    Example:
        >>> rep = extend_vocabulary("my-model", "my-model-ext", texts=["服用5㎎", "𠮷野家"], min_count=1)  # doctest: +SKIP
        >>> [c["char"] for c in rep.characters], rep.after.unk_tokens                              # doctest: +SKIP
        (['㎎', '𠮷'], 0)
    """
    import torch
    from torch import nn

    from ..model.encoder import Encoder
    from ..model.folder import replace_folder
    from ..model.manifest import Manifest
    from ..text.normalize import Normalizer
    from ..registry import resolve
    from ..text.tokenization import TextTokenizer

    if tagger_policy not in ("warn", "refuse"):
        raise ValueError(f"tagger_policy must be 'warn' or 'refuse', got {tagger_policy!r}")
    path, selected = resolve(model)
    out = Path(out)
    if out.resolve() == path.resolve():
        raise ValueError("out must be a new folder, not the model folder itself")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DestinationExistsError(f"{out} exists and is not empty; choose another folder or pass overwrite=True (--overwrite)")
    manifest = Manifest.read(path)
    if selected is not None:  # a registered name's heads only, so load(out) behaves like load(model)
        manifest.tasks = {t: manifest.tasks[t] for t in manifest.select(selected)}
    enc_dir = path / manifest.encoder
    if not (enc_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{enc_dir} has no tokenizer.json; re-save the encoder with a fast tokenizer first")
    normalizer = Normalizer(manifest.normalization)
    old_tok = TextTokenizer.from_pretrained(enc_dir)
    norm_texts = [normalizer(t).text for t in texts]
    before = unk_rate(norm_texts, old_tok)
    chars, scan = find_new_characters(norm_texts, old_tok, None, min_count, max_new)
    warnings: list[str] = []
    mined = mine_terms(norm_texts, old_tok, None, min_term_count, max_terms) if mine else []
    term_items = _select_terms(terms, mined, norm_texts, normalizer, old_tok, chars, warnings)
    if not chars and not term_items:
        raise ValueError(f"nothing to add: no unknown character occurs at least {min_count} times in the corpus "
                         f"({len(texts)} texts) and no new term was given; lower --min-count or give --terms")

    data = json.loads((enc_dir / "tokenizer.json").read_text(encoding="utf-8"))
    encoder = Encoder.from_pretrained(enc_dir, local_files_only=True)
    old_emb = encoder.model.get_input_embeddings()
    weight = old_emb.weight.detach().float()
    ids_now = list(data["model"]["vocab"].values()) + [a["id"] for a in data.get("added_tokens", [])]
    if max(ids_now) + 1 > weight.shape[0]:
        raise ValueError(f"{enc_dir}: the tokenizer has ids up to {max(ids_now)} but the encoder only "
                         f"{weight.shape[0]} embedding rows; the folder is inconsistent")
    start = weight.shape[0]
    entries = [e for c in chars for e in c.entries]
    term_list = [t["term"] for t in term_items]
    new_data = extend_tokenizer_json(data, entries, term_list, start)
    term_ids = list(range(start + len(entries), start + len(entries) + len(term_list)))

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # same file system: renamed in
    try:
        new_enc = staging / manifest.encoder
        new_enc.mkdir(parents=True)
        for f in enc_dir.iterdir():  # tokenizer_config.json, special_tokens_map.json ...
            if f.is_file() and f.name not in _WEIGHT_FILES and f.suffix != ".safetensors":
                shutil.copy2(f, new_enc / f.name)
        (new_enc / "tokenizer.json").write_text(json.dumps(new_data, ensure_ascii=False, indent=2), encoding="utf-8")
        (new_enc / "vocab.txt").write_text("".join(t + "\n" for t in _vocab_lines(new_data)), encoding="utf-8")
        new_tok = TextTokenizer.from_pretrained(new_enc)
        if len(new_tok) != start + len(entries) + len(term_list):
            raise RuntimeError(f"the extended tokenizer has {len(new_tok)} tokens, expected {start + len(entries) + len(term_list)}")
        boundaries = _check_tagger(manifest, term_ids, new_tok, normalizer, ner_examples, tagger_policy, warnings)

        # initial rows: characters from the old tokenizer's pieces, then terms from the characters
        sources = EmbeddingSources(old_tok.hf.backend_tokenizer, old_tok.unk_id)
        rules: Counter[str] = Counter()
        rows, char_rules = [], {}
        for entry in entries:
            rule, ids = sources.for_entry(entry)
            rules[rule] += 1
            char_rules[entry] = rule
            rows.append(weight[ids].mean(0))
        full = torch.cat([weight, torch.stack(rows)]) if rows else weight
        chars_only = json.loads(json.dumps(new_data))
        chars_only["added_tokens"] = data.get("added_tokens", [])
        from tokenizers import Tokenizer

        chars_backend = Tokenizer.from_str(json.dumps(chars_only))
        term_rows = []
        for item in term_items:
            rule, ids = sources.for_term(item["term"], chars_backend, old_tok.unk_id)
            rules[rule] += 1
            item["rule"] = rule
            term_rows.append(full[ids].mean(0))
        if term_rows:
            full = torch.cat([full, torch.stack(term_rows)])
        new_emb = nn.Embedding.from_pretrained(full.contiguous(), freeze=False, padding_idx=old_emb.padding_idx)
        encoder.model.set_input_embeddings(new_emb)
        encoder.model.config.vocab_size = int(full.shape[0])
        encoder.save(new_enc, dtype=_stored_dtype(enc_dir))

        for task in manifest.tasks.values():
            (staging / task.weights).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path / task.weights, staging / task.weights)
        after = unk_rate(norm_texts, TextTokenizer.from_pretrained(new_enc))
        characters = [{"char": c.char, "entries": list(c.entries), "count": c.count,
                       "rules": {e: char_rules[e] for e in c.entries}} for c in chars]
        report = VocabExtension(str(path), str(out), len(old_tok), len(new_tok), before, after, characters, term_items,
                                dict(rules), scan, boundaries, tagger_policy, warnings)
        (staging / REPORT_FILE).write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        card = (path / "README.md").read_text(encoding="utf-8") if (path / "README.md").is_file() else manifest.default_card()
        (staging / "README.md").write_text(card.rstrip("\n") + "\n\n" + _card_section(report), encoding="utf-8")
        manifest.write(staging)  # last: it records the checksums of the files above
        replace_folder(staging, out)  # atomic: out is the old folder or the new one, never a mix
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    logger.info("extended %s -> %s: +%d entries, [UNK] chars %.4f%% -> %.4f%%", path, out, len(new_tok) - len(old_tok),
                100 * before.char_rate, 100 * after.char_rate)
    return report


def model_unk_rate(model: str | Path, texts: Sequence[str]) -> UnkRate:
    """``[UNK]`` rate of ``texts`` under a model folder's (or registered name's) normalisation and
    tokenizer; loads no weights. Use it to compare a model with its extension on any corpus.

    Example:
        >>> model_unk_rate("my-model", texts).char_rate, model_unk_rate("my-model-ext", texts).char_rate  # doctest: +SKIP
        (0.0021, 0.0)
    """
    return unk_rate(texts, *model_tokenizer(model))


def model_tokenizer(model: str | Path):
    """``(tokenizer, normalizer)`` of a model folder or registered name; loads no weights."""
    from ..model.manifest import Manifest
    from ..text.normalize import Normalizer
    from ..registry import resolve
    from ..text.tokenization import TextTokenizer

    path, _ = resolve(model)
    manifest = Manifest.read(path)
    return TextTokenizer.from_pretrained(path / manifest.encoder), Normalizer(manifest.normalization)


def _card_section(rep: VocabExtension) -> str:
    chars = "".join(c["char"] for c in rep.characters[:60])
    terms = "、".join(t["term"] for t in rep.terms[:30])
    return (f"## Vocabulary extension\n\nExtended from `{Path(rep.model).name}` by `toolkit vocab extend`: "
            f"{len(rep.characters)} characters ({chars}{' ...' if len(rep.characters) > 60 else ''}) and "
            f"{len(rep.terms)} terms{(' (' + terms + ')') if terms else ''}; vocabulary {rep.vocab_size_before:,} -> "
            f"{rep.vocab_size_after:,}. New rows: {', '.join(f'{k} {v}' for k, v in sorted(rep.rules.items()))}. "
            f"`[UNK]` share of the corpus characters {rep.before.char_rate:.4%} -> {rep.after.char_rate:.4%}. "
            f"Details: `{REPORT_FILE}`.\n")


__all__ = ["EmbeddingSources", "TaggerBoundaryError", "VocabExtension", "extend_tokenizer_json", "extend_vocabulary",
           "model_unk_rate"]
