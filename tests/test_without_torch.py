"""The ONNX runtime and evaluation work in an environment where torch cannot be imported, and
``load(..., runtime="onnx")`` never exports (nor imports torch) behind the user's back."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

BLOCK = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "torchcrf"):
            raise ImportError(f"{name} is not installed here (blocked by the test)")
        return None
sys.meta_path.insert(0, _NoTorch())
"""


def run_without_torch(code: str, cwd) -> dict:
    script = BLOCK + textwrap.dedent(code)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_onnx_load_and_evaluation_without_torch(tiny_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from toolkit.runtime.export import export_onnx

    folder = shutil.copytree(tiny_folder, tmp_path / "tiny", ignore=shutil.ignore_patterns("onnx"))
    export_onnx(folder)  # made explicitly, with torch, in this process
    data = tmp_path / "test.jsonl"
    data.write_text('{"text": "张三在北京工作", "spans": [{"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 5, "label": "LOC"}]}\n', encoding="utf-8")
    out = run_without_torch(f"""
        import json, toolkit
        from toolkit.runtime.evaluation import evaluate
        pipe = toolkit.load({str(folder)!r}, tasks="ner", runtime="onnx")
        found = pipe("张三在北京工作")
        scores = evaluate({str(folder)!r}, {{"path": {str(data)!r}, "format": "json-spans"}}, task="ner", runtime="onnx")
        pair = toolkit.load({str(folder)!r}, tasks="match", runtime="onnx")(("头痛", "头疼"))
        print(json.dumps({{"n": len(found), "metric": scores["metric"], "main": scores["main"], "pair": pair["label"],
                          "torch": "torch" in sys.modules}}))
    """, tmp_path)
    assert out["metric"] == "micro_f1" and 0.0 <= out["main"] <= 1.0 and out["pair"] in ("0", "1") and out["torch"] is False


def test_onnx_load_never_exports_unasked(tiny_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    folder = shutil.copytree(tiny_folder, tmp_path / "tiny", ignore=shutil.ignore_patterns("onnx"))
    out = run_without_torch(f"""
        import json, toolkit
        try:
            toolkit.load({str(folder)!r}, runtime="onnx")
            print(json.dumps({{"error": None}}))
        except toolkit.errors.ModelFileMissingError as err:
            print(json.dumps({{"error": str(err)}}))
    """, tmp_path)
    assert out["error"] and "toolkit export" in out["error"]
    assert not (folder / "onnx").exists()
