"""benchmarks/distill_variants.py: curves read from training logs, the best (earliest on ties), the table."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import distill_variants  # noqa: E402


def fake_run(folder: Path, scores: list[float], finished: bool = True) -> Path:
    folder.mkdir(parents=True)
    rows = []
    for i, s in enumerate(scores, 1):
        rows.append({"step": 100 * i, "loss": {"ner": 1.0}})
        rows.append({"eval": {"step": 100 * i, "scores": {"ner": {"metric": "micro_f1", "main": s}}}})
    (folder / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    if finished:
        (folder / "summary.json").write_text(json.dumps({"steps": 100 * len(scores), "minutes": 12.0}), encoding="utf-8")
    return folder


def test_the_best_held_out_score_is_the_earliest_of_equal_ones_and_the_table_shows_every_step(tmp_path):
    a = distill_variants.summarise("a", fake_run(tmp_path / "a", [0.5, 0.8, 0.8, 0.7]), "plain", None, None)
    b = distill_variants.summarise("b", fake_run(tmp_path / "b", [0.6, 0.75], finished=False), "hidden", None, None)
    assert (a["best"], a["best_step"], a["finished"]) == (80.0, 200, True)
    assert (b["best"], b["best_step"], b["steps"], b["finished"]) == (75.0, 200, 200, False)
    text = distill_variants.markdown([a, b], None)
    assert "| a | plain | 400 | 12 | **80.00** (200) |" in text
    assert "| b | hidden | 200 (stopped) | - | **75.00** (200) |" in text
    assert "| 400 | 70.00 |  |" in text
