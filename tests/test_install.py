"""A plain (non-editable) install works from any directory: build the wheel offline, install it into
a temporary folder, and load a registered model from another working directory.

The wheel is built with the environment's setuptools (``--no-build-isolation --no-deps --no-index``:
no network) and its ``build/`` and ``*.egg-info`` go to a temporary folder, not the checkout
(``DIST_EXTRA_CONFIG`` names an extra setup.cfg that moves them).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from toolkit import registry

ROOT = Path(__file__).resolve().parent.parent
TEXT = "患者三天前出现发热、咳嗽，既往有2型糖尿病史。"
FOLDERS = sorted({spec["path"] for spec in registry.MODELS.values()})

pytestmark = pytest.mark.slow


def _can_build_wheels() -> bool:
    """setuptools>=70.1 has bdist_wheel; older ones need the ``wheel`` package."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    return (importlib.util.find_spec("setuptools.command.bdist_wheel") is not None
            or importlib.util.find_spec("wheel") is not None)


def _pip(*args: str, env: dict[str, str] | None = None) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not all((ROOT / "pretrained" / folder / registry.MANIFEST).is_file() for folder in FOLDERS):
        pytest.skip("the shipped model folders are not in this checkout")
    if not _can_build_wheels():
        pytest.skip("needs setuptools>=70.1 (the [dev] extra) to build a wheel without build isolation")
    tmp = tmp_path_factory.mktemp("wheel")
    config = tmp / "build.cfg"
    config.write_text(f"[build]\nbuild_base = {tmp / 'build'}\n[egg_info]\negg_base = {tmp}\n"
                      f"[bdist_wheel]\nbdist_dir = {tmp / 'bdist'}\n", encoding="utf-8")
    had_build = (ROOT / "build").exists()
    egg_infos = set(ROOT.glob("*.egg-info"))
    _pip("wheel", "--no-build-isolation", "--no-deps", "--no-index", "-w", str(tmp / "dist"), str(ROOT),
         env={**os.environ, "DIST_EXTRA_CONFIG": str(config)})
    assert had_build or not (ROOT / "build").exists(), "building the wheel left build/ in the checkout"
    assert set(ROOT.glob("*.egg-info")) == egg_infos, "building the wheel left a new *.egg-info in the checkout"
    for scratch in ("build", "bdist"):
        shutil.rmtree(tmp / scratch, ignore_errors=True)
    (found,) = (tmp / "dist").glob("toolkit-*.whl")
    return found


def test_wheel_ships_the_model_folders_without_onnx_tests_or_benchmarks(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if "/onnx/" in n or n.endswith(".onnx")]
    assert not [n for n in names if n.split("/")[0] in ("tests", "benchmarks", "pretrained")]
    for folder in FOLDERS:
        assert f"toolkit/pretrained/{folder}/{registry.MANIFEST}" in names
        assert f"toolkit/pretrained/{folder}/encoder/model.safetensors" in names
        assert any(n.startswith(f"toolkit/pretrained/{folder}/heads/") for n in names)
    for name, spec in registry.BASES.items():  # the shipped base encoders, with their cards
        if "path" in spec:
            for file in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
                assert f"toolkit/pretrained/{spec['path']}/{file}" in names, (name, file)
            assert f"toolkit/pretrained/{Path(spec['path']).parent}/README.md" in names


def test_installed_wheel_loads_a_registered_model_from_another_directory(wheel, tmp_path):
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TOOLKIT_PRETRAINED"}
    env["PYTHONPATH"] = str(site)
    code = (
        "import json, toolkit\n"
        "from toolkit.registry import pretrained_dir\n"
        "assert 'site' in toolkit.__file__, toolkit.__file__\n"
        f"found = toolkit.load('ner-medical')({TEXT!r})\n"
        "print(json.dumps({'file': toolkit.__file__, 'models': str(pretrained_dir()),"
        " 'entities': [e.text for e in found]}, ensure_ascii=False))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).is_relative_to(site) and Path(out["models"]).is_relative_to(site)
    assert "发热" in out["entities"]
