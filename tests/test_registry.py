from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import toolkit
from toolkit import registry


def test_unknown_name_lists_known_names_and_closest(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "ner-medical", {"path": "x", "tasks": ["ner"]})
    monkeypatch.setitem(registry.MODELS, "sentiment", {"path": "x", "tasks": ["cls"]})
    with pytest.raises(KeyError) as err:
        toolkit.load("ner-medicl")
    message = str(err.value)
    assert "Did you mean 'ner-medical'?" in message and "sentiment" in message


def test_registered_name_resolves_to_folder_and_tasks(monkeypatch, tiny_folder):
    monkeypatch.setenv("TOOLKIT_PRETRAINED", str(tiny_folder.parent))
    monkeypatch.setitem(registry.MODELS, "tiny-sentiment", {"path": tiny_folder.name, "tasks": ["sentiment"]})
    assert "tiny-sentiment" in toolkit.list_models()
    pipe = toolkit.load("tiny-sentiment")
    assert set(pipe("很好")) == {"label", "score", "scores"}


def test_missing_registered_folder_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLKIT_PRETRAINED", str(tmp_path))
    monkeypatch.setitem(registry.MODELS, "gone", {"path": "gone"})
    with pytest.raises(FileNotFoundError, match="TOOLKIT_PRETRAINED"):
        toolkit.load("gone")


def test_path_that_is_not_a_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no toolkit.yaml"):
        toolkit.load(str(tmp_path))


def test_load_by_path_with_tasks(tiny_folder):
    ner = toolkit.load(str(tiny_folder), tasks="ner")
    assert isinstance(ner("张三"), list)


def test_every_registered_head_kind_imports():
    from toolkit import kinds

    for kind in kinds.KINDS:
        assert kinds.head_class(kind).kind == kind


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, toolkit; toolkit.list_models(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_registered_folders_default_to_the_installed_models(monkeypatch):
    from importlib import resources

    monkeypatch.delenv("TOOLKIT_PRETRAINED", raising=False)
    assert registry.pretrained_dir() == Path(str(resources.files("toolkit.pretrained")))
    folder, tasks = registry.resolve("ner-medical")
    assert folder.parent == registry.pretrained_dir() and (folder / registry.MANIFEST).is_file() and tasks == ["ner_medical"]


def test_toolkit_pretrained_overrides_the_installed_models(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLKIT_PRETRAINED", str(tmp_path))
    assert registry.pretrained_dir() == tmp_path


def _benchmark_splits():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "splits.py"
    spec = importlib.util.spec_from_file_location("benchmark_splits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluation_splits_are_a_benchmark_setting_for_every_registered_name():
    splits = _benchmark_splits()
    assert not any("eval" in spec for spec in registry.MODELS.values())
    assert set(splits.SPLITS) == set(registry.MODELS)


def test_eval_splits_of_a_folder_collects_every_name_once(monkeypatch, tmp_path):
    splits = _benchmark_splits()
    monkeypatch.setenv("TOOLKIT_PRETRAINED", str(tmp_path))
    monkeypatch.setattr(registry, "MODELS", {
        "a": {"path": "joint"}, "b": {"path": "joint"}, "c": {"path": "other"}, "all": {"path": "joint", "tasks": None},
    })
    table = {
        "a": [{"task": "ner", "dataset": "x:dev"}],
        "b": [{"task": "cls", "dataset": "y:test"}, {"task": "ner", "dataset": "x:dev"}],
        "c": [{"task": "ner", "dataset": "z:dev"}],
    }
    assert splits.eval_splits(tmp_path / "joint", table) == [{"task": "ner", "dataset": "x:dev"}, {"task": "cls", "dataset": "y:test"}]
    assert splits.eval_splits(tmp_path / "missing", table) == []
