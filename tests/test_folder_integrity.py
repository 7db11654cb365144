"""Model-folder integrity (issue #11): atomic saves, checksums, paths that stay inside, strict YAML."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import toolkit
from toolkit.config import read_yaml
from toolkit.errors import ConfigError, ModelFileMissingError, ModelFolderError
from toolkit.model.folder import verify
from toolkit.model.manifest import seal
from toolkit.model.manifest import Manifest
from toolkit.model.multitask import MultiTaskModel
from toolkit.runtime.pipeline import build_pipeline
from toolkit.text.tokenization import TextTokenizer

TEXTS = ["张三在北京大学医院工作", "患者出现发热、咳嗽。"]


@pytest.fixture
def folder(tiny_folder, tmp_path) -> Path:
    """A private copy of the tiny model folder, to damage."""
    return Path(shutil.copytree(tiny_folder, tmp_path / "tiny", ignore=shutil.ignore_patterns("onnx")))


def edit_manifest(folder: Path, edit) -> None:
    data = yaml.safe_load((folder / "toolkit.yaml").read_text(encoding="utf-8"))
    edit(data)
    (folder / "toolkit.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def outputs(folder: Path):
    return build_pipeline(MultiTaskModel.load(folder), ["ner", "sentiment"])(TEXTS)


# ------------------------------------------------------------------ item 2: atomic saves
def test_saved_manifest_records_every_needed_file(tiny_folder):
    files = Manifest.read(tiny_folder).files
    assert {"encoder/config.json", "encoder/model.safetensors", "encoder/tokenizer.json",
            "heads/ner.safetensors", "heads/sentiment.safetensors", "heads/match.safetensors"} <= set(files)
    assert all(len(digest) == 64 for digest in files.values())


def test_crash_during_save_keeps_the_old_folder(tiny_model, folder, monkeypatch):
    import safetensors.torch

    before = outputs(folder)
    manifest_before = (folder / "toolkit.yaml").read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated crash after the encoder was written")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        tiny_model.save(folder, dtype=torch.float16)
    assert (folder / "toolkit.yaml").read_bytes() == manifest_before
    assert outputs(folder) == before
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_failed_swap_puts_the_old_folder_back(tiny_model, folder, monkeypatch):
    manifest_before = (folder / "toolkit.yaml").read_bytes()
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(Path(src).name)
        if Path(src).name.startswith(f".{folder.name}.tmp-"):
            raise OSError("simulated failure of the second rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="second rename"):
        tiny_model.save(folder, dtype=torch.float32)
    monkeypatch.undo()
    assert (folder / "toolkit.yaml").read_bytes() == manifest_before and len(calls) >= 3
    verify(folder, Manifest.read(folder))
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_save_replaces_a_model_folder_and_cleans_what_a_killed_save_left(tiny_model, folder):
    stray = folder.parent / f".{folder.name}.tmp-999999999-dead"  # a save killed with kill -9
    (stray / "encoder").mkdir(parents=True)
    (stray / "encoder" / "model.safetensors").write_bytes(b"half")
    (folder / "onnx").mkdir()  # an export of the old version goes with it
    tiny_model.save(folder, dtype=torch.float32)
    assert not stray.exists() and not (folder / "onnx").exists()
    verify(folder, Manifest.read(folder))


def test_save_refuses_to_replace_a_folder_that_is_not_a_model(tiny_model, tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError, match="no toolkit.yaml"):
        tiny_model.save(tmp_path)
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_folder_mixing_two_versions_is_refused(tiny_model, folder, tmp_path):
    other = tiny_model.save(tmp_path / "fp16", dtype=torch.float16)  # another version of the same model
    shutil.copyfile(other / "encoder" / "model.safetensors", folder / "encoder" / "model.safetensors")
    with pytest.raises(ModelFolderError, match=r"encoder/model\.safetensors does not match the sha256"):
        MultiTaskModel.load(folder)


# ------------------------------------------------------------------ items 3, 4, 11: missing, corrupted, truncated
def corrupt(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        handle.write(b"\xff" * 4096)


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_corrupted_weights_are_refused_by_both_runtimes(folder, runtime):
    if runtime == "onnx":
        pytest.importorskip("onnxruntime")
    corrupt(folder / "encoder" / "model.safetensors")
    with pytest.raises(ModelFolderError, match=r"encoder/model\.safetensors does not match the sha256.*re-save"):
        toolkit.load(str(folder), runtime=runtime)


@pytest.mark.parametrize("legacy", [False, True])
def test_missing_tokenizer_json_is_refused(folder, legacy):
    if legacy:
        edit_manifest(folder, lambda data: data.pop("files"))
    (folder / "encoder" / "tokenizer.json").unlink()
    (folder / "encoder" / "vocab.txt").unlink(missing_ok=True)
    with pytest.raises(ModelFileMissingError, match=r"encoder/tokenizer\.json is missing"):
        toolkit.load(str(folder))


def test_tokenizer_without_any_vocabulary_is_refused(folder):
    for name in ("tokenizer.json", "vocab.txt"):
        (folder / "encoder" / name).unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json is missing.*\[UNK\]"):
        TextTokenizer.from_pretrained(folder / "encoder")


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_safetensors_is_refused(folder, legacy):
    if legacy:
        edit_manifest(folder, lambda data: data.pop("files"))
    head = folder / "heads" / "ner.safetensors"
    head.write_bytes(head.read_bytes()[:-100])
    with pytest.raises(ModelFolderError, match=r"heads/ner\.safetensors (does not match|is truncated)"):
        MultiTaskModel.load(folder)


def test_folder_without_checksums_loads_with_a_warning(folder, caplog):
    before = outputs(folder)
    edit_manifest(folder, lambda data: data.pop("files"))
    with caplog.at_level(logging.WARNING, logger="toolkit.model.folder"):
        assert outputs(folder) == before
    assert "no files: checksums" in caplog.text and "re-save" in caplog.text
    seal(folder)
    assert Manifest.read(folder).files


# ------------------------------------------------------------------ item 10: paths, links, FIFOs, YAML bombs
@pytest.mark.parametrize("key, value", [("weights", "../../x.safetensors"), ("weights", "/etc/passwd"),
                                        ("encoder", "../encoder")])
def test_manifest_paths_must_stay_inside(folder, key, value):
    def edit(data):
        if key == "encoder":
            data["encoder"] = value
        else:
            data["tasks"]["ner"]["weights"] = value

    edit_manifest(folder, edit)
    with pytest.raises(ConfigError, match=rf"toolkit\.yaml.*{key} .*relative path inside the model folder"):
        MultiTaskModel.load(folder)


def test_symlink_out_of_the_folder_is_refused(folder, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copyfile(folder / "heads" / "ner.safetensors", outside)
    (folder / "heads" / "ner.safetensors").unlink()
    (folder / "heads" / "ner.safetensors").symlink_to(outside)
    with pytest.raises(ModelFolderError, match=r"heads/ner\.safetensors points outside the model folder"):
        MultiTaskModel.load(folder)


FIFO_PLACES = ["heads/sentiment.safetensors", "encoder/special_tokens_map.json", "toolkit.yaml"]
CHILD = """
import sys
from toolkit.model.multitask import MultiTaskModel
for folder in sys.argv[1:]:
    try:
        MultiTaskModel.load(folder)
        print("loaded")
    except Exception as err:
        print(type(err).__name__, str(err).replace(chr(10), " "))
"""


def test_fifo_in_place_of_a_file_does_not_hang(tiny_folder, tmp_path):
    # in a child process: a read blocked on a FIFO may hold the GIL, so a thread could not time it out
    folders = []
    for k, name in enumerate(FIFO_PLACES):
        folder = Path(shutil.copytree(tiny_folder, tmp_path / f"m{k}", ignore=shutil.ignore_patterns("onnx")))
        (folder / name).unlink(missing_ok=True)
        os.mkfifo(folder / name)
        folders.append(str(folder))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, *folders], capture_output=True, text=True, timeout=120, env=env)
    lines = done.stdout.splitlines()
    assert len(lines) == len(FIFO_PLACES), done.stderr[-2000:]
    for name, line in zip(FIFO_PLACES, lines):
        assert line.startswith(("ModelFolderError", "ConfigError")) and "not a regular file" in line and name in line


def test_yaml_alias_bomb_is_refused_quickly(folder):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    (folder / "toolkit.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="too many YAML aliases"):
        MultiTaskModel.load(folder)
    assert time.perf_counter() - start < 2


def test_yaml_file_over_the_size_limit_is_refused(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("x: " + "a" * (1 << 20) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="more than"):
        read_yaml(path)


def test_yaml_anchors_within_limits_still_work(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {lr: 1}\na: *b\nb: {<<: *b, seed: 2}\n", encoding="utf-8")
    assert read_yaml(path) == {"base": {"lr": 1}, "a": {"lr": 1}, "b": {"lr": 1, "seed": 2}}


# ------------------------------------------------------------------ item 11: one-line errors naming file and fix
def test_yaml_syntax_error_names_file_and_line(folder):
    text = (folder / "toolkit.yaml").read_text(encoding="utf-8").splitlines()
    assert text[3].startswith("encoder:")
    text[3] = "encoder: encoder: x"  # mapping values are not allowed here
    (folder / "toolkit.yaml").write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"toolkit\.yaml:4: invalid YAML"):
        MultiTaskModel.load(folder)


def test_recipe_yaml_syntax_error_names_file_and_line(tmp_path):
    from toolkit.train.recipe import Recipe

    path = tmp_path / "recipe.yaml"
    path.write_text("name: x\ntasks: [a\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"recipe\.yaml:3: invalid YAML"):
        Recipe.from_yaml(path)


def test_tasks_given_as_a_list_is_a_config_error(folder):
    edit_manifest(folder, lambda data: data.update(tasks=[{"ner": data["tasks"]["ner"]}]))
    with pytest.raises(ConfigError, match=r"toolkit\.yaml: tasks must be a mapping.*got a list"):
        MultiTaskModel.load(folder)


def test_label_count_not_matching_the_head_names_the_file(folder):
    edit_manifest(folder, lambda data: data["tasks"]["ner"]["labels"].append("DRUG"))
    with pytest.raises(ModelFolderError, match=r"heads/ner\.safetensors: .* needs .*restore the labels list"):
        MultiTaskModel.load(folder)


def test_label_count_not_matching_the_crf_names_the_file_in_onnx(folder):
    from toolkit.runtime.bundle import Bundle

    edit_manifest(folder, lambda data: data["tasks"]["ner"]["labels"].append("DRUG"))
    with pytest.raises(ModelFolderError, match=r"heads/ner\.safetensors: crf\.\w+ has shape"):
        Bundle.from_folder(folder, verified=True)


def test_errors_are_one_line(folder):
    corrupt(folder / "heads" / "ner.safetensors")
    with pytest.raises(ModelFolderError) as info:
        MultiTaskModel.load(folder)
    assert "\n" not in str(info.value)
