"""The ``span`` head kind (GlobalPointer, nested NER): decoder, windows and offsets over a rule-based
runner, loss and targets, and the whole path (recipe, save, load, ONNX, int8, evaluation, finetune)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import in_threads, write_corpora
from toolkit import kinds
from toolkit.runtime.bundle import Bundle
from toolkit.data.examples import NerExample, Span
from toolkit.train.features import FeatureReport, build_features, collate
from toolkit.kinds import Item
from toolkit.kinds.span import SpanDecoder, best_threshold
from toolkit.model.manifest import TaskSpec
from toolkit.text.normalize import NormalizationConfig, Normalizer
from toolkit.runtime.pipeline import TextPipeline
from toolkit.results import Entity as ResultEntity
from toolkit.text.tokenization import TextTokenizer

LABELS = ["PER", "LOC", "ORG"]
NESTED = [
    {"text": "北京大学医院在北京", "spans": [{"start": 0, "end": 6, "label": "ORG"}, {"start": 0, "end": 2, "label": "LOC"}, {"start": 7, "end": 9, "label": "LOC"}]},
    {"text": "张三去上海医院", "spans": [{"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 7, "label": "ORG"}, {"start": 3, "end": 5, "label": "LOC"}]},
    {"text": "王五在广州", "spans": [{"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 5, "label": "LOC"}]},
]
SMALL = {"head_size": 16, "max_span": 8}


def examples(rows=NESTED) -> list[NerExample]:
    return [NerExample(r["text"], [Span(s["start"], s["end"], s["label"]) for s in r["spans"]]) for r in rows]


def spans_of(entities) -> list[tuple]:
    return [(e.text, e.label, e.start, e.end) for e in entities]


# ---------------------------------------------------------------- the decoder on hand-made logits
def logits_with(n: int, cells: dict[tuple[int, int, int], float], labels: int = 2) -> np.ndarray:
    """``[labels, n, n]`` of -10 with ``cells[(label, start, end_inclusive)] = logit``."""
    out = np.full((labels, n, n), -10.0, dtype=np.float32)
    for (c, s, e), v in cells.items():
        out[c, s, e] = v
    return out


def test_an_entity_inside_another_comes_back_with_it():
    dec = SpanDecoder(["A", "B"])
    found = dec.decode(logits_with(6, {(0, 0, 4): 3.0, (1, 1, 2): 2.0}))
    assert [(s, e, lab) for s, e, lab, _ in found] == [(0, 5, "A"), (1, 3, "B")]
    assert found[0][3] == pytest.approx(1 / (1 + np.exp(-3.0)))


def test_overlapping_spans_both_come_back_unless_flat():
    cells = {(0, 0, 2): 2.0, (1, 1, 4): 4.0, (0, 5, 5): 1.0}
    nested = SpanDecoder(["A", "B"]).decode(logits_with(6, cells))
    assert [(s, e, lab) for s, e, lab, _ in nested] == [(0, 3, "A"), (1, 5, "B"), (5, 6, "A")]
    flat = SpanDecoder(["A", "B"], flat=True).decode(logits_with(6, cells))
    assert [(s, e, lab) for s, e, lab, _ in flat] == [(1, 5, "B"), (5, 6, "A")], "the best span wins, overlapping ones go"


def test_flat_output_never_overlaps():
    rng = np.random.default_rng(0)
    found = SpanDecoder(["A", "B"], flat=True).decode(rng.normal(0, 3, size=(2, 20, 20)).astype(np.float32))
    assert found and all(a[1] <= b[0] for a, b in zip(found, found[1:]))


@pytest.mark.parametrize("logit, kept", [(0.0, True), (-1e-6, False), (1e-6, True)])
def test_a_span_exactly_at_the_threshold_is_kept(logit, kept):
    assert bool(SpanDecoder(["A"], threshold=0.5).decode(logits_with(3, {(0, 1, 1): logit}, labels=1))) is kept


def test_threshold_zero_keeps_every_allowed_span_and_one_only_saturated_ones():
    n, max_span = 5, 3
    every = SpanDecoder(["A"], threshold=0.0, max_span=max_span).decode(np.full((1, n, n), -50.0))
    assert sorted((s, e) for s, e, _, _ in every) == [(s, e) for s in range(n) for e in range(s + 1, min(n, s + max_span) + 1)]
    one = SpanDecoder(["A"], threshold=1.0).decode(logits_with(4, {(0, 0, 1): 40.0, (0, 2, 2): 20.0}, labels=1))
    assert [(s, e) for s, e, _, _ in one] == [(0, 2)]


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", True])
def test_a_threshold_that_is_no_probability_is_refused(bad):
    with pytest.raises(ValueError, match="threshold"):
        SpanDecoder(["A"], threshold=bad)


def test_a_span_longer_than_max_span_is_never_returned():
    cells = {(0, 0, 3): 9.0, (0, 0, 4): 9.0}  # 4 and 5 tokens
    assert [(s, e) for s, e, _, _ in SpanDecoder(["A"], max_span=4).decode(logits_with(6, cells, labels=1))] == [(0, 4)]


def test_breaks_and_blocked_tokens_are_respected():
    cells = {(0, 0, 1): 5.0, (0, 2, 4): 5.0, (0, 3, 4): 5.0, (0, 5, 6): 5.0, (0, 0, 0): 5.0}
    breaks = np.array([True, False, False, True, False, False, False])  # nothing continues into token 3
    blocked = np.array([False, False, False, False, False, False, True])  # token 6 is a symbol
    found = SpanDecoder(["A"]).decode(logits_with(7, cells, labels=1), breaks, blocked)
    assert [(s, e) for s, e, _, _ in found] == [(0, 1), (0, 2), (3, 5)], "a break may start a span; 2..4 and 5..6 are out"


def test_best_threshold_picks_the_best_f1_on_dev():
    gold = [NerExample("ab", [Span(0, 1, "X")]), NerExample("cd", [Span(0, 2, "X")])]
    found = [[ResultEntity("a", "X", 0, 1, 0.9), ResultEntity("b", "X", 1, 2, 0.6)], [ResultEntity("cd", "X", 0, 2, 0.4), ResultEntity("c", "X", 0, 1, 0.2)]]
    threshold, f1 = best_threshold(found, gold)
    assert threshold == pytest.approx(0.3) and f1 == pytest.approx(0.8)  # 3 kept, 2 correct: P 2/3, R 1


# ---------------------------------------------------------------- pipelines over a rule-based runner
class RuleRunner:
    """Span logits that depend only on the window's tokens: 10 where ``rule(tokens)`` puts an entity
    ``(start, end_inclusive, label_id)``, -10 elsewhere (a model that is sure of itself)."""

    def __init__(self, tokenizer: TextTokenizer, rule, n_labels: int = len(LABELS)):
        self.words = {i: t for t, i in tokenizer.hf.get_vocab().items()}
        self.rule, self.n_labels = rule, n_labels

    def run(self, batch, tasks):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        out = np.full((ids.shape[0], self.n_labels, ids.shape[1], ids.shape[1]), -10.0, dtype=np.float32)
        for row in range(ids.shape[0]):
            n = int(mask[row].sum()) - 2
            for s, e, c in self.rule([self.words[int(i)] for i in ids[row, 1 : 1 + n]]):
                out[row, c, s + 1, e + 1] = 10.0
        return {"ner": out}


def words(patterns: list[tuple[int, list[str]]]):
    """A rule: every occurrence of each token sequence, with its label id."""

    def rule(tokens):
        for c, seq in patterns:
            for s in range(len(tokens) - len(seq) + 1):
                if tokens[s : s + len(seq)] == seq:
                    yield s, s + len(seq) - 1, c

    return rule


def runs(tokens):
    """ORG (2): 张 then a run of 三/李 (a run at the window's left edge: the rest of a cut one);
    LOC (1): a run of 李 inside it. Both end where their run ends, or at the window's edge."""
    for s, t in enumerate(tokens):
        if t == "张" or (s == 0 and t in "三李"):
            e = s
            while e + 1 < len(tokens) and tokens[e + 1] in "三李":
                e += 1
            yield s, e, 2
        if t == "李" and (s == 0 or tokens[s - 1] != "李"):
            e = s
            while e + 1 < len(tokens) and tokens[e + 1] == "李":
                e += 1
            yield s, e, 1


@pytest.fixture(scope="module")
def tok(tiny_encoder):
    return TextTokenizer.from_pretrained(tiny_encoder)


def rule_pipeline(tok, rule, max_span=32, **kwargs):
    dec = SpanDecoder(LABELS, max_span=max_span)
    return TextPipeline(Bundle.of(tok, NormalizationConfig(), 16, {"ner": ("span", dec)}), RuleRunner(tok, rule), **kwargs)


NAMES = words([(0, list("张三")), (1, list("北京")), (2, list("北京大学医院")), (2, ["CT"])])


@pytest.mark.parametrize("text", ["張三在北京大學醫院做ＣＴ檢查", "\ufeff張\u200b三在北京大學醫院\u3000做ＣＴ檢查"])
def test_nested_entities_map_back_to_the_original_text(tok, text):
    found = rule_pipeline(tok, NAMES)(text)
    assert all(text[e.start : e.end] == e.text for e in found)
    assert [(e.text.replace("\u200b", ""), e.label) for e in found] == [("張三", "PER"), ("北京", "LOC"), ("北京大學醫院", "ORG"), ("ＣＴ", "ORG")]
    assert found[1].start == found[2].start and found[1].end < found[2].end


def test_no_entity_crosses_a_line_break(tok):
    assert spans_of(rule_pipeline(tok, NAMES)("北京\n大学医院")) == [("北京", "LOC", 0, 2)]


UNIT = "张三三李李三三三"  # ORG over all 8 tokens, LOC 李李 inside it (3..5)


@pytest.mark.parametrize("before", range(6, 30))
def test_nested_entities_across_a_window_edge_come_back_once_each(tok, before):
    """Windows of 14 tokens overlapping by 3: wherever the pair falls, each comes back once, whole."""
    text = "的" * before + UNIT + "的" * 20
    found = rule_pipeline(tok, runs)(text)
    assert spans_of(found) == [(UNIT, "ORG", before, before + 8), ("李李", "LOC", before + 3, before + 5)]
    assert all(e.score > 0.99 for e in found)


def test_a_long_text_in_many_windows_loses_and_repeats_nothing(tok):
    unit = "的" * 5 + UNIT
    found = rule_pipeline(tok, runs, batch_size=5)(unit * 60)
    expected = []
    for k in range(60):
        at = k * len(unit) + 5
        expected += [(UNIT, "ORG", at, at + 8), ("李李", "LOC", at + 3, at + 5)]
    assert spans_of(found) == expected


def test_batches_threads_and_bad_input_behave_like_the_other_pipelines(tok):
    pipe = rule_pipeline(tok, runs, batch_size=2)
    texts = ["的" * k + UNIT for k in range(8)] + ["", "   "]
    serial = [spans_of(pipe(t)) for t in texts]
    assert [spans_of(r) for r in pipe(texts)] == serial
    assert all([spans_of(x) for x in r] == serial for r in in_threads(lambda: pipe(texts), n=4))
    assert pipe("") == [] and pipe("\u200b\n") == []
    with pytest.raises(TypeError, match="expected a str"):
        pipe(["ok", None])


# ---------------------------------------------------------------- loss and targets
def span_spec(**options) -> TaskSpec:
    spec = TaskSpec.from_dict("ner", {"kind": "span", "labels": LABELS, "options": {**SMALL, **options}})
    kinds.get("span").spec_defaults(spec)
    return spec


def test_features_keep_nested_spans_and_count_what_they_leave_out(tok):
    spec = span_spec(max_span=4)
    report = FeatureReport()
    rows = NESTED + [{"text": "的" * 20 + "张三", "spans": [{"start": 10, "end": 16, "label": "ORG"}, {"start": 20, "end": 22, "label": "PER"}]}]
    feats = build_features(kinds.get("span"), examples(rows), spec, tok, Normalizer(NormalizationConfig()), 16, report)
    assert sorted(map(tuple, feats[0].target.spans.tolist())) == [(0, 2, 1), (7, 9, 1)], "ORG 0..6 is longer than max_span 4"
    assert report.counts["spans longer than max_span"] == 2 and report.counts["spans"] == 10
    assert sum(len(f.target.spans) for f in feats) == 10 - 2 - report.counts["spans cut by a window"]


def test_targets_round_trip_through_perfect_logits(tok):
    kind, spec = kinds.get("span"), span_spec()
    feats = build_features(kind, examples(), spec, tok, Normalizer(NormalizationConfig()), 16)
    _, targets = collate(feats, tok.pad_id, kind)
    assert targets.shape == (3, 3, 11, 11) and int(targets.sum()) == 8
    perfect = np.where(targets.numpy() == 1, 20.0, -20.0)
    pieces = kind.decode(kind.decoder(spec, dict), perfect, [Item(i, f.ids) for i, f in enumerate(feats)])
    assert [[(s, e, LABELS.index(lab)) for s, e, lab, _ in p] for p in pieces] == [sorted(map(tuple, f.target.spans.tolist())) for f in feats]


@pytest.fixture(scope="module")
def span_model(tiny_encoder):
    from toolkit.model.multitask import MultiTaskModel

    torch.manual_seed(0)
    return MultiTaskModel.build(tiny_encoder, {"ner": {"kind": "span", "labels": LABELS, "options": SMALL}}, max_length=16, name="span")


def test_head_masks_what_is_no_span_with_a_finite_value(span_model, tok):
    feats = build_features(kinds.get("span"), examples(), span_spec(), tok, Normalizer(NormalizationConfig()), 16)
    batch, _ = collate(feats, tok.pad_id, kinds.get("span"))
    with torch.no_grad():
        out = span_model.eval()(batch)["ner"]
    assert out.shape == (3, 3, 11, 11) and torch.isfinite(out).all()
    assert (out[:, :, 3, 2] == -1e4).all(), "end before start"
    assert (out[2, :, 1, 7:] == -1e4).all(), "padding of the shortest row (7 positions)"
    assert (out[:, :, 0, 8:] == -1e4).all() and (out[0, :, 0, :8] > -1e4).all(), "longer than max_span 8 / not"


def test_loss_decreases_on_a_tiny_batch(tiny_encoder, tok):
    from toolkit.model.multitask import MultiTaskModel

    torch.manual_seed(0)
    model = MultiTaskModel.build(tiny_encoder, {"ner": {"kind": "span", "labels": LABELS, "options": SMALL}}, max_length=16)
    kind, head = kinds.get("span"), model.heads["ner"]
    batch, targets = collate(build_features(kind, examples(), span_spec(), tok, Normalizer(NormalizationConfig()), 16), tok.pad_id, kind)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(15):
        loss = head.loss(model(batch)["ner"], batch, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_random_model_pipeline_is_the_same_batched_and_in_threads(span_model):
    from toolkit.runtime.pipeline import build_pipeline

    pipe = build_pipeline(span_model.eval(), batch_size=2)
    texts = [r["text"] for r in NESTED] + ["张三在北京大学医院工作" * 3, ""]
    single = [spans_of(pipe(t)) for t in texts]
    assert [spans_of(r) for r in pipe(texts)] == single
    assert all([spans_of(x) for x in r] == single for r in in_threads(lambda: pipe(texts), n=4))
    assert all(t[e.start : e.end] == e.text and 0.5 <= e.score <= 1 for t, r in zip(texts, pipe(texts)) for e in r)


# ---------------------------------------------------------------- the whole path: recipe, folder, ONNX, evaluation
@pytest.fixture(scope="module")
def trained(tiny_encoder, tmp_path_factory):
    """A span head and a tagger trained together from a recipe on a JSON-spans file (fits it)."""
    from toolkit.train.recipe import Recipe, TaskRecipe, TrainSettings
    from toolkit.train.loop import train

    root = tmp_path_factory.mktemp("span")
    ner, _ = write_corpora(root, NESTED)
    ref = {"path": str(ner), "format": "json-spans"}
    settings = TrainSettings(max_steps=60, batch_size=4, lr=3e-3, head_lr=1e-2, eval_every=60, patience=None, warmup=5, diag_every=0, tensorboard=False, threads=1)
    recipe = Recipe(name="nested", encoder=str(tiny_encoder), max_length=16, out=str(root / "run"),
                    tasks={"nested": TaskRecipe(kind="span", train=ref, dev=ref, options=dict(SMALL)), "flat": TaskRecipe(kind="tagger", train=ref, dev=ref, scheme="BIO")},
                    train=settings)
    summary = train(recipe, progress=False)
    return root, summary


def test_recipe_trains_saves_and_loads_a_span_head(trained):
    import toolkit
    from toolkit.model.manifest import Manifest

    root, summary = trained
    spec = Manifest.read(summary["model"]).tasks["nested"]
    threshold = spec.options.pop("threshold")
    assert spec.kind == "span" and spec.options == {"head_size": 16, "max_span": 8, "flat": False, "dropout": 0.1}
    assert 0.05 <= threshold <= 1  # chosen on dev at each evaluation (SpanKind.tune), saved with the head
    spec.options["threshold"] = threshold
    assert summary["history"][-1]["scores"]["nested"]["main"] == 1.0
    found = toolkit.load(summary["model"], tasks="nested")([r["text"] for r in NESTED])
    assert [sorted((e.start, e.end, e.label) for e in r) for r in found] == [sorted((s["start"], s["end"], s["label"]) for s in r["spans"]) for r in NESTED]


def test_a_continued_model_keeps_its_span_head_whatever_its_tuned_threshold(trained, tmp_path, caplog):
    """Regression (session 8): continuing a trained span model (recipe ``from_model``) compared the head's
    options with the recipe's defaults, and the threshold chosen on held-out texts (not 0.5) made it
    throw the trained head away and train a new one from random weights."""
    import torch

    from toolkit.model.manifest import Manifest
    from toolkit.model.multitask import MultiTaskModel
    from toolkit.train.loop import train
    from toolkit.train.recipe import Recipe, TaskRecipe, TrainSettings

    root, summary = trained
    assert Manifest.read(summary["model"]).tasks["nested"].options["threshold"] != 0.5
    before = {k: v.clone() for k, v in MultiTaskModel.load(summary["model"]).heads["nested"].state_dict().items()}
    data = {"path": str(root / "ner.jsonl"), "format": "json-spans"}  # the fixture's data
    settings = TrainSettings(max_steps=1, batch_size=4, lr=1e-9, head_lr=1e-9, eval_every=1, patience=None, warmup=0, diag_every=0, tensorboard=False, threads=1)
    recipe = Recipe(name="more", from_model=summary["model"], out=str(tmp_path / "run"), train=settings,
                    tasks={"nested": TaskRecipe(kind="span", train=data, dev=data, options=dict(SMALL))})
    with caplog.at_level("INFO", logger="toolkit.train.recipe"):
        again = train(recipe, progress=False)
    assert "reusing the head" in caplog.text and "training a new head" not in caplog.text
    after = MultiTaskModel.load(again["model"]).heads["nested"].state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-4) for k in before)  # lr 1e-9: the trained weights, not new ones


def test_the_manifest_threshold_and_flat_options_drive_decoding(trained, tmp_path):
    import shutil

    import toolkit
    import yaml

    folder = shutil.copytree(trained[1]["model"], tmp_path / "copy", ignore=shutil.ignore_patterns("onnx"))
    text = NESTED[0]["text"]
    nested = toolkit.load(str(folder), tasks="nested")(text)
    manifest = yaml.safe_load((folder / "toolkit.yaml").read_text(encoding="utf-8"))
    manifest["tasks"]["nested"]["options"].update(flat=True)
    (folder / "toolkit.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")
    flat = toolkit.load(str(folder), tasks="nested")(text)
    kept: list = []
    for e in sorted(nested, key=lambda x: -x.score):  # greedy by score, no overlaps
        kept += [e] if all(e.end <= k.start or k.end <= e.start for k in kept) else []
    assert len(nested) == 3 and spans_of(flat) == spans_of(sorted(kept, key=lambda x: x.start)) and len(flat) == 2
    manifest["tasks"]["nested"]["options"].update(flat=False, threshold=min(e.score for e in nested) + 1e-6)
    (folder / "toolkit.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")
    assert spans_of(toolkit.load(str(folder), tasks="nested")(text)) == spans_of([e for e in nested if e.score > min(x.score for x in nested)])


def test_onnx_and_int8_give_the_torch_entities_and_evaluation_scores_spans(trained):
    pytest.importorskip("onnxruntime")
    import toolkit
    from toolkit.runtime.evaluation import evaluate
    from toolkit.runtime.export import export_onnx, read_record

    root, summary = trained
    folder = summary["model"]
    export_onnx(folder, quantize="int8")
    assert read_record(f"{folder}/onnx")["outputs"] == {"nested": "span", "flat": "tagger"}
    texts = [r["text"] for r in NESTED] + ["张三去北京大学医院，王五在广州。" * 3]
    torch_out = toolkit.load(folder, tasks=["nested", "flat"])(texts)
    for quantize in (None, "int8"):
        onnx_out = toolkit.load(folder, tasks=["nested", "flat"], runtime="onnx", quantize=quantize)(texts)
        for a, b in zip(torch_out, onnx_out):
            assert spans_of(a["nested"]) == spans_of(b["nested"])
            np.testing.assert_allclose([e.score for e in a["nested"]], [e.score for e in b["nested"]], atol=1e-4 if quantize is None else 5e-2)
    result = evaluate(folder, {"path": str(root / "ner.jsonl"), "format": "json-spans"}, task="nested", runtime="onnx", progress=False)
    assert result["metric"] == "micro_f1" and result["main"] == 1.0
    assert set(result["per_type"]) == set(LABELS) and {"precision", "recall", "f1"} <= set(result["micro"])


def test_finetune_trains_a_span_head_on_a_users_files(tiny_encoder, tmp_path):
    import toolkit
    from toolkit.train.finetune import finetune
    from toolkit.model.manifest import Manifest

    ner, _ = write_corpora(tmp_path, NESTED)
    result = finetune("ner", ner, ner, start=str(tiny_encoder), out=tmp_path / "my-span", head="span", epochs=4, lr=3e-3, progress=False, max_length=16,
                      threads=1, train_settings={"diag_every": 0, "tensorboard": False})
    assert result["steps"] == 4 and "micro" in result["dev"]
    assert Manifest.read(tmp_path / "my-span").tasks["ner"].kind == "span"
    assert isinstance(toolkit.load(str(tmp_path / "my-span"))("张三去上海医院"), list)


@pytest.mark.parametrize("options, word", [({"threshold": 2}, "threshold"), ({"max_span": 0}, "max_span"), ({"head_size": 15}, "even"), ({"colour": 1}, "colour")])
def test_bad_options_in_a_manifest_or_recipe_are_config_errors(options, word):
    from toolkit.errors import ConfigError

    spec = TaskSpec.from_dict("ner", {"kind": "span", "labels": LABELS, "options": options})
    with pytest.raises(ConfigError, match=word):
        kinds.get("span").decoder(spec, dict, "heads/ner.safetensors")
    with pytest.raises(ConfigError, match=word):
        spec.build_head(32)
