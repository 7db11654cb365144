"""A fourth head kind, defined here and registered with one line, is a full citizen: it trains,
saves, loads, runs on PyTorch and ONNX Runtime and is evaluated, with no edit to any module."""
from __future__ import annotations

import json

import numpy as np
import pytest
from torch import nn

from toolkit import kinds
from toolkit.heads.base import Head
from toolkit.kinds.labels import LabelKind


class MaxPoolHead(Head):
    """Labels a text from the max over its token vectors (a dummy kind for this test)."""

    kind = "maxpool"

    def __init__(self, hidden_size: int, labels, dropout: float = 0.0) -> None:
        super().__init__(hidden_size, labels, dropout=dropout)
        self.proj = nn.Linear(hidden_size, len(self.labels))

    def forward(self, hidden, batch):
        mask = batch["attention_mask"][..., None].to(hidden.dtype)
        return self.proj((hidden * mask - 1e4 * (1 - mask)).max(dim=1).values)

    def loss(self, output, batch, targets):
        return nn.functional.cross_entropy(output.float(), targets)


class MaxPoolKind(LabelKind):
    name = "maxpool"
    head = MaxPoolHead
    data = "cls"
    metric = "accuracy"

    def features(self, examples, encoded, spec, max_length, tokenizer, report):
        from toolkit.kinds.base import Feature
        from toolkit.kinds.labels import label_index

        return [Feature(enc.windows[0][1], label_index(ex, spec.labels)) for ex, enc in zip(examples, encoded)]


@pytest.fixture
def maxpool():
    kinds.register(MaxPoolKind())  # the one line a new kind needs
    yield kinds.get("maxpool")
    kinds.KINDS.pop("maxpool")


def test_a_new_kind_trains_saves_loads_runs_on_both_runtimes_and_evaluates(maxpool, tiny_encoder, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import yaml

    from toolkit import load
    from toolkit.runtime.evaluation import evaluate
    from toolkit.runtime.export import export_onnx
    from toolkit.train.recipe import Recipe
    from toolkit.train.loop import train

    data = tmp_path / "cls.tsv"
    data.write_text("text\tlabel\n服务很好\tpos\n太差了\tneg\n很好很好\tpos\n差\tneg\n", encoding="utf-8")
    ref = {"path": str(data), "format": "table-cls"}
    recipe = {"name": "maxpool", "encoder": str(tiny_encoder), "max_length": 16, "out": str(tmp_path / "run"),
              "tasks": {"mp": {"kind": "maxpool", "train": ref, "dev": ref}},
              "train": {"max_steps": 2, "batch_size": 2, "eval_every": 2, "patience": None, "warmup": 1}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    summary = train(Recipe.from_yaml(tmp_path / "recipe.yaml"), progress=False)
    folder = summary["model"]
    assert summary["steps"] == 2
    assert yaml.safe_load(open(f"{folder}/toolkit.yaml", encoding="utf-8"))["tasks"]["mp"]["kind"] == "maxpool"

    texts = ["服务很好", "太差了", ""]
    on_torch = load(folder)(texts)
    assert on_torch[0]["label"] in ("pos", "neg") and on_torch[2] == {"label": None, "score": None, "scores": {}}
    export_onnx(folder)
    on_onnx = load(folder, runtime="onnx")(texts)
    assert [r["label"] for r in on_onnx] == [r["label"] for r in on_torch]
    assert np.allclose([r["score"] or 0 for r in on_onnx], [r["score"] or 0 for r in on_torch], atol=1e-4)
    for runtime in ("torch", "onnx"):
        scores = evaluate(folder, ref, task="mp", runtime=runtime)
        assert scores["metric"] == "accuracy" and 0.0 <= scores["main"] <= 1.0 and scores["n"] == 4
    json.dumps(on_onnx)  # plain JSON


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(Exception, match="Known kinds: tagger, classifier, matcher"):
        kinds.get("tager")
